#!/usr/bin/env python3
"""Bootstrap and run tillpay with nothing but Python 3.11+.

    python3 dev.py serve     # install, migrate SQLite under var/, load demo data, serve :8000
                             # (--host ADDRESS and --port PORT are passed to `tillpay dev`)
    python3 dev.py test      # install test dependencies and run the whole test suite
                             # (parallel workers; extra arguments go to pytest)
    python3 dev.py check     # ruff, ruff format --check, mypy (strict on src and bench, then tests),
                             # lint-imports (the package contract), alembic check
    python3 dev.py docs      # regenerate openapi.json, the README configuration table and
                             # the event table of docs/events.md
    python3 dev.py lock      # regenerate requirements*.lock from pyproject.toml (needs uv)
    python3 dev.py bench     # benchmark suite (~20 min; --quick < 3 min): tillpay on PostgreSQL
                             # and SQLite against FastAPI baselines; needs PostgreSQL (postgres@
                             # 127.0.0.1 trust) and Redis on loopback, installs wrk if missing;
                             # extra arguments go to `python -m bench` (--help lists them);
                             # writes bench/results/latest.json (docs/performance.md)

A virtualenv is created in .venv and reinstalled only when the lock files change.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PYTHON = BIN / "python"


def _run(*args: str | Path, env: dict[str, str] | None = None) -> None:
    result = subprocess.run([str(a) for a in args], cwd=ROOT, env=env, check=False)
    if result.returncode != 0:
        sys.exit(result.returncode)


def ensure_env(*, dev: bool) -> None:
    """Create .venv and install the locked dependencies when they changed."""
    if sys.version_info < (3, 11):
        sys.exit("tillpay needs Python 3.11 or newer")
    lock = ROOT / ("requirements-dev.lock" if dev else "requirements.lock")
    digest = hashlib.sha256(lock.read_bytes() + (ROOT / "pyproject.toml").read_bytes())
    stamp = VENV / f".installed-{'dev' if dev else 'run'}"
    if stamp.exists() and stamp.read_text() == digest.hexdigest() and PYTHON.exists():
        return
    if not PYTHON.exists():
        print("dev.py: creating .venv", flush=True)
        venv.EnvBuilder(with_pip=True, clear=False).create(VENV)
    print(f"dev.py: installing {lock.name}", flush=True)
    pip = [PYTHON, "-m", "pip", "--disable-pip-version-check", "install", "--quiet"]
    _run(*pip, "--require-hashes", "-r", lock)
    _run(*pip, "--no-deps", "-e", ".")
    for other in VENV.glob(".installed-*"):
        other.unlink()
    stamp.write_text(digest.hexdigest())


def serve(extra: list[str]) -> None:
    ensure_env(dev=False)
    os.execv(BIN / "tillpay", [str(BIN / "tillpay"), "dev", *extra])  # noqa: S606


def _wants_own_parallelism(extra: list[str]) -> bool:
    return (
        any(
            a in ("-n", "--numprocesses", "--dist") or a.startswith(("-n", "--numprocesses="))
            for a in extra
        )
        or "no:xdist" in extra
    )


def test(extra: list[str]) -> None:
    """Run pytest in this process's place, so Ctrl-C reaches pytest itself and its
    teardown (test databases, Redis keys, servers) runs; a parent waiting in
    subprocess.run would kill it 0.25 s after the signal."""
    ensure_env(dev=True)
    args = [str(PYTHON), "-m", "pytest"]
    if not _wants_own_parallelism(extra):
        # pytest-xdist workers: one more than the cores, since tests also wait on
        # PostgreSQL, Redis and subprocesses (measured ~10 % faster than one per core on
        # 2 cores). TILLPAY_TEST_WORKERS overrides.
        workers = os.environ.get("TILLPAY_TEST_WORKERS") or str((os.cpu_count() or 1) + 1)
        # worksteal: an idle worker takes tests queued for a busy one, so the run ends
        # when the work does, not when the worker dealt the slowest tests does.
        args += ["-n", workers, "--dist", "worksteal"]
    args += extra
    # Each xdist worker imports every test module and pytest rewrites their asserts: with
    # bytecode caching off (PYTHONDONTWRITEBYTECODE, set in some shells and CI images)
    # every worker of every run compiles them again (measured: collection 9.8 s → 4.1 s
    # of CPU per worker with the cache). __pycache__/ is git-ignored.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    if os.name == "nt":
        _run(*args, env=env)
        return
    os.execve(PYTHON, args, env)  # noqa: S606


def check() -> None:
    ensure_env(dev=True)
    _run(BIN / "ruff", "check", "src", "tests", "bench", "dev.py")
    _run(BIN / "ruff", "format", "--check", "src", "tests", "bench", "dev.py")
    _run(BIN / "mypy")  # src/, strict
    _run(BIN / "mypy", "tests")  # non-strict ([[tool.mypy.overrides]] for tests.*)
    _run(BIN / "mypy", "bench")  # the benchmark harness, strict as src
    _run(BIN / "lint-imports")  # [tool.importlinter] in pyproject.toml
    # Medium and high findings fail; a reviewed one carries `# nosec BXXX - why` in place.
    _run(BIN / "bandit", "--quiet", "--recursive", "src", "--severity-level", "medium")
    env = dict(os.environ)
    database = ROOT / "var" / "alembic-check.db"
    database.parent.mkdir(exist_ok=True)
    database.unlink(missing_ok=True)
    env["TILLPAY_DATABASE_URL"] = f"sqlite+aiosqlite:///{database}"
    _run(BIN / "tillpay", "migrate", env=env)
    _run(BIN / "alembic", "check", env=env)


def docs() -> None:
    ensure_env(dev=True)
    _run(BIN / "tillpay", "openapi", "--output", "openapi.json")
    _run(BIN / "tillpay", "config-docs", "--update", "README.md")
    _run(BIN / "tillpay", "event-docs", "--update", "docs/events.md")


def bench(extra: list[str]) -> None:
    """Run the benchmark in this process's place, so Ctrl-C reaches it and its clean-up
    (servers, the bench database, its Redis keys) runs."""
    ensure_env(dev=True)
    args = [str(PYTHON), "-m", "bench", *extra]
    if os.name == "nt":
        _run(*args)
        return
    os.chdir(ROOT)
    os.execv(PYTHON, args)  # noqa: S606


def lock() -> None:
    for extra, name in ((None, "requirements.lock"), ("dev", "requirements-dev.lock")):
        args = ["uv", "pip", "compile", "pyproject.toml", "--python-version", "3.11"]
        args += ["--generate-hashes", "-o", name]
        if extra:
            args += ["--extra", extra]
        _run(*args)


COMMANDS = ("serve", "test", "check", "docs", "lock", "bench")


def main(argv: list[str]) -> None:
    if argv and argv[0] in {"-h", "--help", "help"}:
        print(__doc__)
        return
    if not argv or argv[0] not in COMMANDS:
        if argv:
            print(f"dev.py: unknown command {argv[0]!r}", file=sys.stderr)
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    command, rest = argv[0], argv[1:]
    if command == "serve":
        serve(rest)
    elif command == "test":
        test(rest)
    elif command == "check":
        check()
    elif command == "docs":
        docs()
    elif command == "bench":
        bench(rest)
    else:
        lock()


if __name__ == "__main__":
    main(sys.argv[1:])
