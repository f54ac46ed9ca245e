"""The in-memory moving window: the same decisions as on Redis (tests/unit/test_ratelimit.py
runs those on both), no work off the event loop, and a bounded memory."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from limits import parse

from tillpay.kit.ratelimit import RateLimiter
from tillpay.kit.ratelimit_memory import SWEEP_INTERVAL, MemoryMovingWindows


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_a_memory_limiter_hands_no_work_to_threads_however_many_clients_it_holds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    limiter = RateLimiter("memory://", fail_open=False)
    limiter.register("api", "100/minute;1000/hour")
    loop = asyncio.get_running_loop()
    hops: list[Any] = []
    run_in_executor = loop.run_in_executor

    def counted(*args: Any) -> Any:
        hops.append(args)
        return run_in_executor(*args)

    monkeypatch.setattr(loop, "run_in_executor", counted)
    for client in range(300):
        await limiter.hit("api", f"client-{client}")
        await asyncio.sleep(0)
    await asyncio.sleep(0.05)  # room for any background expiry to run

    assert hops == []
    await limiter.close()


async def test_an_entry_leaves_the_window_exactly_when_the_window_has_passed() -> None:
    clock = Clock()
    windows = MemoryMovingWindows(clock)
    items = (parse("2/minute"),)

    for _ in range(2):
        failed, _ = await windows.evaluate("api", "c", items, 1, consume=True)
        assert failed is None
    clock.now += 59.9
    failed, stats = await windows.evaluate("api", "c", items, 1, consume=True)
    assert failed is items[0]
    assert stats[0].remaining == 0
    clock.now += 0.1
    failed, stats = await windows.evaluate("api", "c", items, 1, consume=True)
    assert failed is None
    assert stats[0].remaining == 1


async def test_a_denial_by_one_window_consumes_none_of_the_others() -> None:
    windows = MemoryMovingWindows(Clock())
    items = (parse("1/second"), parse("10/hour"))

    assert (await windows.evaluate("api", "c", items, 1, consume=True))[0] is None
    failed, stats = await windows.evaluate("api", "c", items, 1, consume=True)

    assert failed is items[0]
    assert [s.remaining for s in stats] == [0, 9]


async def test_clients_that_went_quiet_are_forgotten_at_the_next_sweep() -> None:
    clock = Clock()
    windows = MemoryMovingWindows(clock)
    items = (parse("5/minute"),)
    for client in range(100):
        await windows.evaluate("api", f"client-{client}", items, 1, consume=True)
    assert len(windows) == 100

    clock.now += max(SWEEP_INTERVAL, 60) + 1
    await windows.evaluate("api", "someone-new", items, 1, consume=True)

    assert len(windows) == 1


async def test_a_client_still_inside_its_window_survives_the_sweep() -> None:
    clock = Clock()
    windows = MemoryMovingWindows(clock)
    items = (parse("2/hour"),)
    await windows.evaluate("api", "steady", items, 1, consume=True)

    clock.now += SWEEP_INTERVAL + 1
    failed, stats = await windows.evaluate("api", "steady", items, 1, consume=True)

    assert failed is None
    assert stats[0].remaining == 0
