"""Outbound HTTP to payment providers: TLS verified, timeouts, no redirects, bounded
retries only where the request carries a provider idempotency key, and a per-provider
circuit breaker. Failures whose outcome is unknown raise ``ProviderUnavailable``."""

from __future__ import annotations

import asyncio
import functools
import random
import ssl
import time
from collections.abc import Mapping
from typing import Any

import certifi
import httpx

from tillpay.kit.logging import get_logger

log = get_logger(__name__)


class ProviderError(Exception):
    """The provider refused the request; nothing happened there."""

    def __init__(self, code: str, message: str = "") -> None:
        super().__init__(message or code)
        self.code = code


class ProviderDeclined(ProviderError):
    """A definitive decline (card declined, insufficient funds…)."""


class ProviderUnavailable(Exception):
    """The outcome is unknown: timeout, connection failure, 5xx, or an open circuit."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class CircuitBreaker:
    """Opens after ``threshold`` consecutive failures; lets one probe through after
    ``cooldown`` seconds. Per process: it only spares a failing provider, never guards money."""

    def __init__(self, *, threshold: int = 5, cooldown: float = 30.0) -> None:
        self.threshold = threshold
        self.cooldown = cooldown
        self.failures = 0
        self.opened_at: float | None = None

    def allow(self) -> bool:
        if self.opened_at is None:
            return True
        return time.monotonic() - self.opened_at >= self.cooldown

    def success(self) -> None:
        self.failures = 0
        self.opened_at = None

    def failure(self) -> None:
        self.failures += 1
        if self.failures >= self.threshold:
            self.opened_at = time.monotonic()


@functools.cache
def tls_context() -> ssl.SSLContext:
    """One verifying TLS context per process (certifi's CA bundle, as httpx's default).

    Loading the bundle costs ~50-100 ms of CPU; httpx would do it for every client."""
    return ssl.create_default_context(cafile=certifi.where())


class ProviderClient:
    """An httpx client bound to one provider's API base."""

    def __init__(
        self,
        name: str,
        base_url: str,
        *,
        timeout: float = 10.0,
        max_retries: int = 2,
        headers: Mapping[str, str] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        breaker: CircuitBreaker | None = None,
    ) -> None:
        self.name = name
        self.max_retries = max_retries
        self.breaker = breaker or CircuitBreaker()
        self._client = httpx.AsyncClient(
            base_url=base_url,
            timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0)),
            headers=dict(headers or {}),
            follow_redirects=False,
            verify=tls_context(),
            transport=transport,
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        retry_safe: bool = False,
    ) -> httpx.Response:
        """Send a request. Retries (with jitter) only when ``retry_safe`` — a GET, or a
        write carrying the provider's idempotency key — and only on outcomes that may be
        transient. A 4xx is returned for the adapter to interpret."""
        if not self.breaker.allow():
            raise ProviderUnavailable(f"{self.name}: circuit open")
        attempts = 1 + (self.max_retries if retry_safe else 0)
        last_reason = "unknown"
        for attempt in range(attempts):
            if attempt:
                await asyncio.sleep(min(2.0, 0.2 * 2**attempt) * random.uniform(0.5, 1.5))  # noqa: S311
            try:
                response = await self._client.request(
                    method, path, json=json, content=content, headers=dict(headers or {})
                )
            except httpx.TimeoutException:
                last_reason = "timeout"
            except httpx.TransportError as exc:
                last_reason = f"transport:{type(exc).__name__}"
            else:
                if response.status_code >= 500 or response.status_code == 429:
                    last_reason = f"http_{response.status_code}"
                elif 300 <= response.status_code < 400:
                    # Never follow a provider redirect with a payment body (API10).
                    self.breaker.failure()
                    raise ProviderUnavailable(f"{self.name}: unexpected redirect")
                else:
                    self.breaker.success()
                    return response
            log.warning(
                "provider.call_failed",
                provider=self.name,
                method=method,
                reason=last_reason,
                attempt=attempt + 1,
            )
        self.breaker.failure()
        raise ProviderUnavailable(f"{self.name}: {last_reason}")
