"""On PostgreSQL: concurrent creates of one reference with different idempotency keys
make exactly one headless payment (the (merchant, reference) unique constraint)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from tests.concurrency.test_commerce_races import assert_raced, overlap
from tests.concurrency.test_payment_races import warm_pool
from tests.conftest import ClientFactory
from tests.headless.helpers import ShopBackend, body
from tests.http.test_errors import assert_problem
from tests.payments.helpers import Checkout
from tillpay.orders.models import Order
from tillpay.payments.models import Payment


@pytest.fixture
async def client(make_client: ClientFactory, clean_db: None) -> AsyncIterator[httpx.AsyncClient]:
    async with make_client(database_pool_size=30) as c:
        yield c


async def test_concurrent_creates_of_one_reference_make_one_payment(
    checkout: Checkout, accounts: Any, backend: str
) -> None:
    if backend != "postgres":
        pytest.skip("SQLite serialises writers: nothing to race")
    shop = await ShopBackend.make(checkout.client, await accounts.admin())
    database = checkout.app.state.database
    payload = body("order-race")
    await warm_pool(database, 20)
    with overlap(database) as seen:
        responses = await asyncio.wait_for(
            asyncio.gather(*(shop.create(payload, key=f"race-{n}") for n in range(10))), 60
        )
    created = [r for r in responses if r.status_code == 201]
    assert len(created) == 1, [r.text for r in responses]
    for response in responses:
        if response.status_code != 201:
            assert assert_problem(response, 409)["code"] == "reference_in_use", response.text
    async with database.session() as session:
        orders = await session.scalar(
            select(func.count()).select_from(Order).where(Order.reference == "order-race")
        )
        payments = await session.scalar(select(func.count()).select_from(Payment))
    assert (orders, payments) == (1, 1)
    assert_raced(backend, seen, 10)
