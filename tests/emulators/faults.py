"""Faults every provider emulator can inject, in one shape.

A test says which requests a fault hits (method, a regex the whole path must match, how
many times) and what happens to them instead of a plain answer::

    emulator.fail("POST", "/v1/orders", "timeout_after")           # once
    emulator.fail("POST", r"/v1/payments/\\w+/refund", "error", status=503, times=3)
    emulator.fail("GET", "/transaction/verify/.+", "timeout", times=None)  # every call

Kinds (what the caller sees, and whether the provider acted):

- ``timeout``: nothing is done and the caller times out (``httpx.ReadTimeout``);
- ``timeout_after``: the provider acts but the answer is lost (``httpx.ReadTimeout``);
- ``unreachable``: the connection is refused before anything is sent (``httpx.ConnectError``);
- ``error``: an HTTP error answer (``status``; ``body``, or the provider's own error
  body) and nothing is done;
- ``delay``: the request waits ``seconds`` and is then served normally.

Each emulator decides *where* a fault applies (before or after its authentication, what it
records), so that its documented behaviour stays its own; this module only says which fault a
request takes and carries out the kinds that do not depend on the provider.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

Kind = Literal["timeout", "timeout_after", "unreachable", "error", "delay"]
KINDS: frozenset[str] = frozenset({"timeout", "timeout_after", "unreachable", "error", "delay"})


@dataclass
class Fault:
    """One injected fault: which requests it matches and what it does to them."""

    method: str
    path: re.Pattern[str]
    kind: Kind
    times: int | None = 1  # requests still to hit; None: every matching request
    status: int = 500  # for "error"
    body: bytes | dict[str, Any] | None = None  # for "error"; None: the provider's own
    seconds: float = 0.0  # for "delay"
    hits: int = 0

    def matches(self, method: str, path: str) -> bool:
        return (
            self.times != 0
            and self.method in ("*", method.upper())
            and self.path.fullmatch(path) is not None
        )

    async def before(self) -> None:
        """What happens before the provider sees the request: raise, wait or nothing."""
        if self.kind == "unreachable":
            raise httpx.ConnectError("emulated: connection refused")
        if self.kind == "timeout":
            raise httpx.ReadTimeout("emulated: timed out before the provider acted")
        if self.kind == "delay":
            await asyncio.sleep(self.seconds)

    def after(self) -> None:
        """What happens once the provider acted: the answer is lost for ``timeout_after``."""
        if self.kind == "timeout_after":
            raise httpx.ReadTimeout("emulated: timed out after the provider acted")

    def response(self, default: Callable[[int], Response]) -> Response:
        """The answer of an ``error`` fault: its ``body``, or ``default(status)``."""
        if self.body is None:
            return default(self.status)
        raw = self.body if isinstance(self.body, bytes) else json.dumps(self.body).encode()
        return Response(raw, status_code=self.status, media_type="application/json")


@dataclass
class Faults:
    """The faults set on one emulator, in the order they were added."""

    active: list[Fault] = field(default_factory=list)

    def add(
        self,
        method: str,
        path: str,
        kind: Kind,
        *,
        times: int | None = 1,
        status: int = 500,
        body: bytes | dict[str, Any] | None = None,
        seconds: float = 0.0,
    ) -> Fault:
        if kind not in KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; one of {sorted(KINDS)}")
        if times is not None and times < 1:
            raise ValueError("times must be at least 1 (or None: every request)")
        fault = Fault(method.upper(), re.compile(path), kind, times, status, body, seconds)
        self.active.append(fault)
        return fault

    def clear(self) -> None:
        self.active.clear()

    def take(self, method: str, path: str) -> Fault | None:
        """The first fault matching this request, counted as used; ``None`` if none."""
        for fault in self.active:
            if fault.matches(method, path):
                fault.hits += 1
                if fault.times is not None:
                    fault.times -= 1
                return fault
        return None

    async def serve(
        self,
        app: ASGIApp,
        scope: Scope,
        receive: Receive,
        send: Send,
        *,
        error: Callable[[int], Response],
    ) -> None:
        """Serve one request through ``app`` with whatever fault it takes (for emulators
        whose faults sit in front of the whole API)."""
        fault = self.take(scope["method"], scope["path"])
        if fault is None:
            await app(scope, receive, send)
            return
        await fault.before()
        if fault.kind == "error":
            await fault.response(error)(scope, receive, send)
            return
        if fault.kind != "timeout_after":
            await app(scope, receive, send)
            return

        async def lost(message: Message) -> None:
            return None

        await app(scope, receive, lost)
        fault.after()


class FaultInjection:
    """The test-facing fault API every emulator shares; the emulator holds ``faults``."""

    faults: Faults

    def fail(
        self,
        method: str,
        path: str,
        kind: Kind,
        *,
        times: int | None = 1,
        status: int = 500,
        body: bytes | dict[str, Any] | None = None,
        seconds: float = 0.0,
    ) -> Fault:
        """Make the next ``times`` requests (``None``: all) of ``method`` (``"*"``: any) whose
        whole path matches the regex ``path`` fail as ``kind`` (see tests/emulators/faults.py)."""
        return self.faults.add(
            method, path, kind, times=times, status=status, body=body, seconds=seconds
        )
