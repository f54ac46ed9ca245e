"""The per-endpoint limit (TILLPAY_WEBHOOKS_ENDPOINT_CONCURRENCY) across delivery runs,
measured at the receiver: a slow endpoint delays no other, concurrent runs (each with
its own database pool, as separate processes) never exceed the limit at one endpoint,
a killed worker's slot frees itself once its lease lapses, and every delivery is still
delivered exactly once."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from tests.conftest import ClientFactory
from tests.webhooks.conftest import Hooks, webhook_settings
from tests.webhooks.receiver import Receiver
from tillpay.events.models import DeliveryStatus, EventDelivery, OutboxEvent
from tillpay.kit.db import Database, utcnow
from tillpay.kit.jobs import JobContext
from tillpay.kit.leases import JobLease
from tillpay.merchant_webhooks import delivery, service, slots

SLOW = 0.6


@pytest.fixture
async def client(
    make_client: ClientFactory, clean_db: None, receiver: Receiver, request: Any
) -> AsyncIterator[httpx.AsyncClient]:
    limit = getattr(request, "param", 2)
    async with make_client(**webhook_settings(receiver, webhooks_endpoint_concurrency=limit)) as c:
        yield c


@pytest.fixture
def hooks(client: httpx.AsyncClient, mail_dir: Path) -> Hooks:
    return Hooks(client, mail_dir)


async def _drain(context: JobContext[Any], *, limit: int) -> None:
    while await delivery.deliver_due(context, limit=limit):
        pass


async def _delivered_once(hooks: Hooks, receiver: Receiver) -> None:
    """Every delivery is delivered, and the receiver saw each event once per endpoint."""
    async with hooks.context().database.read_session() as session:
        rows = list(
            await session.execute(
                select(EventDelivery.event_id, EventDelivery.status).where(
                    EventDelivery.consumer.startswith(service.CONSUMER_PREFIX)
                )
            )
        )
        slots_left = await session.scalar(
            select(func.count())
            .select_from(JobLease)
            .where(JobLease.name.startswith(slots.SLOT_PREFIX))
        )
    assert rows
    assert {status for *_, status in rows} == {DeliveryStatus.DELIVERED}
    seen = [(r.path, r.headers["webhook-id"]) for r in receiver.received]
    assert len(seen) == len(set(seen)) == len(rows)
    assert slots_left == 0


async def test_a_slow_endpoint_does_not_delay_a_fast_ones_deliveries(
    hooks: Hooks, receiver: Receiver
) -> None:
    slow_url = receiver.url.replace("tillpay", "slow")
    await hooks.endpoint(slow_url, ["order.paid", "payment.succeeded"])
    customer = await hooks.checkout.shop.customer()
    for _ in range(3):
        await hooks.checkout.paid_order(customer)
    await hooks.relay()  # six deliveries to the slow endpoint, due first
    await hooks.endpoint(receiver.url.replace("tillpay", "fast"), ["order.paid"])
    await hooks.checkout.paid_order(customer)
    await hooks.relay()  # two more to the slow one, one to the fast one
    for _ in range(8):
        receiver.answer(200, b"ok", SLOW, path="/hooks/slow")

    started = time.monotonic()
    # A batch of four: without the limit the slow endpoint's backlog alone fills it.
    await _drain(hooks.context(), limit=4)

    [fast] = [r for r in receiver.received if r.path == "/hooks/fast"]
    assert fast.at - started < SLOW  # not behind even one slow answer
    assert receiver.most_in_flight["/hooks/slow"] == 2
    await _delivered_once(hooks, receiver)


async def test_concurrent_runs_never_exceed_the_limit_at_one_endpoint(
    hooks: Hooks, receiver: Receiver
) -> None:
    await hooks.endpoint(receiver.url, ["order.paid", "payment.succeeded"])
    customer = await hooks.checkout.shop.customer()
    for _ in range(5):
        await hooks.checkout.paid_order(customer)
    await hooks.relay()
    for _ in range(10):
        receiver.answer(200, b"ok", 0.3)
    settings = hooks.context().settings
    databases = [Database.from_settings(settings) for _ in range(3)]
    try:
        # Three runs at once, each with its own pool (as three worker processes), each
        # claiming up to three: without the limit three requests overlap at the endpoint.
        await asyncio.gather(
            *(_drain(JobContext(settings=settings, database=db), limit=3) for db in databases)
        )
    finally:
        for db in databases:
            await db.dispose()
    await hooks.deliver()  # whatever a run left when it found every slot taken

    assert receiver.most_in_flight["/hooks/tillpay"] == 2
    assert len(receiver.received) == 10
    await _delivered_once(hooks, receiver)


@pytest.mark.parametrize("client", [1], indirect=True)
async def test_a_killed_workers_slot_frees_itself_once_its_lease_lapses(
    hooks: Hooks, receiver: Receiver
) -> None:
    await hooks.endpoint(receiver.url, ["order.paid", "payment.succeeded"])
    customer = await hooks.checkout.shop.customer()
    await hooks.checkout.paid_order(customer)
    await hooks.relay()
    database = hooks.context().database
    now = utcnow()
    # A worker claims one delivery with the endpoint's only slot, and dies.
    batch = await slots.claim(
        database, holder="dead:1:0", per_endpoint=1, now=now, limit=10, lease=delivery.CLAIM_LEASE
    )
    [dead] = batch.claims

    await hooks.deliver(now + timedelta(seconds=30))  # the slot is still leased

    assert receiver.received == []
    async with database.read_session() as session:
        waiting = (
            await session.execute(
                select(EventDelivery).where(
                    EventDelivery.consumer == dead.item.consumer,
                    EventDelivery.id != dead.item.id,
                )
            )
        ).scalar_one()
    # The delivery that found no slot was not claimed: due as it was, no lease added.
    assert waiting.next_attempt_at is not None
    assert waiting.next_attempt_at <= now

    await hooks.deliver(now + delivery.CLAIM_LEASE + timedelta(seconds=1))

    assert len(receiver.received) == 2
    await _delivered_once(hooks, receiver)


@pytest.mark.parametrize("client", [4], indirect=True)
async def test_a_claim_takes_one_delivery_per_subject_at_a_time_oldest_first(
    hooks: Hooks, receiver: Receiver
) -> None:
    await hooks.endpoint(receiver.url, ["order.paid", "order.fulfilled"])
    customer = await hooks.checkout.shop.customer()
    order, _ = await hooks.checkout.paid_order(customer)
    admin = await hooks.admin()
    fulfilled = await hooks.client.post(
        f"/v1/admin/orders/{order['id']}/fulfil", headers=admin.headers
    )
    assert fulfilled.status_code == 200, fulfilled.text
    await hooks.relay()  # one fan-out: both deliveries due at the same instant

    batch = await slots.claim(
        hooks.context().database,
        holder="test:1:0",
        per_endpoint=4,
        now=utcnow(),
        limit=10,
        lease=delivery.CLAIM_LEASE,
    )

    assert len(batch.claims) == 1
    assert batch.more
    async with hooks.context().database.read_session() as session:
        first = await session.get(EventDelivery, batch.claims[0].item.id)
        assert first is not None

        event = await session.get(OutboxEvent, first.event_id)
        assert event is not None
        assert event.type == "order.paid"
