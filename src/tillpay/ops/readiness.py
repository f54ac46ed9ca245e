"""Readiness checks of the dependencies this process is configured to use."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from tillpay.kit.logging import get_logger

log = get_logger(__name__)

CHECK_TIMEOUT_SECONDS = 3.0

Check = Callable[[], Awaitable[object]]


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    duration_ms: float


async def run_check(name: str, check: Check) -> CheckResult:
    """Run one check with a timeout. Failures are logged, never returned verbatim: error
    text can carry host names or credentials."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    try:
        await asyncio.wait_for(check(), timeout=CHECK_TIMEOUT_SECONDS)
        ok = True
    except Exception as exc:  # noqa: BLE001 - any failure means not ready
        log.warning("readiness.check_failed", check=name, error_type=type(exc).__name__)
        ok = False
    return CheckResult(name, ok, round((loop.time() - start) * 1000, 2))


async def run_checks(checks: dict[str, Check]) -> list[CheckResult]:
    return list(await asyncio.gather(*(run_check(n, c) for n, c in checks.items())))


async def check_broker(url: str) -> None:
    """Open and close an AMQP connection."""
    from tillpay.kit import amqp

    connection = await amqp.connect(url, timeout=CHECK_TIMEOUT_SECONDS)
    await connection.close()
