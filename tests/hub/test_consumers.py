"""tillpay's own consumers on the hub (real RabbitMQ): with a broker configured, merchant
webhooks, email and realtime each read a durable queue bound to the exchange, write their
deliveries and ack only after that commit; a message they cannot take is handed back and,
after ``TILLPAY_BROKER_MAX_ATTEMPTS`` deliveries, dead-lettered to ``<exchange>.dlq``."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aio_pika
import pytest
from sqlalchemy import select

from tests.conftest import ClientFactory
from tests.hub.conftest import AMQP_URL
from tests.webhooks.conftest import Hooks, webhook_settings
from tests.webhooks.receiver import Receiver
from tillpay import jobs
from tillpay.events.models import EventDelivery, OutboxEvent
from tillpay.hub import broker, intake
from tillpay.hub import jobs as hub_jobs
from tillpay.kit.jobs import JobContext

pytestmark = pytest.mark.rabbitmq


@contextlib.asynccontextmanager
async def consuming(hooks: Hooks) -> AsyncIterator[intake.Consumers]:
    """tillpay's consumers running as a worker runs them, until the block ends."""
    context: JobContext[Any] = hooks.context()
    consumers = intake.Consumers(context, jobs.hub_consumers(context))
    task = asyncio.create_task(consumers.run())
    try:
        await asyncio.wait_for(consumers.consuming.wait(), timeout=15)
        yield consumers
    finally:
        await consumers.stop()
        await asyncio.wait_for(task, timeout=15)
        await context.aclose()


def own_consumer_names(hooks: Hooks) -> list[str]:
    """The delivery consumers the hub's queues feed: one webhook endpoint, mail, and
    realtime where this backend has Redis."""
    names = {"webhooks": "webhook"}
    return [names.get(i.name, i.name) for i in jobs.hub_consumers(hooks.context())]


async def deliveries(hooks: Hooks) -> list[EventDelivery]:
    database: Any = hooks.client.app.state.database  # type: ignore[attr-defined]
    async with database.session() as session:
        return list((await session.execute(select(EventDelivery))).scalars())


async def until(predicate: Any, *, seconds: float = 15.0) -> None:
    deadline = asyncio.get_running_loop().time() + seconds
    while not await predicate():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def publish_raw(topology: broker.Topology, message: aio_pika.Message, key: str) -> None:
    """Publish as another system bound to the exchange could."""
    connection = await aio_pika.connect(AMQP_URL, timeout=5)
    try:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await broker.declare_topology(channel, topology)
        await exchange.publish(message, routing_key=key)
    finally:
        await connection.close()


async def dead_letters(topology: broker.Topology) -> list[aio_pika.abc.AbstractIncomingMessage]:
    connection = await aio_pika.connect(AMQP_URL, timeout=5)
    try:
        channel = await connection.channel()
        queue = await channel.declare_queue(topology.dead_letter_queue, durable=True)
        found = []
        while (message := await queue.get(fail=False, no_ack=True)) is not None:
            found.append(message)
        return found
    finally:
        await connection.close()


@pytest.fixture
async def hub_hooks(
    make_client: ClientFactory,
    clean_db: None,
    mail_dir: Path,
    receiver: Receiver,
    topology: broker.Topology,
) -> AsyncIterator[Hooks]:
    async with make_client(
        broker_url=AMQP_URL,
        broker_exchange=topology.exchange,
        broker_max_attempts=2,
        **webhook_settings(receiver),
    ) as client:
        yield Hooks(client, mail_dir)


