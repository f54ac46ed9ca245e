"""A worker process for the tests: ``python -m tests.jobs.stuck_worker READY`` runs the
real ``tillpay worker`` run loop with one job whose first run leaves behind what would
keep a process alive after the worker stopped: a task that ignores cancellation and a
non-daemon thread that never ends. Then it touches READY."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import threading
import time
from pathlib import Path
from typing import Any

from tillpay import worker
from tillpay.cli import _run_worker
from tillpay.kit.jobs import Job
from tillpay.settings import load_settings

_kept: list[object] = []


async def _ignores_cancellation() -> None:
    while True:
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(3600)


def main() -> None:
    ready = Path(sys.argv[1])

    async def body(context: Any) -> None:
        if not _kept:
            _kept.append(asyncio.create_task(_ignores_cancellation(), name="test:stubborn"))
            thread = threading.Thread(target=time.sleep, args=(3600,), name="test:forever")
            thread.start()
            _kept.append(thread)
            await asyncio.to_thread(ready.touch)

    # The real bounds are 5 s for stragglers and 20 s to exit; what is tested is that they
    # are applied, not their length (shorter here, so the test does not wait 25 s).
    worker.STRAGGLER_SECONDS = 1.0
    worker.EXIT_SECONDS = 3.0
    _run_worker(load_settings(), [Job("test.stuck", 0.2, body)])


if __name__ == "__main__":
    main()
