"""A database whose schema is behind the migrations is refused, not served with 500s."""

from __future__ import annotations

import asyncio
import functools
import os
import socket
import subprocess
import sys
from pathlib import Path

import httpx
from typer.testing import CliRunner

from tests.conftest import SESSION_SECRET, ClientFactory, _base_settings, _run_sync
from tillpay import migrate
from tillpay.cli import app as cli


def _empty_sqlite(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'unmigrated.db'}"


async def test_api_answers_503_telling_to_migrate_when_the_schema_is_behind(
    make_client: ClientFactory, tmp_path: Path
) -> None:
    async with make_client(database_url=_empty_sqlite(tmp_path), redis_url=None) as client:
        response = await client.get("/v1/products")
    assert response.status_code == 503
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.headers["retry-after"]
    body = response.json()
    assert body["code"] == "schema_outdated"
    assert "tillpay migrate" in body["detail"]
    assert "Traceback" not in response.text
    assert "no such table" not in response.text


async def test_readiness_reports_a_schema_behind_the_migrations(
    make_client: ClientFactory, tmp_path: Path
) -> None:
    async with make_client(database_url=_empty_sqlite(tmp_path), redis_url=None) as client:
        response = await client.get("/readyz")
    assert response.status_code == 503
    checks = response.json()["checks"]
    assert checks["database"]["status"] == "ok"
    assert checks["schema"]["status"] == "unavailable"


async def test_readiness_reports_a_current_schema(client: httpx.AsyncClient) -> None:
    response = await client.get("/readyz")
    assert response.json()["checks"]["schema"]["status"] == "ok"


async def test_migrating_a_running_app_makes_it_ready(
    make_client: ClientFactory, tmp_path: Path
) -> None:
    url = _empty_sqlite(tmp_path)
    async with make_client(database_url=url, redis_url=None) as client:
        assert (await client.get("/v1/products")).status_code == 503
        _run_sync(migrate.upgrade, _base_settings(database_url=url))
        await asyncio.sleep(1.1)  # the re-check interval
        assert (await client.get("/readyz")).status_code == 200
        assert (await client.get("/v1/products")).status_code == 200


async def test_serve_refuses_to_start_on_an_unmigrated_database(tmp_path: Path) -> None:
    # A port held by this test: were the check missing, the server would fail to bind
    # and exit instead of serving forever.
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    env = {
        "TILLPAY_HOST": "127.0.0.1",
        "TILLPAY_PORT": str(holder.getsockname()[1]),
        "TILLPAY_DATABASE_URL": _empty_sqlite(tmp_path),
        "TILLPAY_SECRET_KEY": SESSION_SECRET,
        "TILLPAY_ENVIRONMENT": "test",
        "TILLPAY_DATA_DIR": str(tmp_path),
    }
    invoke = functools.partial(CliRunner().invoke, cli, ["serve"], env=env)
    try:
        result = await asyncio.to_thread(invoke)
    finally:
        holder.close()
    assert result.exit_code == 2
    assert "not at the latest" in result.output
    assert "run `tillpay migrate`" in result.output
    assert "Traceback" not in result.output


def test_the_worker_refuses_to_start_on_an_unmigrated_database(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "TILLPAY_DATABASE_URL": _empty_sqlite(tmp_path),
        "TILLPAY_SECRET_KEY": SESSION_SECRET,
        "TILLPAY_ENVIRONMENT": "test",
        "TILLPAY_DATA_DIR": str(tmp_path),
    }
    # A subprocess with a timeout: were the check missing, the worker would run on.
    result = subprocess.run(
        [sys.executable, "-m", "tillpay.cli", "worker"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "run `tillpay migrate`" in result.stderr
