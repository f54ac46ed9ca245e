"""Run N copies of a command as child processes and stop them together.

SIGTERM and SIGINT are forwarded to every child, and the supervisor waits for all of them.
A child that exits on its own (crash, OOM kill) is not restarted here: the others are
stopped gracefully and the supervisor exits non-zero, so the service manager (systemd,
Kubernetes) restarts the whole set and a crash loop stays visible instead of hidden.
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Sequence
from types import FrameType

from tillpay.kit.logging import get_logger

log = get_logger(__name__)

#: How often the supervisor looks at its children.
POLL_SECONDS = 0.2


def supervise(command: Sequence[str], count: int) -> int:
    """Start ``count`` children running ``command`` and wait for them; the exit status:
    0 when every child stopped cleanly after a forwarded signal, else 1."""
    stopping: list[int] = []

    def forward(signum: int, _frame: FrameType | None) -> None:
        stopping.append(signum)
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGINT)}
    children: list[subprocess.Popen[bytes]] = []
    try:
        children = [subprocess.Popen(list(command)) for _ in range(count)]  # noqa: S603
        log.info("supervisor.started", children=[c.pid for c in children])
        failed = False
        while any(child.poll() is None for child in children):
            for child in children:
                code = child.poll()
                if code is not None and not stopping and not failed:
                    # One died unexpectedly: stop the rest, then report the failure.
                    log.error("supervisor.child_exited", pid=child.pid, code=code)
                    failed = True
                    forward(signal.SIGTERM, None)
            time.sleep(POLL_SECONDS)
        codes = [child.returncode for child in children]
        log.info("supervisor.stopped", codes=codes)
        return 1 if failed or any(codes) else 0
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
