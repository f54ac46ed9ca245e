"""Job leases (kit/leases.py) on SQLite and PostgreSQL: acquire, renew by the holder,
refusal to another holder while valid, takeover once lapsed, release; and the worker's
exclusive runs."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from typing import Any

import pytest

from tillpay.kit import leases
from tillpay.kit.db import Database, utcnow
from tillpay.kit.jobs import Job, JobContext
from tillpay.settings import Settings
from tillpay.worker import Worker

TTL = timedelta(seconds=60)


@pytest.fixture
async def database(
    make_settings: Callable[..., Settings], clean_db: None
) -> AsyncIterator[Database]:
    db = Database.from_settings(make_settings())
    try:
        yield db
    finally:
        await db.dispose()


async def test_a_free_lease_is_acquired(database: Database) -> None:
    assert await leases.acquire(database, "job.a", "w1", ttl=TTL, now=utcnow())


async def test_a_valid_lease_is_refused_to_another_holder(database: Database) -> None:
    now = utcnow()
    assert await leases.acquire(database, "job.a", "w1", ttl=TTL, now=now)
    assert not await leases.acquire(database, "job.a", "w2", ttl=TTL, now=now + TTL / 2)


async def test_the_holder_reacquires_and_renews_its_own_lease(database: Database) -> None:
    now = utcnow()
    assert await leases.acquire(database, "job.a", "w1", ttl=TTL, now=now)
    assert await leases.acquire(database, "job.a", "w1", ttl=TTL, now=now + TTL / 2)
    assert await leases.renew(database, "job.a", "w1", ttl=TTL, now=now + TTL)
    # Renewed to now + 1.5 TTL: still valid past the first expiry.
    assert not await leases.acquire(database, "job.a", "w2", ttl=TTL, now=now + TTL * 1.4)


async def test_a_lapsed_lease_is_taken_over_and_its_old_holder_cannot_renew(
    database: Database,
) -> None:
    now = utcnow()
    assert await leases.acquire(database, "job.a", "w1", ttl=TTL, now=now)
    assert await leases.acquire(database, "job.a", "w2", ttl=TTL, now=now + TTL)
    assert not await leases.renew(database, "job.a", "w1", ttl=TTL, now=now + TTL)
    assert not await leases.acquire(database, "job.a", "w1", ttl=TTL, now=now + TTL * 1.5)


async def test_a_released_lease_is_free_at_once(database: Database) -> None:
    now = utcnow()
    assert await leases.acquire(database, "job.a", "w1", ttl=TTL, now=now)
    await leases.release(database, "job.a", "w1", now=now)
    assert await leases.acquire(database, "job.a", "w2", ttl=TTL, now=now)


async def test_another_holder_cannot_release_a_lease(database: Database) -> None:
    now = utcnow()
    assert await leases.acquire(database, "job.a", "w1", ttl=TTL, now=now)
    await leases.release(database, "job.a", "w2", now=now)
    assert not await leases.acquire(database, "job.a", "w2", ttl=TTL, now=now)


async def test_leases_of_different_jobs_are_independent(database: Database) -> None:
    now = utcnow()
    assert await leases.acquire(database, "job.a", "w1", ttl=TTL, now=now)
    assert await leases.acquire(database, "job.b", "w2", ttl=TTL, now=now)


async def test_of_racing_workers_exactly_one_acquires(database: Database) -> None:
    now = utcnow()
    won = await asyncio.gather(
        *(leases.acquire(database, "job.a", f"w{n}", ttl=TTL, now=now) for n in range(8))
    )
    assert won.count(True) == 1


def _worker(database: Database, make_settings: Callable[..., Settings], job: Job) -> Worker:
    return Worker(JobContext(settings=make_settings(), database=database), jobs=[job])


async def test_an_exclusive_job_runs_on_one_of_two_workers_at_once(
    database: Database, make_settings: Callable[..., Settings]
) -> None:
    running: list[str] = []
    overlaps: list[int] = []
    release, started = asyncio.Event(), asyncio.Event()

    async def body(context: JobContext[Any]) -> None:
        started.set()
        running.append("run")
        overlaps.append(len(running))
        await release.wait()
        running.pop()

    job = Job("test.exclusive", 60.0, body, exclusive=True)
    first, second = (_worker(database, make_settings, job) for _ in range(2))
    one = asyncio.create_task(first.run_once(job))
    await asyncio.wait_for(started.wait(), timeout=10)
    assert await second.run_once(job)  # skipped, not failed: the lease is held
    release.set()
    assert await one
    assert overlaps == [1]
    assert await second.run_once(job)  # released after the run: the next is anyone's
    assert overlaps == [1, 1]


async def test_an_exclusive_run_whose_lease_was_taken_over_is_cancelled(
    database: Database, make_settings: Callable[..., Settings]
) -> None:
    cancelled = asyncio.Event()

    async def body(context: JobContext[Any]) -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    job = Job("test.exclusive", 60.0, body, exclusive=True, lease=0.6)
    worker = _worker(database, make_settings, job)
    run = asyncio.create_task(worker.run_once(job))
    await asyncio.sleep(0.05)
    # Another worker takes the lease as if this one had stalled past its expiry.
    later = utcnow() + timedelta(seconds=1)
    assert await leases.acquire(database, job.name, "other", ttl=TTL, now=later)
    assert not await asyncio.wait_for(run, timeout=5)  # failed: the lease was lost
    assert cancelled.is_set()


async def test_counted_leases_are_taken_once_freed_by_their_holder_and_lapse(
    database: Database,
) -> None:
    now = utcnow()
    names = ["slot:0", "slot:1"]
    async with database.transaction() as session:
        assert await leases.take(session, ["slot:0"], "w1", ttl=TTL, now=now) == {"slot:0"}
    async with database.transaction() as session:
        assert await leases.taken(session, names, now=now) == {"slot:0"}
        # Of the two, only the free one goes to w2.
        assert await leases.take(session, names, "w2", ttl=TTL, now=now) == {"slot:1"}
    async with database.transaction() as session:
        await leases.drop(session, ["slot:1"], "w1")  # not w1's: stays w2's
        assert await leases.taken(session, names, now=now) == set(names)
        await leases.drop(session, ["slot:1"], "w2")
        assert await leases.taken(session, names, now=now) == {"slot:0"}
    later = now + TTL
    async with database.transaction() as session:
        # w1 died: its lease lapsed and is taken over; its late drop leaves w3's alone.
        assert await leases.take(session, names, "w3", ttl=TTL, now=later) == set(names)
        await leases.drop(session, ["slot:0"], "w1")
        assert await leases.taken(session, names, now=later) == set(names)