async def test_with_a_broker_the_relay_only_publishes_and_consumers_take_from_their_queues(
    hub_hooks: Hooks, receiver: Receiver
) -> None:
    hooks = hub_hooks
    await hooks.endpoint(receiver.url, ["order.paid"])
    customer = await hooks.checkout.shop.customer()
    order, _ = await hooks.checkout.paid_order(customer)
    await hooks.relay()
    assert {d.consumer for d in await deliveries(hooks)} == {hub_jobs.CONSUMER}

    async with consuming(hooks):
        await hub_jobs.publish_due(hooks.context())

        async def webhook_delivery_made() -> bool:
            return any(d.consumer.startswith("webhook:") for d in await deliveries(hooks))

        await until(webhook_delivery_made)
        await hooks.deliver()

    bodies = [json.loads(r.body) for r in receiver.received]
    paid = [b for b in bodies if b["type"] == "order.paid"]
    assert [b["data"]["object"]["id"] for b in paid] == [order["id"]]
    consumers = {d.consumer.split(":")[0] for d in await deliveries(hooks)}
    assert consumers == {hub_jobs.CONSUMER, *own_consumer_names(hooks)}


async def test_a_message_delivered_again_after_a_crash_makes_no_second_delivery(
    hub_hooks: Hooks, receiver: Receiver, topology: broker.Topology
) -> None:
    hooks = hub_hooks
    await hooks.endpoint(receiver.url, ["order.paid"])
    customer = await hooks.checkout.shop.customer()
    await hooks.checkout.paid_order(customer)
    await hooks.relay()
    database: Any = hooks.client.app.state.database  # type: ignore[attr-defined]
    async with database.session() as session:
        paid = (
            await session.execute(select(OutboxEvent).where(OutboxEvent.type == "order.paid"))
        ).scalar_one()

    async with consuming(hooks):
        await hub_jobs.publish_due(hooks.context())
        # The same message again, as RabbitMQ redelivers one whose ack a crash lost.
        await publish_raw(
            topology, aio_pika.Message(b"{}", message_id=paid.id, type=paid.type), paid.type
        )

        async def both_taken() -> bool:
            return not await _queued(topology, "webhooks")

        await asyncio.sleep(0.3)
        await until(both_taken)

    for_paid = [d for d in await deliveries(hooks) if d.event_id == paid.id]
    assert sorted(d.consumer.split(":")[0] for d in for_paid) == sorted(
        [hub_jobs.CONSUMER, *own_consumer_names(hooks)]
    )


async def _queued(topology: broker.Topology, consumer: str) -> int:
    connection = await aio_pika.connect(AMQP_URL, timeout=5)
    try:
        channel = await connection.channel()
        queue = await channel.get_queue(topology.queue_of(consumer), ensure=True)
        declared = await queue.declare()
        return int(declared.message_count or 0)
    finally:
        await connection.close()


async def test_a_poison_message_is_dead_lettered_after_the_configured_attempts(
    hub_hooks: Hooks, topology: broker.Topology
) -> None:
    queues = own_queues(hub_hooks, topology)
    async with consuming(hub_hooks):
        await publish_raw(
            topology,
            aio_pika.Message(b'{"id": "evt_unknown"}', message_id="evt_unknown"),
            "order.paid",
        )

        async def dead_lettered() -> bool:
            return await _dead_count(topology) >= len(queues)  # one per consumer queue

        await until(dead_lettered)

    dead = await dead_letters(topology)
    assert {m.message_id for m in dead} == {"evt_unknown"}
    assert sorted(str(m.headers["x-first-death-queue"]) for m in dead) == queues
    assert {m.headers["x-first-death-reason"] for m in dead} == {"delivery_limit"}
    # Two attempts each (TILLPAY_BROKER_MAX_ATTEMPTS=2) before RabbitMQ gave up on it.
    assert all(m.headers["x-death"][0]["count"] == 1 for m in dead)  # type: ignore[index,call-overload]
    assert await deliveries(hub_hooks) == []


async def _dead_count(topology: broker.Topology) -> int:
    connection = await aio_pika.connect(AMQP_URL, timeout=5)
    try:
        channel = await connection.channel()
        queue = await channel.declare_queue(topology.dead_letter_queue, durable=True)
        declared = await queue.declare()
        return int(declared.message_count or 0)
    finally:
        await connection.close()


