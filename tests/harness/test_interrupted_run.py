"""The test harness is polite: an interrupted run removes what it created.

Each test here starts a real pytest run (through `python3 dev.py test`, the README's
command) of the sleeper below on PostgreSQL + Redis, waits until that run's database and
Redis keys exist, interrupts it, and checks that both are gone afterwards.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import asyncpg
import httpx
import pytest
import redis

from tests.conftest import IN_CI, PG_ADMIN_DSN, PG_TEST_DB_PREFIX, REDIS_TEST_URL

ROOT = Path(__file__).resolve().parents[2]
SLEEPER = "TILLPAY_TEST_HARNESS_SLEEPER"


@pytest.mark.skipif(not os.environ.get(SLEEPER), reason="only inside the harness tests")
async def test_sleeper(client: httpx.AsyncClient) -> None:
    """Writes rate-limit keys to Redis, then waits to be interrupted."""
    assert (await client.get("/v1/products")).status_code == 200
    await asyncio.sleep(120)


def _databases_of(pid: int) -> list[str]:
    async def query() -> list[str]:
        conn = await asyncpg.connect(PG_ADMIN_DSN, timeout=5)
        try:
            rows = await conn.fetch(
                "SELECT datname FROM pg_database WHERE datname LIKE $1",
                f"{PG_TEST_DB_PREFIX}{pid}_%",
            )
        finally:
            await conn.close()
        return [r["datname"] for r in rows]

    return asyncio.run(query())


def _keys(prefix: str) -> list[bytes]:
    return list(redis.Redis.from_url(REDIS_TEST_URL).scan_iter(match=f"{prefix}:*"))


def _services_up() -> bool:
    async def pg() -> None:
        await (await asyncpg.connect(PG_ADMIN_DSN, timeout=2)).close()

    try:
        redis.Redis.from_url(REDIS_TEST_URL, socket_connect_timeout=2).ping()
        asyncio.run(pg())
    except Exception:
        return False
    return True


@pytest.mark.postgres
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["sigint", "sigterm"])
def test_an_interrupted_run_drops_its_database_and_redis_keys(signum: int) -> None:
    if not _services_up():
        if IN_CI:
            pytest.fail("PostgreSQL and Redis are required on CI", pytrace=False)
        pytest.skip("PostgreSQL or Redis unreachable")
    prefix = f"tillpay-harness-{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        SLEEPER: "1",
        "TILLPAY_TEST_BACKENDS": "postgres",
        "TILLPAY_TEST_REDIS_PREFIX": prefix,
    }
    run = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
        [sys.executable, "dev.py", "test", "-p", "no:xdist", "-q", f"{__file__}::test_sleeper"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 90
        while not (_databases_of(run.pid) and _keys(prefix)):
            assert run.poll() is None, run.stdout.read().decode() if run.stdout else ""
            assert time.monotonic() < deadline, "the run never created its database and keys"
            time.sleep(0.2)
        run.send_signal(signum)
        output, _ = run.communicate(timeout=60)
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
    assert _databases_of(run.pid) == [], output.decode(errors="replace")
    assert _keys(prefix) == []
