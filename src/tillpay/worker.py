"""The background worker: periodic jobs run in-process by default or by `tillpay worker`.

The schedule is ``tillpay/jobs.py``. Every run gets a fresh database
session of its own and commits only when the job returned normally; a failing job is
logged and retried at its next interval, never taking the loop down.
"""

from __future__ import annotations

import asyncio
import contextlib
import random

from tillpay.kit.jobs import Job, JobContext, listen, unlisten
from tillpay.kit.logging import get_logger
from tillpay.settings import Settings

log = get_logger(__name__)


def registered_jobs() -> list[Job]:
    """Every scheduled job (``tillpay/jobs.py``)."""
    from tillpay.jobs import SCHEDULE  # the schedule imports every domain: only when run

    return list(SCHEDULE)


class Worker:
    """Runs the registered jobs on their intervals until stopped."""

    def __init__(self, context: JobContext[Settings], jobs: list[Job] | None = None) -> None:
        self.context = context
        self.jobs = jobs if jobs is not None else registered_jobs()
        self._stop = asyncio.Event()
        self._wakes: list[asyncio.Event] = []
        self._tasks: list[asyncio.Task[None]] = []

    async def run_once(self, job_: Job) -> bool:
        """Run one job now; True when it succeeded."""
        return await self._run(job_) is not None

    async def _run(self, job_: Job) -> bool | None:
        """Run one job: None when it failed, else whether it has more work due now."""
        try:
            more = await job_.func(self.context)
        except Exception:
            log.exception("worker.job_failed", job=job_.name)
            return None
        return bool(more)

    async def _loop(self, job_: Job) -> None:
        # Spread the first runs so several workers do not fire in lock-step.
        delay = random.uniform(0, min(job_.interval, 5.0))  # noqa: S311 - jitter, not security
        # Set by stop() and by a nudge (kit/jobs.nudge: the app committed work for this job).
        wake = asyncio.Event()
        self._wakes.append(wake)
        listen(job_.name, wake)
        try:
            while not self._stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), timeout=delay)
                wake.clear()
                if self._stop.is_set():
                    return
                # A job that stopped with more due runs again at once (yielding to the loop).
                delay = 0.0 if await self._run(job_) else job_.interval
        finally:
            unlisten(job_.name, wake)

    def start(self) -> None:
        """Start every job loop as a task on the running event loop."""
        log.info("worker.started", jobs=[j.name for j in self.jobs])
        self._tasks = [asyncio.create_task(self._loop(j), name=f"job:{j.name}") for j in self.jobs]

    async def stop(self) -> None:
        self._stop.set()
        for wake in self._wakes:
            wake.set()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        await self.context.aclose()
        log.info("worker.stopped")

    async def run_forever(self) -> None:
        self.start()
        await self._stop.wait()
        await self.stop()
