"""Races on stock, idempotency keys and expiry.

On PostgreSQL the requests really run in parallel (each holds its own pooled connection,
and the test checks that they overlapped); on SQLite the same outcomes must hold with
writers serialised by BEGIN IMMEDIATE. Every race is time-boxed so a deadlock fails fast.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import event, func, select
from starlette.types import ASGIApp, Receive, Scope, Send

from tests.accounts.helpers import Account, Accounts
from tests.commerce.helpers import Shop
from tests.conftest import ClientFactory
from tests.http.test_errors import assert_problem
from tillpay.catalog.models import ReservationStatus, StockReservation, Variant
from tillpay.kit.db import Database, utcnow
from tillpay.orders.models import Order, OrderEvent
from tillpay.payments.expiry import expire_unpaid_orders

pytestmark = pytest.mark.postgres

RACE_TIMEOUT = 60.0
T = TypeVar("T")


class CopyLifespanState:
    """Give each request its own copy of the lifespan ``state``, as ASGI servers do.

    asgi-lifespan hands every request the same dict, so concurrent requests in one test
    would overwrite each other's request id and user id."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if "state" in scope:
            scope = {**scope, "state": dict(scope["state"])}
        await self.app(scope, receive, send)


def copy_lifespan_state(app: FastAPI) -> None:
    app.add_middleware(CopyLifespanState)


@pytest.fixture
async def client(make_client: ClientFactory, clean_db: None) -> AsyncIterator[httpx.AsyncClient]:
    # 20 checkouts at once need 20 connections; sign-ups are not what is limited here.
    async with make_client(
        setup=copy_lifespan_state,
        database_pool_size=30,
        ratelimit_policies={"auth": "1000/minute"},
    ) as c:
        yield c


@pytest.fixture
def shop(client: httpx.AsyncClient, mail_dir: Path) -> Shop:
    return Shop(Accounts(client, mail_dir))


class Overlap:
    """Peak number of pooled connections checked out at once while active."""

    def __init__(self) -> None:
        self.current = self.peak = 0

    def out(self, *_: Any) -> None:
        self.current += 1
        self.peak = max(self.peak, self.current)

    def back(self, *_: Any) -> None:
        self.current -= 1


@contextmanager
def overlap(database: Database) -> Iterator[Overlap]:
    pool = database.engine.sync_engine.pool
    seen = Overlap()
    event.listen(pool, "checkout", seen.out)
    event.listen(pool, "checkin", seen.back)
    try:
        yield seen
    finally:
        event.remove(pool, "checkout", seen.out)
        event.remove(pool, "checkin", seen.back)


def assert_raced(backend: str, seen: Overlap, racers: int) -> None:
    """On PostgreSQL, most racers held a connection (an open transaction) at once."""
    if backend == "postgres":
        assert seen.peak >= max(2, racers // 2), f"too little overlap (peak {seen.peak})"


async def race(*calls: Awaitable[T]) -> list[T]:
    return list(await asyncio.wait_for(asyncio.gather(*calls), RACE_TIMEOUT))


async def stock_of(database: Database, variant_id: str) -> int:
    async with database.session() as session:
        variant = await session.get(Variant, variant_id)
        assert variant is not None
        return int(variant.stock)


async def count(database: Database, query: Any) -> int:
    async with database.session() as session:
        return int(await session.scalar(query) or 0)


async def expire_in_own_session(database: Database) -> int:
    async with database.session() as session, session.begin():
        return await expire_unpaid_orders(session, now=utcnow() + timedelta(days=1))


async def test_twenty_checkouts_for_the_last_unit_sell_it_once(shop: Shop, backend: str) -> None:
    database = shop.accounts.database
    item = await shop.product(await shop.vendor(), stock=1)
    variant_id = item["variants"][0]["id"]
    customers: list[Account] = await asyncio.gather(*(shop.customer() for _ in range(20)))
    for customer in customers:
        assert (await shop.add_to_cart(customer, variant_id)).status_code == 200

    with overlap(database) as seen:
        responses = await race(*(shop.checkout(customer) for customer in customers))

    assert sorted(r.status_code for r in responses) == [201] + [409] * 19
    for response in responses:
        if response.status_code == 409:
            assert assert_problem(response, 409)["code"] == "out_of_stock"
    assert await stock_of(database, variant_id) == 0
    assert await count(database, select(func.count()).select_from(Order)) == 1
    active = select(func.count()).where(
        StockReservation.variant_id == variant_id,
        StockReservation.status == ReservationStatus.ACTIVE,
    )
    assert await count(database, active) == 1
    assert_raced(backend, seen, 20)


async def test_parallel_checkouts_with_one_key_make_one_order(shop: Shop, backend: str) -> None:
    database = shop.accounts.database
    customer = await shop.customer()
    item = await shop.product(await shop.vendor(), stock=10)
    variant_id = item["variants"][0]["id"]
    await shop.add_to_cart(customer, variant_id, 2)

    with overlap(database) as seen:
        responses = await race(*(shop.checkout(customer, key="one-key") for _ in range(10)))

    orders = (await shop.client.get("/v1/orders", headers=customer.headers)).json()["items"]
    assert len(orders) == 1
    created = [r for r in responses if r.status_code == 201]
    assert [r.json()["id"] for r in created] == [orders[0]["id"]] * len(created)
    assert sum("idempotent-replayed" not in r.headers for r in created) == 1
    for response in responses:
        if response.status_code != 201:
            assert assert_problem(response, 409)["code"] == "idempotency_in_progress"
    assert await stock_of(database, variant_id) == 8
    assert_raced(backend, seen, 10)


async def test_concurrent_expiry_jobs_return_the_stock_once(shop: Shop, backend: str) -> None:
    database = shop.accounts.database
    customer = await shop.customer()
    order = await shop.order(customer, stock=3)
    variant_id = order["lines"][0]["variant_id"]
    assert await stock_of(database, variant_id) == 2

    with overlap(database) as seen:
        expired = await race(*(expire_in_own_session(database) for _ in range(5)))

    assert sum(expired) == 1
    assert await stock_of(database, variant_id) == 3
    events = select(func.count()).where(
        OrderEvent.order_id == order["id"], OrderEvent.to_status == "expired"
    )
    assert await count(database, events) == 1
    assert_raced(backend, seen, 5)


async def test_cancel_racing_expiry_returns_the_stock_once(shop: Shop, backend: str) -> None:
    database = shop.accounts.database
    customer = await shop.customer()
    item = await shop.product(await shop.vendor(), stock=3)
    variant_id = item["variants"][0]["id"]
    # A few rounds, so both orders of arrival get a chance to happen.
    for _ in range(3):
        await shop.add_to_cart(customer, variant_id)
        order = (await shop.checkout(customer)).json()
        with overlap(database) as seen:
            cancel, expired = await race(
                shop.client.post(f"/v1/orders/{order['id']}/cancel", headers=customer.headers),
                expire_in_own_session(database),
            )
        assert isinstance(cancel, httpx.Response)
        stored = await shop.client.get(f"/v1/orders/{order['id']}", headers=customer.headers)
        final = stored.json()["status"]
        if cancel.status_code == 200:
            assert (final, expired) == ("cancelled", 0)
        else:
            assert assert_problem(cancel, 409)["code"] == "invalid_state_transition"
            assert (final, expired) == ("expired", 1)
        endings = select(func.count()).where(
            OrderEvent.order_id == order["id"],
            OrderEvent.to_status.in_(["cancelled", "expired"]),
        )
        assert await count(database, endings) == 1
        assert await stock_of(database, variant_id) == 3
        assert_raced(backend, seen, 2)
