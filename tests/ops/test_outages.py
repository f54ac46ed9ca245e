"""Database and Redis outages are 503s with Retry-After, never 500s."""

from __future__ import annotations

import asyncio
from collections import Counter

import asyncpg
import httpx
import pytest

from tests.conftest import PG_ADMIN_DSN, REDIS_TEST_PREFIX, REDIS_TEST_URL, ClientFactory
from tillpay.kit.ratelimit import RateLimiter

CLOSED_PORT_DATABASE = "postgresql+asyncpg://postgres@127.0.0.1:1/gone"


async def test_an_unreachable_database_is_a_503_with_retry_after(
    make_client: ClientFactory,
) -> None:
    async with make_client(database_url=CLOSED_PORT_DATABASE) as client:
        response = await client.get("/v1/products")
    assert response.status_code == 503
    assert response.headers["content-type"].startswith("application/problem+json")
    assert int(response.headers["retry-after"]) >= 1
    body = response.json()
    assert body["code"] == "database_unavailable"
    assert "Traceback" not in response.text
    assert "127.0.0.1" not in response.text


async def test_an_unreachable_database_is_a_503_on_writes_too(
    make_client: ClientFactory,
) -> None:
    async with make_client(database_url=CLOSED_PORT_DATABASE) as client:
        response = await client.post(
            "/v1/auth/register",
            json={"email": "someone@example.com", "password": "correct horse battery staple"},
        )
    assert response.status_code == 503
    assert response.json()["code"] == "database_unavailable"


async def test_a_burst_larger_than_the_redis_pool_waits_for_connections(
    make_client: ClientFactory, backend: str
) -> None:
    """Several hundred parallel requests against real Redis and a small pool: requests
    queue for a connection instead of being refused as if Redis were down."""
    if backend != "postgres":
        pytest.skip("needs Redis (the PostgreSQL variant runs with Redis)")
    async with make_client(
        ratelimit_fail_open=False, redis_pool_size=4, redis_pool_timeout_seconds=10
    ) as client:
        responses = await asyncio.gather(*(client.get("/healthz/none") for _ in range(400)))
    statuses = Counter(r.status_code for r in responses)
    assert statuses == {404: 400}


async def test_redis_pool_exhaustion_is_not_treated_as_an_outage() -> None:
    """A pool wait that times out is "busy": it does not trip the outage breaker that
    would deny (fail-closed) every request for the next second."""
    limiter = RateLimiter(
        REDIS_TEST_URL,
        fail_open=False,
        key_prefix=f"{REDIS_TEST_PREFIX}:rl",
        pool_size=1,
        pool_timeout=0.05,
    )
    limiter.register("p", "100000/minute")
    try:
        if not await limiter.check_storage():
            pytest.skip("Redis unreachable")
        pool = limiter._pool
        assert pool is not None
        held = await pool.get_connection()
        try:
            busy = await limiter.hit("p", "k")
        finally:
            await pool.release(held)
        after = await limiter.hit("p", "k")
    finally:
        await limiter.close()
    assert busy.degraded
    assert after.allowed
    assert not after.degraded


async def test_pooled_connections_the_server_closed_are_replaced_without_failing_requests(
    client: httpx.AsyncClient, backend: str, database_url: str
) -> None:
    """PostgreSQL restarted or an operator ended the backends: the next requests get fresh
    connections instead of errors (no per-checkout ping round trip is needed for this)."""
    if backend != "postgres":
        pytest.skip("SQLite has no server to close connections")
    for _ in range(3):
        assert (await client.get("/v1/products")).status_code == 200
    name = database_url.rsplit("/", 1)[1]
    conn = await asyncpg.connect(PG_ADMIN_DSN, timeout=5)
    try:
        ended = await conn.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = $1",
            name,
        )
    finally:
        await conn.close()
    assert ended >= 1
    await asyncio.sleep(0.2)  # the server's goodbye reaches the pooled sockets

    statuses = [(await client.get("/v1/products")).status_code for _ in range(5)]

    assert statuses == [200] * 5
