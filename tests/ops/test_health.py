"""Liveness and readiness."""

from __future__ import annotations

import os

import httpx
import pytest

from tests.conftest import IN_CI, ClientFactory


async def test_liveness_answers_ok(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_readiness_checks_the_database(client: httpx.AsyncClient) -> None:
    response = await client.get("/readyz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["checks"]["database"]["status"] == "ok"


async def test_readiness_fails_when_the_database_is_gone(make_client: ClientFactory) -> None:
    async with make_client(database_url="postgresql+asyncpg://postgres@127.0.0.1:1/gone") as client:
        response = await client.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["database"]["status"] == "unavailable"
    assert "127.0.0.1" not in response.text


async def test_readiness_reports_redis_when_configured(make_client: ClientFactory) -> None:
    async with make_client(redis_url="redis://127.0.0.1:1/0", ratelimit_enabled=False) as client:
        response = await client.get("/readyz")
    assert response.status_code == 503
    checks = response.json()["checks"]
    assert checks["redis"]["status"] == "unavailable"
    assert checks["database"]["status"] == "ok"


async def test_readiness_reports_a_dead_broker(make_client: ClientFactory) -> None:
    async with make_client(broker_url="amqp://guest:guest@127.0.0.1:1/") as client:
        response = await client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["broker"]["status"] == "unavailable"
    assert "guest" not in response.text


@pytest.mark.rabbitmq
async def test_readiness_with_a_live_broker(make_client: ClientFactory) -> None:
    url = os.environ.get("TILLPAY_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
    async with make_client(broker_url=url) as client:
        response = await client.get("/readyz")
    if response.status_code != 200 and not IN_CI:
        pytest.skip("RabbitMQ unreachable")
    assert response.status_code == 200
    assert response.json()["checks"]["broker"]["status"] == "ok"


async def test_a_long_secret_key_is_accepted_by_every_part_that_keys_with_it(
    make_client: ClientFactory,
) -> None:
    """The settings allow any secret of 32+ characters; the rate limiter's key hash and
    the lockout store once refused more than 64 bytes and crashed the start."""
    async with make_client(secret_key="k" * 200) as client:
        response = await client.get("/v1/products")
    assert response.status_code == 200
