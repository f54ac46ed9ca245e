"""The RabbitMQ event hub against the machine's real broker: every outbox event is
published to the durable topic exchange ``tillpay.events`` (routing key = type, persistent,
``message_id`` = event id, publisher confirms); while the broker is down the events wait
and flow, each once, when it is back."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aio_pika
import pytest
from sqlalchemy import select

from tests.conftest import ClientFactory
from tests.hub.conftest import AMQP_URL
from tests.webhooks.conftest import Hooks
from tillpay.events.models import DeliveryStatus, EventDelivery, OutboxEvent
from tillpay.hub import broker
from tillpay.hub import jobs as hub_jobs
from tillpay.kit.jobs import JobContext

pytestmark = pytest.mark.rabbitmq

CLOSED_PORT_URL = "amqp://guest:guest@127.0.0.1:1/"


@pytest.fixture
async def tap(topology: broker.Topology) -> AsyncIterator[aio_pika.abc.AbstractQueue]:
    """An exclusive queue of this test bound to every routing key of the exchange, as an
    external system would bind one."""
    connection = await aio_pika.connect(AMQP_URL, timeout=5)
    channel = await connection.channel()
    exchange = await broker.declare_topology(channel, topology)
    queue = await channel.declare_queue(f"tillpay-test-{uuid.uuid4().hex[:12]}", exclusive=True)
    await queue.bind(exchange, routing_key="#")
    try:
        yield queue
    finally:
        await connection.close()


async def messages_for(
    queue: aio_pika.abc.AbstractQueue, ids: set[str], *, wait_seconds: float = 10.0
) -> list[aio_pika.abc.AbstractIncomingMessage]:
    """The queue's messages about ``ids`` (others' skipped), until all arrived."""
    found: list[aio_pika.abc.AbstractIncomingMessage] = []
    deadline = asyncio.get_running_loop().time() + wait_seconds
    while {m.message_id for m in found} < ids or len(found) < len(ids):
        message = await queue.get(fail=False, no_ack=True)
        if message is None:
            if asyncio.get_running_loop().time() > deadline:
                break
            await asyncio.sleep(0.05)
            continue
        if message.message_id in ids:
            found.append(message)
    return found


async def outbox_ids(hooks: Hooks) -> set[str]:
    database: Any = hooks.client.app.state.database  # type: ignore[attr-defined]
    async with database.session() as session:
        return set((await session.execute(select(OutboxEvent.id))).scalars())


async def publish(hooks: Hooks) -> None:
    context: JobContext[Any] = hooks.context()
    try:
        await hooks.relay()
        await hub_jobs.publish_due(context)
    finally:
        await context.aclose()


async def test_every_event_is_published_once_with_its_type_as_routing_key(
    make_client: ClientFactory,
    clean_db: None,
    mail_dir: Path,
    tap: aio_pika.abc.AbstractQueue,
    topology: broker.Topology,
) -> None:
    async with make_client(broker_url=AMQP_URL, broker_exchange=topology.exchange) as client:
        hooks = Hooks(client, mail_dir)
        customer = await hooks.checkout.shop.customer()
        order, _ = await hooks.checkout.paid_order(customer)
        await publish(hooks)
        ids = await outbox_ids(hooks)
        received = await messages_for(tap, ids)
        await publish(hooks)  # nothing is published twice
        again = await messages_for(tap, ids, wait_seconds=0.5)

    assert len(received) == len(ids)
    assert again == []
    by_type = {str(m.routing_key): m for m in received}
    # The arrangement's accounts announce themselves too (user.registered, …).
    assert {t for t in by_type if not t.startswith("user.")} == {"order.paid", "payment.succeeded"}
    assert "user.registered" in by_type
    paid = by_type["order.paid"]
    assert paid.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
    assert paid.content_type == "application/json"
    body = json.loads(paid.body)
    assert body["id"] == paid.message_id
    assert body["type"] == "order.paid"
    assert body["data"]["object"]["id"] == order["id"]
    assert body["data"]["object"]["status"] == "paid"


async def test_events_wait_while_the_broker_is_down_and_flow_once_when_it_is_back(
    make_client: ClientFactory,
    clean_db: None,
    mail_dir: Path,
    tap: aio_pika.abc.AbstractQueue,
    topology: broker.Topology,
) -> None:
    async with make_client(broker_url=CLOSED_PORT_URL, broker_exchange=topology.exchange) as down:
        hooks = Hooks(down, mail_dir)
        customer = await hooks.checkout.shop.customer()
        await hooks.checkout.paid_order(customer)
        await hooks.checkout.paid_order(customer)
        await publish(hooks)
        database: Any = down.app.state.database  # type: ignore[attr-defined]
        async with database.session() as session:
            waiting = list(
                (
                    await session.execute(
                        select(EventDelivery).where(EventDelivery.consumer == hub_jobs.CONSUMER)
                    )
                ).scalars()
            )
        admin = hooks._admin
        written = await outbox_ids(hooks)

    assert len(waiting) == len(written) >= 4  # two orders' events, the accounts' own
    assert {d.status for d in waiting} == {DeliveryStatus.PENDING}
    assert all(d.attempts == 1 and "broker unavailable" in (d.last_error or "") for d in waiting)

    async with make_client(broker_url=AMQP_URL, broker_exchange=topology.exchange) as up:
        hooks = Hooks(up, mail_dir)
        hooks._admin = admin
        # The retry is due a second after the failure.
        await asyncio.sleep(1.1)
        await publish(hooks)
        ids = await outbox_ids(hooks)
        received = await messages_for(tap, ids)
        async with up.app.state.database.session() as session:  # type: ignore[attr-defined]
            done = list(
                (
                    await session.execute(
                        select(EventDelivery).where(EventDelivery.consumer == hub_jobs.CONSUMER)
                    )
                ).scalars()
            )

    assert sorted(str(m.message_id) for m in received) == sorted(ids)
    assert {d.status for d in done} == {DeliveryStatus.DELIVERED}


async def test_without_a_broker_no_hub_delivery_is_made(hooks: Hooks, receiver: Any) -> None:
    customer = await hooks.checkout.shop.customer()
    await hooks.checkout.paid_order(customer)
    await hooks.relay()
    database: Any = hooks.client.app.state.database  # type: ignore[attr-defined]
    async with database.session() as session:
        consumers = set((await session.execute(select(EventDelivery.consumer))).scalars())
    assert hub_jobs.CONSUMER not in consumers
