"""Who hears an event live, decided once by the publisher, and what it costs: the subject is
read once for its owners and the admin channel alike."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
from sqlalchemy import event, select

from tests.commerce.helpers import Shop
from tests.payments.helpers import Checkout
from tillpay import event_payloads
from tillpay.events.models import OutboxEvent
from tillpay.realtime import audience


@contextmanager
def statements(engine: Any) -> Iterator[list[str]]:
    """The SQL statements ``engine`` runs inside the block."""
    seen: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(statement)

    event.listen(engine.sync_engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", record)


async def test_an_order_event_reads_the_order_once_for_owner_vendor_and_admin(
    client: httpx.AsyncClient, accounts: Any
) -> None:
    checkout = Checkout(Shop(accounts))
    buyer = await checkout.shop.customer()
    order, _ = await checkout.paid_order(buyer)
    database: Any = client.app.state.database  # type: ignore[attr-defined]
    async with database.read_session() as session:
        paid = (
            await session.execute(select(OutboxEvent).where(OutboxEvent.type == "order.paid"))
        ).scalar_one()
    async with database.read_session() as session:
        with statements(database.engine) as seen:
            out = await audience.envelopes(session, paid)
        expected_admin = await event_payloads.payload(session, paid)

    assert len([s for s in seen if "FROM orders" in s]) == 1
    by_audience = dict(out)
    assert json.loads(by_audience["admin"])["event"] == expected_admin
    assert (
        json.loads(by_audience[f"user:{buyer.user_id}"])["event"]["data"]["object"]["id"]
        == (order["id"])
    )
