"""`tillpay serve`/`tillpay dev` flags and messages, `--help` texts, and `dev.py`."""

from __future__ import annotations

import asyncio
import functools
import importlib.util
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
import typer
from typer.testing import CliRunner

from tests.conftest import SESSION_SECRET, _base_settings, _run_sync
from tillpay import migrate
from tillpay.cli import app as cli

ROOT = Path(__file__).resolve().parents[2]


def _env(tmp_path: Path, database_url: str) -> dict[str, str]:
    return {
        "TILLPAY_DATABASE_URL": database_url,
        "TILLPAY_SECRET_KEY": SESSION_SECRET,
        "TILLPAY_ENVIRONMENT": "development",
        "TILLPAY_DATA_DIR": str(tmp_path),
        "TILLPAY_WORKER_IN_PROCESS": "false",
    }


@pytest.fixture
def migrated_sqlite(tmp_path: Path) -> str:
    url = f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}"
    _run_sync(migrate.upgrade, _base_settings(database_url=url))
    return url


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port this test listens on, so binding it fails."""
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    try:
        yield holder.getsockname()[1]
    finally:
        holder.close()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _all_command_paths() -> list[list[str]]:
    root: Any = typer.main.get_command(cli)
    paths: list[list[str]] = [[]]
    for name, command in root.commands.items():
        paths.append([name])
        paths += [[name, sub] for sub in getattr(command, "commands", {})]
    return paths


@pytest.mark.parametrize("path", _all_command_paths(), ids=lambda p: " ".join(p) or "tillpay")
def test_help_texts_read_as_plain_text(path: list[str]) -> None:
    result = CliRunner().invoke(cli, [*path, "--help"])
    assert result.exit_code == 0
    for noise in ("<bool>", "<int>", "<Path>", "╭"):
        assert noise not in result.output
    # A command summary cut short ends in "..." (the usage line's "[ARGS]..." is fine).
    truncated = [line for line in result.output.splitlines()[1:] if line.endswith("...")]
    assert truncated == []


async def test_a_port_in_use_is_one_line_naming_the_flag(
    tmp_path: Path, migrated_sqlite: str, busy_port: int
) -> None:
    env = _env(tmp_path, migrated_sqlite)
    args = ["serve", "--host", "127.0.0.1", "--port", str(busy_port)]
    invoke = functools.partial(CliRunner().invoke, cli, args, env=env)
    result = await asyncio.to_thread(invoke)
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert f"port {busy_port} is already in use" in lines[0]
    assert "--port" in lines[0]
    assert "TILLPAY_PORT" in lines[0]


async def test_dev_takes_host_and_port_and_reports_a_busy_port(
    tmp_path: Path, busy_port: int
) -> None:
    env = _env(tmp_path, f"sqlite+aiosqlite:///{tmp_path / 'dev.db'}")
    args = ["dev", "--host", "127.0.0.1", "--port", str(busy_port)]
    invoke = functools.partial(CliRunner().invoke, cli, args, env=env)
    result = await asyncio.to_thread(invoke)
    assert result.exit_code == 2
    assert "already in use" in result.stderr
    assert "Traceback" not in result.output


@pytest.mark.parametrize("workers", [1, 2])
def test_serve_listens_on_the_given_port_and_says_so(
    tmp_path: Path, migrated_sqlite: str, workers: int
) -> None:
    port = _free_port()
    env = {**os.environ, **_env(tmp_path, migrated_sqlite)}
    command = [sys.executable, "-m", "tillpay.cli", "serve", "--host", "127.0.0.1"]
    command += ["--port", str(port), "--workers", str(workers)]
    process = subprocess.Popen(  # noqa: S603 - our own CLI
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    try:
        assert process.stdout is not None
        first_line = process.stdout.readline()
        assert first_line.startswith(f"tillpay: serving on http://127.0.0.1:{port}")
        deadline = time.monotonic() + 60
        status = None
        while time.monotonic() < deadline and status != 200:
            try:
                status = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code
            except httpx.TransportError:
                time.sleep(0.3)
        assert status == 200
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _load_dev_py() -> ModuleType:
    spec = importlib.util.spec_from_file_location("tillpay_dev_py", ROOT / "dev.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_dev_py_help_exits_zero() -> None:
    result = subprocess.run(  # noqa: S603 - our own script
        [sys.executable, str(ROOT / "dev.py"), "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0
    assert "python3 dev.py serve" in result.stdout


def test_dev_py_unknown_command_is_an_error() -> None:
    result = subprocess.run(  # noqa: S603 - our own script
        [sys.executable, str(ROOT / "dev.py"), "bogus"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "unknown command 'bogus'" in result.stderr


def test_dev_py_serve_passes_host_and_port_to_tillpay_dev(monkeypatch: pytest.MonkeyPatch) -> None:
    dev_py = _load_dev_py()
    calls: list[Any] = []
    monkeypatch.setattr(dev_py, "ensure_env", lambda *, dev: None)
    monkeypatch.setattr(dev_py.os, "execv", lambda path, argv: calls.append(argv))
    dev_py.main(["serve", "--host", "0.0.0.0", "--port", "8123"])
    assert calls == [[str(dev_py.BIN / "tillpay"), "dev", "--host", "0.0.0.0", "--port", "8123"]]
