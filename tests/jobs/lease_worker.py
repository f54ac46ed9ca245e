"""A worker process for the tests: ``python -m tests.jobs.lease_worker RECORD LEASE HOLD``
runs one exclusive job, ``test.exclusive`` (interval 0.2 s, lease LEASE s), through the
real ``tillpay worker`` run loop (its signal handling included). Each run appends
``start <pid> <time>`` to RECORD, holds HOLD seconds, then appends ``end <pid> <time>``."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path
from typing import Any

from tillpay.cli import _run_worker
from tillpay.kit.jobs import Job
from tillpay.settings import load_settings


def main() -> None:
    record, lease, hold = Path(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])

    def note(what: str) -> None:
        with record.open("a") as out:
            out.write(f"{what} {os.getpid()} {time.time()}\n")

    async def body(context: Any) -> None:
        note("start")
        await asyncio.sleep(hold)
        note("end")

    _run_worker(load_settings(), [Job("test.exclusive", 0.2, body, exclusive=True, lease=lease)])


if __name__ == "__main__":
    main()