def own_queues(hooks: Hooks, topology: broker.Topology) -> list[str]:
    """The queues that dead-letter (realtime's, best effort, drops instead)."""
    return sorted(
        topology.queue_of(i.name) for i in jobs.hub_consumers(hooks.context()) if not i.best_effort
    )


def test_database_outages_are_waited_out_and_other_failures_count_against_the_message() -> None:
    from sqlalchemy import exc as sa_exc

    assert intake.transient(sa_exc.OperationalError("SELECT 1", {}, ConnectionRefusedError()))
    assert intake.transient(ConnectionResetError())
    assert not intake.transient(intake.UnknownEvent("evt_x"))
    assert not intake.transient(sa_exc.IntegrityError("INSERT", {}, ValueError()))
    assert not intake.transient(KeyError("id"))


def test_a_worker_runs_the_hub_consumers_only_when_a_broker_is_configured(
    make_settings: Any,
) -> None:
    from tillpay.kit.db import Database
    from tillpay.worker import Worker

    def worker(**overrides: Any) -> Worker:
        settings = make_settings(**overrides)
        return Worker(JobContext(settings=settings, database=Database.from_settings(settings)))

    with_broker = worker(broker_url=AMQP_URL)
    assert with_broker.consumers is not None
    assert {i.name for i in with_broker.consumers.intakes} >= {"webhooks", "email"}
    assert worker().consumers is None


async def test_with_a_broker_internal_events_still_reach_their_consumers_from_the_relay(
    hub_hooks: Hooks,
) -> None:
    # Internal types (the admin digest) never go to the hub, so no queue would bring them.
    database: Any = hub_hooks.client.app.state.database  # type: ignore[attr-defined]
    async with database.transaction() as session:
        session.add(
            OutboxEvent(
                id="evt_digest",
                type="admin.digest",
                subject_type="admin",
                subject_id="x",
                payload={},
            )
        )
    await hub_hooks.relay()
    made = {(d.event_id, d.consumer) for d in await deliveries(hub_hooks)}
    assert ("evt_digest", "email") in made
    assert ("evt_digest", hub_jobs.CONSUMER) not in made


async def test_events_published_before_any_consumer_ran_wait_in_their_queues(
    hub_hooks: Hooks, receiver: Receiver
) -> None:
    hooks = hub_hooks
    await hooks.endpoint(receiver.url, ["order.paid"])
    customer = await hooks.checkout.shop.customer()
    order, _ = await hooks.checkout.paid_order(customer)
    await hooks.relay()
    # Published to a fresh broker topology, before any worker consumed: the publisher
    # declared the queues itself, so RabbitMQ kept the messages for them.
    await hub_jobs.publish_due(hooks.context())

    async with consuming(hooks):

        async def webhook_delivery_made() -> bool:
            return any(d.consumer.startswith("webhook:") for d in await deliveries(hooks))

        await until(webhook_delivery_made)
        await hooks.deliver()

    bodies = [json.loads(r.body) for r in receiver.received]
    assert [b["data"]["object"]["id"] for b in bodies if b["type"] == "order.paid"] == [order["id"]]


async def test_a_changed_attempt_limit_keeps_consuming_the_existing_queues(
    hub_hooks: Hooks,
) -> None:
    async with consuming(hub_hooks):
        pass  # the queues exist now, created with TILLPAY_BROKER_MAX_ATTEMPTS=2
    app: Any = hub_hooks.client.app  # type: ignore[attr-defined]
    changed = app.state.settings.model_copy(update={"broker_max_attempts": 7})
    context: JobContext[Any] = JobContext(settings=changed, database=app.state.database)
    consumers = intake.Consumers(context, jobs.hub_consumers(context))
    task = asyncio.create_task(consumers.run())
    try:
        await asyncio.wait_for(consumers.consuming.wait(), timeout=15)
    finally:
        await consumers.stop()
        await asyncio.wait_for(task, timeout=15)
