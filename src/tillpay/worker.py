"""The background worker: periodic jobs run in-process by default or by `tillpay worker`.

The schedule is ``tillpay/jobs.py``. Every run gets a fresh database
session of its own and commits only when the job returned normally; a failing job is
logged (and reported to the error tracker, when configured) and retried at its next
interval, never taking the loop down. With tracing on, each run is a span.
"""

from __future__ import annotations

import asyncio
import contextlib
import faulthandler
import os
import random
import sys
import threading
import time
from datetime import timedelta

from tillpay.hub.intake import Consumers, Intake
from tillpay.kit import leases, telemetry
from tillpay.kit.db import utcnow
from tillpay.kit.jobs import Job, JobContext, listen, unlisten
from tillpay.kit.logging import get_logger
from tillpay.settings import Settings

log = get_logger(__name__)


def registered_jobs() -> list[Job]:
    """Every scheduled job (``tillpay/jobs.py``)."""
    from tillpay.jobs import SCHEDULE  # the schedule imports every domain: only when run

    return list(SCHEDULE)


def registered_consumers(context: JobContext[Settings]) -> list[Intake]:
    """The consumers reading their queue on the hub (none without a broker)."""
    from tillpay.jobs import hub_consumers

    return hub_consumers(context)


#: Once the worker has stopped, how long closing its database pool may take, then how
#: long tasks still left (a client library's background task) get to end once cancelled.
DISPOSE_SECONDS = 10.0
STRAGGLER_SECONDS = 5.0
#: Once the worker has stopped, the longest the process may take to exit. Past it,
#: something outside the worker (a task ignoring cancellation, a thread of the default
#: executor or a non-daemon thread of a library) holds it: its stacks are logged and the
#: process exits anyway, so a graceful stop always ends the process.
EXIT_SECONDS = 20.0


class LeaseLost(RuntimeError):
    """An exclusive run was cancelled: its lease was taken over or could not be renewed."""


class Worker:
    """Runs the registered jobs on their intervals until stopped."""

    def __init__(
        self,
        context: JobContext[Settings],
        jobs: list[Job] | None = None,
        consumers: list[Intake] | None = None,
    ) -> None:
        """``jobs`` and ``consumers`` default to the registered ones; given jobs without
        consumers, it runs no hub consumer."""
        self.context = context
        self.jobs = jobs if jobs is not None else registered_jobs()
        if consumers is None:
            consumers = registered_consumers(context) if jobs is None else []
        #: The hub consumers (``hub/intake.py``), when there are any.
        self.consumers = Consumers(context, consumers) if consumers else None
        self._stop = asyncio.Event()
        self._wakes: list[asyncio.Event] = []
        self._tasks: list[asyncio.Task[None]] = []
        #: This worker's name on the leases of exclusive jobs.
        self.holder = leases.new_holder()

    async def run_once(self, job_: Job) -> bool:
        """Run one job now; True when it succeeded."""
        return await self._run(job_) is not None

    async def _run(self, job_: Job) -> bool | None:
        """Run one job: None when it failed, else whether it has more work due now."""
        # One span per run when tracing is on: its queries and provider calls nest under it.
        with telemetry.span(f"job {job_.name}", {"tillpay.job": job_.name}):
            try:
                if job_.exclusive:
                    more = await self._run_exclusive(job_)
                else:
                    more = await job_.func(self.context)
            except Exception as exc:
                log.exception("worker.job_failed", job=job_.name)
                telemetry.report_exception(exc)
                return None
        return bool(more)

    async def _run_exclusive(self, job_: Job) -> bool | None:
        """Run ``job_`` under its lease; skip the run (False) while another worker holds
        it. The lease is renewed every third of its length; a renewal refused (another
        worker took it over) or unconfirmed until the lease would lapse cancels the run,
        so two runs overlap at most by one renewal's delay. The jobs' own row locks keep
        even that overlap harmless: the lease saves duplicate work, it guards no money."""
        db, ttl = self.context.database, timedelta(seconds=job_.lease)
        if not await leases.acquire(db, job_.name, self.holder, ttl=ttl, now=utcnow()):
            return False
        log.debug("worker.lease_acquired", job=job_.name, holder=self.holder)
        run: asyncio.Task[bool | None] = asyncio.ensure_future(job_.func(self.context))
        renewer = asyncio.create_task(self._renew(job_, run, ttl))
        try:
            return await run
        except asyncio.CancelledError:
            if renewer.done() and not renewer.cancelled():
                raise LeaseLost(f"{job_.name}: lease lost by {self.holder}") from None
            raise
        finally:
            renewer.cancel()
            run.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewer
            with contextlib.suppress(Exception):
                await leases.release(db, job_.name, self.holder, now=utcnow())
            log.debug("worker.lease_released", job=job_.name, holder=self.holder)

    async def _renew(self, job_: Job, run: asyncio.Task[bool | None], ttl: timedelta) -> None:
        every = ttl.total_seconds() / 3
        until = utcnow() + ttl
        while True:
            await asyncio.sleep(every)
            try:
                held: bool | None = await leases.renew(
                    self.context.database, job_.name, self.holder, ttl=ttl, now=utcnow()
                )
            except Exception:
                log.exception("worker.lease_renewal_failed", job=job_.name)
                held = None
            if held:
                until = utcnow() + ttl
            elif held is False or utcnow() + timedelta(seconds=every) >= until:
                run.cancel()
                return

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
        if self.consumers is not None:
            self._tasks.append(asyncio.create_task(self.consumers.run(), name="hub:consumers"))

    def request_stop(self) -> None:
        """Stop claiming: runs in flight finish, then :meth:`run_forever` returns (the
        signal handler of ``tillpay worker``)."""
        self._stop.set()

    async def stop(self) -> None:
        self._stop.set()
        if self.consumers is not None:
            await self.consumers.stop()
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


