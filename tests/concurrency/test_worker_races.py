"""Several worker processes at once: the webhook processor and the sandbox's deliveries
split the due rows between them, so each event is handled by one processor and applied
once, each sandbox webhook is delivered once, each due attempt is re-read by one janitor,
and a relay does not wait for the outbox rows another relay holds.

Each racer here stands for one worker process (its own runs of the job bodies); on
PostgreSQL they really overlap, on SQLite they are serialised and the same must hold.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, update

from tests.concurrency.test_commerce_races import count, race
from tests.concurrency.test_payment_races import assert_paid_once, card_paid_at_sandbox, database
from tests.payments.helpers import Checkout
from tillpay.events.dispatch import fan_out
from tillpay.events.models import OutboxEvent
from tillpay.events.service import emit
from tillpay.kit.db import utcnow
from tillpay.payments.models import WebhookEvent
from tillpay.payments.sync import janitor_pass
from tillpay.payments.webhooks import process_due_webhooks
from tillpay.sandbox import jobs as sandbox_jobs
from tillpay.sandbox.models import SandboxWebhook

pytestmark = pytest.mark.postgres

PAYMENTS = 8


@pytest.fixture
def pool_size() -> int:
    # Two processors at full width, each event holding two connections (the processor's
    # and the sandbox's answering the re-read).
    return 40


async def assert_each_reread_and_applied_once(
    checkout: Checkout, handled: list[int], paid: list[tuple[dict[str, Any], dict[str, Any]]]
) -> None:
    """Every payment handled by exactly one racer: re-read at the provider once, paid once."""
    assert sum(handled) == PAYMENTS
    rereads = requests_to(checkout, "/sessions/by-reference/")
    assert len(rereads) == PAYMENTS
    assert set(rereads.values()) == {1}
    for order, payment in paid:
        await assert_paid_once(database(checkout), order["id"], payment["id"])


def requests_to(checkout: Checkout, marker: str) -> Counter[str]:
    """The provider requests (per URL path) whose path contains ``marker``."""
    routing = checkout.app.state.provider_transport
    return Counter(r.url.path for r in routing.requests if marker in r.url.path)


async def test_two_processors_at_once_reread_and_apply_each_event_once(
    checkout: Checkout,
) -> None:
    paid = [await card_paid_at_sandbox(checkout) for _ in range(PAYMENTS)]
    assert await checkout.deliver_webhooks() == PAYMENTS
    checkout.app.state.provider_transport.requests.clear()

    handled = await race(
        process_due_webhooks(checkout.runtime, limit=2),
        process_due_webhooks(checkout.runtime, limit=2),
    )

    await assert_each_reread_and_applied_once(checkout, handled, paid)


async def test_two_delivery_runs_at_once_post_each_sandbox_webhook_once(
    checkout: Checkout,
) -> None:
    db = database(checkout)
    for _ in range(PAYMENTS):
        await card_paid_at_sandbox(checkout)
    checkout.app.state.provider_transport.requests.clear()

    delivered = await race(checkout.deliver_webhooks(), checkout.deliver_webhooks())

    assert sum(delivered) == PAYMENTS
    posts = [
        r
        for r in checkout.app.state.provider_transport.requests
        if r.url.path == "/v1/webhooks/sandbox"
    ]
    assert len(posts) == PAYMENTS
    undelivered = select(func.count()).where(SandboxWebhook.delivered_at.is_(None))
    assert await count(db, undelivered) == 0
    assert await count(db, select(func.count()).select_from(WebhookEvent)) == PAYMENTS


async def test_a_sandbox_webhook_claimed_by_a_delivery_run_is_left_to_it(
    checkout: Checkout,
) -> None:
    """A claim is a lease: while it runs (here: as if that worker died mid-delivery), other
    runs do not take the webhook; once the lease lapses it is delivered."""

    db = database(checkout)
    await card_paid_at_sandbox(checkout)
    claimed = await sandbox_jobs.claim_due(db, limit=1)
    assert len(claimed) == 1

    assert await checkout.deliver_webhooks() == 0

    async with db.session() as session, session.begin():
        await session.execute(update(SandboxWebhook).values(deliver_at=utcnow()))
    assert await checkout.deliver_webhooks() == 1


async def test_two_janitor_passes_at_once_reread_each_due_attempt_once(
    checkout: Checkout,
) -> None:
    paid = [await card_paid_at_sandbox(checkout) for _ in range(PAYMENTS)]
    checkout.app.state.provider_transport.requests.clear()
    later = utcnow() + timedelta(days=1)  # every open attempt is due for a check

    handled = await race(
        janitor_pass(checkout.runtime, now=later, limit=2),
        janitor_pass(checkout.runtime, now=later, limit=2),
    )

    await assert_each_reread_and_applied_once(checkout, handled, paid)


async def test_a_relay_skips_the_outbox_rows_another_relay_holds(
    checkout: Checkout, backend: str
) -> None:
    if backend != "postgres":
        pytest.skip("SQLite runs one writer at a time: there is no other relay to skip")
    db = database(checkout)
    async with db.session() as session, session.begin():
        for n in range(4):
            await emit(session, "test.event", subject_type="test", subject_id=f"s{n}", data={})

    async with db.session() as first, first.begin():
        assert await fan_out(first, [], limit=1) == (1, 0)  # holds its row until it commits
        async with db.session() as second, second.begin():
            acknowledged = await asyncio.wait_for(fan_out(second, [], limit=10), timeout=10)

    assert acknowledged == (3, 0)
    pending = select(func.count()).where(OutboxEvent.processed_at.is_(None))
    assert await count(db, pending) == 0
