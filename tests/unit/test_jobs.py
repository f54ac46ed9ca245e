"""The job context shares one collaborator per builder, and the app can provide its own;
the worker runs a job that found work again at once; items run side by side."""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy.ext.asyncio import create_async_engine

from tillpay.kit.db import Database
from tillpay.kit.jobs import Job, JobContext, for_each, nudge
from tillpay.settings import Settings
from tillpay.worker import Worker, registered_jobs


def _context() -> JobContext[None]:
    # An engine connects only when used; these tests never use it.
    return JobContext(None, Database(create_async_engine("sqlite+aiosqlite://")))


def test_a_shared_collaborator_is_built_once_per_context() -> None:
    built: list[object] = []

    def build(context: JobContext[Any]) -> object:
        built.append(object())
        return built[-1]

    context = _context()
    assert context.shared(build) is context.shared(build) is built[0]
    assert _context().shared(build) is built[1]


def test_a_provided_collaborator_is_used_instead_of_building_one() -> None:
    def build(context: JobContext[Any]) -> str:
        raise AssertionError("not built when provided")

    context = _context()
    context.provide(build, "the app's own")
    assert context.shared(build) == "the app's own"


def test_the_schedule_lists_every_job_with_its_interval() -> None:
    schedule = {job.name: job.interval for job in registered_jobs()}
    assert schedule == {
        "credentials.purge_used_service_tokens": 600.0,
        "customer_mail.admin_digest": 60.0,
        "customer_mail.send": 2.0,
        "events.relay": 2.0,
        "hub.publish": 1.0,
        "realtime.publish": 1.0,
        "idempotency.purge": 3600.0,
        "merchant_webhooks.deliver": 1.0,
        "orders.expire": 30.0,
        "payments.janitor": 30.0,
        "payments.process_webhooks": 1.0,
        "sandbox.deliver_webhooks": 1.0,
    }


async def test_a_job_that_found_work_runs_again_at_once_and_one_that_did_not_waits() -> None:
    runs: list[bool] = []
    idle = asyncio.Event()

    async def busy_three_times(context: JobContext[Any]) -> bool:
        runs.append(len(runs) < 3)
        if not runs[-1]:
            idle.set()
        return runs[-1]

    context = JobContext(Settings(), Database(create_async_engine("sqlite+aiosqlite://")))
    worker = Worker(context, [Job("busy", 3600.0, busy_three_times)])
    worker.start()
    try:
        # The first run starts within the start-up jitter (at most 5 s); the three busy
        # runs are followed at once by a fourth, after which the job waits an hour.
        await asyncio.wait_for(idle.wait(), timeout=30)
        await asyncio.sleep(0.05)
    finally:
        await worker.stop()
    assert runs == [True, True, True, False]


async def test_items_run_side_by_side_and_one_that_raises_holds_back_none_of_the_others() -> None:
    done: list[int] = []
    at_once = 0
    peak = 0

    async def handle(item: int) -> None:
        nonlocal at_once, peak
        at_once += 1
        peak = max(peak, at_once)
        await asyncio.sleep(0)
        at_once -= 1
        if item == 2:
            raise RuntimeError("boom")
        done.append(item)

    await for_each(range(6), handle, width=3)

    assert sorted(done) == [0, 1, 3, 4, 5]
    assert peak == 3


async def test_a_nudged_job_runs_at_once_instead_of_at_its_next_interval() -> None:
    ran = asyncio.Event()
    runs = 0

    async def hourly(context: JobContext[Any]) -> None:
        nonlocal runs
        runs += 1
        if runs == 2:
            ran.set()

    context = JobContext(Settings(), Database(create_async_engine("sqlite+aiosqlite://")))
    worker = Worker(context, [Job("tests.hourly", 3600.0, hourly)])
    worker.start()
    try:
        # The start-up jitter is at most 5 s; after the first run the job would wait an hour.
        for _ in range(300):
            if runs:
                break
            await asyncio.sleep(0.05)
        nudge("tests.hourly")
        await asyncio.wait_for(ran.wait(), timeout=30)
    finally:
        await worker.stop()
    assert runs == 2
