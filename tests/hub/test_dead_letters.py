"""The admin API of the hub's dead-letter queue (real RabbitMQ): admins see what tillpay's
consumers gave up on, and replay it once the cause is fixed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aio_pika
import pytest
from sqlalchemy import select

from tests.conftest import ClientFactory
from tests.hub.test_consumers import (
    consuming,
    deliveries,
    hub_hooks,
    own_queues,
    publish_raw,
    until,
)
from tests.webhooks.conftest import Hooks
from tillpay.audit.models import AuditEvent
from tillpay.events.models import OutboxEvent
from tillpay.hub import broker
from tillpay.kit.db import utcnow

__all__ = ["hub_hooks"]

pytestmark = pytest.mark.rabbitmq

LIST = "/v1/admin/event-hub/dead-letters"
REPLAY = "/v1/admin/event-hub/dead-letters/replay"


async def dead_lettered(hooks: Hooks, topology: broker.Topology, event_id: str) -> None:
    """Publish a message no outbox row matches and wait until every consumer gave up."""
    await publish_raw(
        topology,
        aio_pika.Message(
            b'{"id": "%s"}' % event_id.encode(), message_id=event_id, type="order.paid"
        ),
        "order.paid",
    )
    admin = await hooks.admin()

    async def all_dead() -> bool:
        page = await hooks.client.get(LIST, headers=admin.headers)
        return bool(page.json()["total"] >= len(own_queues(hooks, topology)))

    await until(all_dead)


async def test_admins_see_each_dead_letter_with_its_queue_and_reason(
    hub_hooks: Hooks, topology: broker.Topology
) -> None:
    async with consuming(hub_hooks):
        await dead_lettered(hub_hooks, topology, "evt_poison")
    admin = await hub_hooks.admin()

    page = await hub_hooks.client.get(LIST, headers=admin.headers)
    again = await hub_hooks.client.get(LIST, headers=admin.headers)

    assert page.status_code == 200, page.text
    body = page.json()
    assert body["total"] == len(own_queues(hub_hooks, topology))
    assert sorted(i["queue"] for i in body["items"]) == own_queues(hub_hooks, topology)
    assert {(i["message_id"], i["event_type"], i["reason"]) for i in body["items"]} == {
        ("evt_poison", "order.paid", "delivery_limit")
    }
    assert body["items"][0]["body_excerpt"] == '{"id": "evt_poison"}'
    assert body["items"][0]["dead_lettered_at"] is not None
    assert again.json()["total"] == body["total"]  # listing leaves them in place


async def test_a_replayed_dead_letter_is_taken_once_its_cause_is_fixed(
    hub_hooks: Hooks, topology: broker.Topology
) -> None:
    hooks = hub_hooks
    admin = await hooks.admin()
    async with consuming(hooks):
        await dead_lettered(hooks, topology, "evt_restored")
        # The cause is fixed: the row the message names exists now (restored, say).
        database: Any = hooks.client.app.state.database  # type: ignore[attr-defined]
        async with database.transaction() as session:
            session.add(
                OutboxEvent(
                    id="evt_restored",
                    type="user.password_changed",
                    subject_type="user",
                    subject_id=admin.user_id,
                    payload={},
                    processed_at=utcnow(),
                )
            )
        replay = await hooks.client.post(
            REPLAY, json={"message_ids": ["evt_restored"]}, headers=admin.headers
        )

        async def taken() -> bool:
            found = {(d.event_id, d.consumer) for d in await deliveries(hooks)}
            return {e for e, _ in found} == {"evt_restored"}

        await until(taken)
    page = await hooks.client.get(LIST, headers=admin.headers)

    assert replay.status_code == 200, replay.text
    assert replay.json()["replayed"] == ["evt_restored"] * len(own_queues(hooks, topology))
    assert page.json()["total"] == 0
    async with database.session() as session:
        audited = (
            await session.execute(
                select(AuditEvent).where(AuditEvent.action == "event_hub.dead_letters_replayed")
            )
        ).scalar_one()
    assert audited.actor_id == admin.user_id


async def test_a_replay_sends_back_only_the_letters_named(
    hub_hooks: Hooks, topology: broker.Topology
) -> None:
    admin = await hub_hooks.admin()
    async with consuming(hub_hooks):
        await dead_lettered(hub_hooks, topology, "evt_first")
    replay = await hub_hooks.client.post(
        REPLAY, json={"message_ids": ["evt_other"]}, headers=admin.headers
    )
    page = await hub_hooks.client.get(LIST, headers=admin.headers)
    assert replay.json() == {"replayed": []}
    assert page.json()["total"] == len(own_queues(hub_hooks, topology))


async def test_only_admins_reach_the_dead_letters(hub_hooks: Hooks) -> None:
    customer = await hub_hooks.accounts.user()
    assert (await hub_hooks.client.get(LIST, headers=customer.headers)).status_code == 403
    assert (
        await hub_hooks.client.post(REPLAY, json={}, headers=customer.headers)
    ).status_code == 403
    assert (await hub_hooks.client.get(LIST)).status_code == 401


async def test_without_a_broker_the_dead_letters_are_a_conflict(hooks: Hooks) -> None:
    admin = await hooks.admin()
    page = await hooks.client.get(LIST, headers=admin.headers)
    assert page.status_code == 409
    assert page.json()["code"] == "no_broker"


async def test_an_unreachable_broker_is_a_503_without_internals(
    make_client: ClientFactory, clean_db: None, mail_dir: Path
) -> None:
    async with make_client(broker_url="amqp://guest:guest@127.0.0.1:1/") as client:
        hooks = Hooks(client, mail_dir)
        admin = await hooks.admin()
        page = await client.get(LIST, headers=admin.headers)
    assert page.status_code == 503
    assert page.headers["content-type"].startswith("application/problem+json")
    assert page.json()["code"] == "broker_unavailable"
    assert "guest" not in page.text
