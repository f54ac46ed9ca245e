"""Real worker processes on one PostgreSQL database: an exclusive job never runs on two
at once, a killed holder's lease is taken over only once it lapsed, SIGTERM lets the run
in flight finish, and ``tillpay worker --concurrency N`` starts N and stops them all."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import SESSION_SECRET
from tillpay.settings import Settings
from tillpay.worker import EXIT_SECONDS

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def env(backend: str, make_settings: Callable[..., Settings], clean_db: None) -> dict[str, str]:
    if backend != "postgres":
        pytest.skip("worker processes share a PostgreSQL database")
    settings = make_settings()
    base = {k: v for k, v in os.environ.items() if not k.startswith("TILLPAY_")}
    return {
        **base,
        "PYTHONPATH": f"{ROOT / 'src'}:{ROOT}",
        "TILLPAY_ENVIRONMENT": "test",
        "TILLPAY_DATABASE_URL": settings.database_url.get_secret_value(),
        "TILLPAY_SECRET_KEY": SESSION_SECRET,
        "TILLPAY_WORKER_IN_PROCESS": "false",
    }


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    try:
        yield started
    finally:
        for process in started:
            if process.poll() is None:
                process.kill()
            process.wait(timeout=10)


def _lease_worker(
    env: dict[str, str], tmp_path: Path, record: Path, *, lease: float, hold: float
) -> subprocess.Popen[bytes]:
    log = (tmp_path / f"worker-{time.monotonic_ns()}.log").open("wb")
    command = [sys.executable, "-m", "tests.jobs.lease_worker", str(record), str(lease), str(hold)]
    return subprocess.Popen(command, env=env, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT)  # noqa: S603


def _records(record: Path) -> list[tuple[str, int, float]]:
    if not record.exists():
        return []
    return [
        (w, int(p), float(t))
        for w, p, t in (line.split() for line in record.read_text().splitlines())
    ]


def _wait_for(check: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return check()


@pytest.mark.parametrize("count", [2, 4])
def test_an_exclusive_job_never_runs_on_two_worker_processes_at_once(
    env: dict[str, str], tmp_path: Path, processes: list[subprocess.Popen[bytes]], count: int
) -> None:
    record = tmp_path / "runs"
    processes += [_lease_worker(env, tmp_path, record, lease=5, hold=0.15) for _ in range(count)]
    assert _wait_for(lambda: len(_records(record)) >= 40, timeout=60)
    for process in processes:
        process.send_signal(signal.SIGTERM)
    assert [process.wait(timeout=30) for process in processes] == [0] * count

    runs = _records(record)
    running: set[int] = set()
    for what, pid, _ in sorted(runs, key=lambda r: r[2]):
        if what == "start":
            assert not running, f"{pid} started while {running} ran"
            running.add(pid)
        else:
            running.discard(pid)
    assert len({pid for _, pid, _ in runs}) > 1  # the lease changed hands: a real race


def test_a_killed_workers_lease_is_taken_over_only_after_it_lapsed(
    env: dict[str, str], tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    record = tmp_path / "runs"
    holder = _lease_worker(env, tmp_path, record, lease=3, hold=3600)
    processes.append(holder)
    assert _wait_for(lambda: bool(_records(record)), timeout=60)
    successor = _lease_worker(env, tmp_path, record, lease=3, hold=3600)
    processes.append(successor)
    time.sleep(3)  # the successor is up and polling; the holder keeps renewing
    assert [pid for _, pid, _ in _records(record)] == [holder.pid]

    holder.kill()
    killed_at = time.time()
    holder.wait(timeout=10)
    # Renewed at most a third of the lease ago: valid for two more seconds at least.
    time.sleep(1.5)
    assert [pid for _, pid, _ in _records(record)] == [holder.pid]
    assert _wait_for(lambda: len(_records(record)) == 2, timeout=15)
    what, pid, at = _records(record)[1]
    assert (what, pid) == ("start", successor.pid)
    assert at - killed_at >= 2.0


def test_sigterm_lets_the_run_in_flight_finish_and_exits_0(
    env: dict[str, str], tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    record = tmp_path / "runs"
    worker = _lease_worker(env, tmp_path, record, lease=30, hold=1.5)
    processes.append(worker)
    assert _wait_for(lambda: bool(_records(record)), timeout=60)
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=30) == 0
    assert [w for w, _, _ in _records(record)] == ["start", "end"]


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def test_concurrency_starts_n_workers_and_sigterm_stops_them_all_cleanly(
    env: dict[str, str], tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    log = tmp_path / "supervisor.log"
    with log.open("wb") as out:
        supervisor = subprocess.Popen(
            [sys.executable, "-m", "tillpay.cli", "worker", "--concurrency", "3"],
            env=env,
            cwd=tmp_path,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    processes.append(supervisor)
    assert _wait_for(lambda: log.read_text().count("worker.started") == 3, timeout=90), (
        log.read_text()
    )
    children = _children(supervisor.pid)
    assert len(children) == 3
    supervisor.send_signal(signal.SIGTERM)
    assert supervisor.wait(timeout=60) == 0, log.read_text()
    assert log.read_text().count("worker.stopped") == 3
    assert not [pid for pid in children if Path(f"/proc/{pid}").exists()]


def test_a_worker_that_dies_makes_the_supervisor_stop_the_others_and_fail(
    env: dict[str, str], tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    log = tmp_path / "supervisor.log"
    with log.open("wb") as out:
        supervisor = subprocess.Popen(
            [sys.executable, "-m", "tillpay.cli", "worker", "--concurrency", "2"],
            env=env,
            cwd=tmp_path,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    processes.append(supervisor)
    assert _wait_for(lambda: log.read_text().count("worker.started") == 2, timeout=90), (
        log.read_text()
    )
    first, second = _children(supervisor.pid)
    os.kill(first, signal.SIGKILL)
    assert supervisor.wait(timeout=60) == 1, log.read_text()
    assert log.read_text().count("worker.stopped") == 1  # the survivor stopped gracefully
    assert not Path(f"/proc/{second}").exists()


def test_a_stopped_worker_exits_even_when_a_task_or_thread_would_hold_the_process(
    env: dict[str, str], tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    ready, log = tmp_path / "ready", tmp_path / "worker.log"
    with log.open("wb") as out:
        command = [sys.executable, "-m", "tests.jobs.stuck_worker", str(ready)]
        worker = subprocess.Popen(command, env=env, cwd=tmp_path, stdout=out, stderr=out)  # noqa: S603
    processes.append(worker)
    assert _wait_for(ready.exists, timeout=60), log.read_text()
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=EXIT_SECONDS + 15) == 0, log.read_text()
    text = log.read_text()
    assert "worker.stopped" in text
    assert "test:stubborn" in text  # the straggler is named in the log
    assert "worker.exit_stuck" in text
    assert "test:forever" in text


def test_a_worker_whose_broker_is_unreachable_exits_promptly_on_sigterm(
    env: dict[str, str], tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    log = tmp_path / "worker.log"
    closed = {"TILLPAY_BROKER_URL": "amqp://guest:guest@127.0.0.1:1/"}
    with log.open("wb") as out:
        worker = subprocess.Popen(
            [sys.executable, "-m", "tillpay.cli", "worker"],
            env={**env, **closed},
            cwd=tmp_path,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    processes.append(worker)
    # Consumers reconnecting with back-off, the publisher failing: then the stop.
    assert _wait_for(lambda: "hub.consumers_disconnected" in log.read_text(), timeout=60)
    time.sleep(1.5)
    stopped_at = time.monotonic()
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=30) == 0, log.read_text()
    assert time.monotonic() - stopped_at < 10, log.read_text()
    assert "worker.exit_stuck" not in log.read_text()
