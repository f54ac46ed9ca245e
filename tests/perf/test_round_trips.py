"""Round-trip budgets of the hot read paths, counted on the wire (not timed).

An authenticated single-object read costs at most 3 PostgreSQL round trips and 1 Redis
round trip (issue 11): the session check, the object, and the global rate limit.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from bench.rtt_proxy import RttProxy

from tests.accounts.helpers import Accounts
from tests.commerce.helpers import Shop
from tests.conftest import ClientFactory

PG_BUDGET = 3
REDIS_BUDGET = 1


def _swap_port(url: str, port: int) -> str:
    parts = urlsplit(url)
    assert parts.port is not None
    return url.replace(f"{parts.hostname}:{parts.port}", f"127.0.0.1:{port}", 1)


@pytest.fixture
async def proxies(backend: str, database_url: str) -> AsyncIterator[tuple[RttProxy, ...]]:
    if backend != "postgres":
        pytest.skip("round trips are counted on the PostgreSQL + Redis backend")
    from tests.conftest import REDIS_TEST_URL

    db, redis = urlsplit(database_url), urlsplit(REDIS_TEST_URL)
    async with (
        RttProxy(db.hostname or "127.0.0.1", db.port or 5432) as pg,
        RttProxy(redis.hostname or "127.0.0.1", redis.port or 6379) as rd,
    ):
        yield pg, rd


@pytest.fixture
async def counted(
    proxies: tuple[RttProxy, RttProxy],
    make_client: ClientFactory,
    database_url: str,
    clean_db: None,
    mail_dir: Any,
) -> AsyncIterator[tuple[Shop, RttProxy, RttProxy]]:
    from tests.conftest import REDIS_TEST_URL

    pg, rd = proxies
    async with make_client(
        database_url=_swap_port(database_url, pg.port),
        redis_url=_swap_port(REDIS_TEST_URL, rd.port),
    ) as client:
        yield Shop(Accounts(client, mail_dir)), pg, rd


async def _cost(request: Callable[[], Any], pg: RttProxy, rd: RttProxy) -> tuple[int, int]:
    """Round trips of one warm request (the most over a few, after warming up)."""
    for _ in range(3):  # new connections, prepared statements, caches
        response: httpx.Response = await request()
        assert response.status_code == 200, response.text
    worst = (0, 0)
    for _ in range(5):
        before = (pg.round_trips, rd.round_trips)
        response = await request()
        assert response.status_code == 200, response.text
        cost = (pg.round_trips - before[0], rd.round_trips - before[1])
        worst = (max(worst[0], cost[0]), max(worst[1], cost[1]))
    return worst


def assert_within_budget(cost: tuple[int, int]) -> None:
    assert cost[0] <= PG_BUDGET, f"{cost[0]} PostgreSQL round trips"
    assert cost[1] <= REDIS_BUDGET, f"{cost[1]} Redis round trips"


async def test_reading_an_order_costs_at_most_three_postgres_and_one_redis_round_trip(
    counted: tuple[Shop, RttProxy, RttProxy],
) -> None:
    shop, pg, rd = counted
    customer = await shop.customer()
    order = await shop.order(customer)

    cost = await _cost(
        lambda: shop.client.get(f"/v1/orders/{order['id']}", headers=customer.headers), pg, rd
    )

    assert_within_budget(cost)


async def test_reading_me_costs_at_most_three_postgres_and_one_redis_round_trip(
    counted: tuple[Shop, RttProxy, RttProxy],
) -> None:
    shop, pg, rd = counted
    customer = await shop.customer()

    cost = await _cost(lambda: shop.client.get("/v1/me", headers=customer.headers), pg, rd)

    assert_within_budget(cost)


async def test_listing_products_costs_at_most_three_postgres_and_one_redis_round_trip(
    counted: tuple[Shop, RttProxy, RttProxy],
) -> None:
    shop, pg, rd = counted
    vendor = await shop.vendor()
    for _ in range(3):
        await shop.product(vendor)

    cost = await _cost(lambda: shop.client.get("/v1/products?limit=20"), pg, rd)

    assert_within_budget(cost)
