"""The moving-window rate limit in process memory, without background work.

``limits``' in-memory storage expires moving-window entries in a task that, after any
hit, walks every key it holds and hands each one to a worker thread (``asyncio.to_thread``
per key): with a few hundred clients, a busy process spends a core's share on thread hops
that decide nothing. This store keeps the same semantics as ``limits``' moving window and
as :mod:`tillpay.kit.ratelimit_redis` (an exact sliding log: a request is allowed when
fewer than ``limit`` units were allowed in the last ``expiry`` seconds; all-or-nothing
across the windows of a policy) and does its work on the caller's turn of the event loop:
each window is pruned when it is used, and clients that went quiet are forgotten in one
pass at most every ``SWEEP_INTERVAL`` seconds.

Memory is bounded: a window holds at most ``limit`` units (an allowed hit of cost ``n`` is
one entry), and a window whose newest entry has left it is dropped at the next sweep.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import Final

from limits import RateLimitItem, WindowStats

# Seconds between two passes that drop the windows of clients that went quiet.
SWEEP_INTERVAL: Final = 30.0


class _Window:
    """The allowed units of one client in one window: (monotonic time, units) entries."""

    __slots__ = ("entries", "expiry", "total")

    def __init__(self, expiry: float) -> None:
        self.entries: deque[tuple[float, int]] = deque()
        self.expiry = expiry
        self.total = 0

    def prune(self, now: float) -> None:
        cutoff = now - self.expiry
        entries = self.entries
        while entries and entries[0][0] <= cutoff:
            self.total -= entries.popleft()[1]

    def resets_in(self, now: float) -> float:
        """Seconds until the oldest entry leaves the window (the window when empty)."""
        return self.entries[0][0] + self.expiry - now if self.entries else self.expiry


class MemoryMovingWindows:
    """Moving-window decisions for all windows of a policy, in this process's memory."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._windows: dict[tuple[str, str, int, int], _Window] = {}
        self._next_sweep = clock() + SWEEP_INTERVAL

    def __len__(self) -> int:
        """How many client windows are held (for tests and metrics)."""
        return len(self._windows)

    async def evaluate(
        self,
        policy: str,
        digest: str,
        items: tuple[RateLimitItem, ...],
        cost: int,
        *,
        consume: bool,
    ) -> tuple[RateLimitItem | None, list[WindowStats]]:
        """The window that denies (None: allowed, and consumed when ``consume``) and the
        stats of every window after the call, as :class:`RedisMovingWindows` reports them."""
        now = self._clock()
        self._sweep(now)
        windows = [self._window(policy, digest, item) for item in items]
        failed: RateLimitItem | None = None
        for item, window in zip(items, windows, strict=True):
            window.prune(now)
            if failed is None and window.total + cost > item.amount:
                failed = item
        if consume and failed is None:
            for window in windows:
                window.entries.append((now, cost))
                window.total += cost
        wall = time.time()
        stats = [
            WindowStats(
                reset_time=wall + window.resets_in(now), remaining=item.amount - window.total
            )
            for item, window in zip(items, windows, strict=True)
        ]
        return failed, stats

    async def clear(self, policy: str, digest: str, items: tuple[RateLimitItem, ...]) -> None:
        for item in items:
            self._windows.pop((policy, digest, item.amount, item.get_expiry()), None)

    def _window(self, policy: str, digest: str, item: RateLimitItem) -> _Window:
        key = (policy, digest, item.amount, item.get_expiry())
        window = self._windows.get(key)
        if window is None:
            window = self._windows[key] = _Window(float(item.get_expiry()))
        return window

    def _sweep(self, now: float) -> None:
        if now < self._next_sweep:
            return
        self._next_sweep = now + SWEEP_INTERVAL
        quiet = [
            key
            for key, window in self._windows.items()
            if not window.entries or window.entries[-1][0] <= now - window.expiry
        ]
        for key in quiet:
            del self._windows[key]