def run_process(settings: Settings, jobs: list[Job] | None = None) -> None:
    """``tillpay worker``: run a worker until SIGTERM/SIGINT (``jobs``: the schedule unless
    given), with this process's logging and, when configured, tracing and error tracking."""
    import signal

    from tillpay.kit.db import Database
    from tillpay.kit.logging import configure_logging
    from tillpay.ops.telemetry import start as start_telemetry

    configure_logging(json=settings.json_logs, level=settings.log_level)
    telemetry = start_telemetry(settings)

    async def run() -> None:
        database = Database.from_settings(settings)
        telemetry.instrument_database(database)
        runner = Worker(JobContext(settings=settings, database=database), jobs)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            # A second signal (a terminal's Ctrl-C reaches the supervisor's children
            # directly and forwarded) only repeats the request; SIGKILL is the hard stop.
            loop.add_signal_handler(sig, runner.request_stop)
        try:
            await runner.run_forever()
        finally:
            # Nothing below may keep a stopped worker's process alive for long.
            exit_watchdog(EXIT_SECONDS)
            try:
                async with asyncio.timeout(DISPOSE_SECONDS):
                    await database.dispose()
            except TimeoutError:
                log.error("worker.dispose_timed_out", seconds=DISPOSE_SECONDS)
            await cancel_stragglers(STRAGGLER_SECONDS)

    try:
        asyncio.run(run())
    finally:
        telemetry.shutdown()


def _describe(task: asyncio.Task[object]) -> str:
    coro = task.get_coro()
    return f"{task.get_name()} ({getattr(coro, '__qualname__', repr(coro))})"


async def cancel_stragglers(seconds: float) -> None:
    """Cancel the tasks still running besides this one (``asyncio.run`` would wait for
    them without a bound) and wait for them at most ``seconds``; each is logged."""
    current = asyncio.current_task()
    left = [t for t in asyncio.all_tasks() if t is not current and not t.done()]
    if not left:
        return
    log.warning("worker.tasks_left", tasks=[_describe(t) for t in left])
    for task in left:
        task.cancel()
    _, pending = await asyncio.wait(left, timeout=seconds)
    if pending:
        log.error("worker.tasks_stuck", tasks=[_describe(t) for t in pending])


def exit_watchdog(seconds: float) -> threading.Thread:
    """Exit the process (status 0: the worker did stop gracefully) if it is still alive
    ``seconds`` from now, after logging what holds it: the threads still running and
    every thread's stack (on stderr)."""

    def watch() -> None:
        time.sleep(seconds)
        log.error(
            "worker.exit_stuck",
            seconds=seconds,
            threads=[t.name for t in threading.enumerate() if t is not threading.current_thread()],
        )
        with contextlib.suppress(Exception):
            faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(0)

    watchdog = threading.Thread(target=watch, name="worker-exit-watchdog", daemon=True)
    watchdog.start()
    return watchdog
