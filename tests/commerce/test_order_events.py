"""Order outbox events: every order transition writes exactly one ``order.<status>`` row,
in the transaction of the change, from ``orders.transition`` alone."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from tests.commerce.helpers import Shop
from tests.conftest import ClientFactory
from tests.payments.helpers import Checkout
from tests.payments.test_refunds import refund
from tillpay.events.models import OutboxEvent
from tillpay.kit.db import utcnow
from tillpay.payments.expiry import expire_unpaid_orders

RELAXED_AUTH = {"auth": "1000/minute"}


@pytest.fixture
async def client(make_client: ClientFactory, clean_db: None) -> AsyncIterator[httpx.AsyncClient]:
    async with make_client(ratelimit_policies=RELAXED_AUTH) as c:
        yield c


@pytest.fixture
def checkout(shop: Shop) -> Checkout:
    return Checkout(shop)


async def order_events(shop: Shop, order_id: str) -> list[tuple[str, dict[str, Any]]]:
    """The order's outbox rows as (type, data), oldest first."""
    async with shop.accounts.database.session() as session:
        rows = (
            await session.execute(
                select(OutboxEvent)
                .where(OutboxEvent.subject_type == "order", OutboxEvent.subject_id == order_id)
                .order_by(OutboxEvent.created_at, OutboxEvent.id)
            )
        ).scalars()
        return [(row.type, row.payload["data"]) for row in rows]


def types(events: list[tuple[str, dict[str, Any]]]) -> list[str]:
    return [event_type for event_type, _ in events]


async def test_checkout_writes_no_order_event(shop: Shop) -> None:
    order = await shop.order(await shop.customer())
    assert await order_events(shop, order["id"]) == []


async def test_cancelling_writes_one_order_cancelled(shop: Shop) -> None:
    customer = await shop.customer()
    order = await shop.order(customer)
    cancelled = await shop.client.post(f"/v1/orders/{order['id']}/cancel", headers=customer.headers)
    assert cancelled.status_code == 200, cancelled.text
    events = await order_events(shop, order["id"])
    assert types(events) == ["order.cancelled"]
    data = events[0][1]
    assert (data["order_id"], data["from"], data["to"]) == (
        order["id"],
        "pending_payment",
        "cancelled",
    )


async def test_expiry_writes_one_order_expired(shop: Shop) -> None:
    order = await shop.order(await shop.customer())
    async with shop.accounts.database.session() as session, session.begin():
        assert await expire_unpaid_orders(session, now=utcnow() + timedelta(days=1)) == 1
    events = await order_events(shop, order["id"])
    assert types(events) == ["order.expired"]
    assert events[0][1]["order_id"] == order["id"]


async def test_a_paid_order_has_exactly_one_order_paid(checkout: Checkout) -> None:
    customer = await checkout.shop.customer()
    order, payment = await checkout.paid_order(customer)
    events = await order_events(checkout.shop, order["id"])
    assert types(events) == ["order.paid"]
    data = events[0][1]
    assert (data["order_id"], data["payment_id"]) == (order["id"], payment["id"])


async def test_fulfilling_writes_one_order_fulfilled(checkout: Checkout) -> None:
    customer = await checkout.shop.customer()
    order, _ = await checkout.paid_order(customer)
    admin = await checkout.shop.accounts.admin()
    fulfilled = await checkout.client.post(
        f"/v1/admin/orders/{order['id']}/fulfil", headers=admin.headers
    )
    assert fulfilled.status_code == 200, fulfilled.text
    assert types(await order_events(checkout.shop, order["id"])) == [
        "order.paid",
        "order.fulfilled",
    ]


async def test_refunds_write_one_event_per_transition(checkout: Checkout) -> None:
    customer = await checkout.shop.customer()
    order, payment = await checkout.paid_order(customer, price=10000)
    admin = await checkout.shop.accounts.admin()
    for amount in (1000, 2000):
        response = await refund(checkout, admin, payment["id"], amount=amount)
        assert response.status_code == 201, response.text
    assert (await refund(checkout, admin, payment["id"])).status_code == 201
    events = await order_events(checkout.shop, order["id"])
    assert types(events) == [
        "order.paid",
        "order.partially_refunded",
        "order.partially_refunded",
        "order.refunded",
    ]
    assert {data["order_id"] for _, data in events} == {order["id"]}
