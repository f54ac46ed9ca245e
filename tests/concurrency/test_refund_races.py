"""Races between refunds tillpay makes and refunds it learns of from the provider (its
dashboard): each provider refund is booked exactly once, and never beyond the capture."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import select

from tests.concurrency.test_commerce_races import assert_raced, overlap, race
from tests.concurrency.test_payment_races import refund, warm_pool
from tests.payments.helpers import Checkout
from tests.payments.test_external_refunds import refund_at_sandbox, refunds_of
from tests.payments.test_payment_flows import fetch
from tests.payments.test_unapplied_payments import balances
from tillpay.payments.models import Payment, WebhookEvent
from tillpay.payments.webhooks import process_due_webhooks, process_webhook

pytestmark = pytest.mark.postgres


async def drain_webhooks(checkout: Checkout) -> None:
    """Process every pending event now (those told to retry later too), a bounded number
    of rounds; none may end dead."""
    for _ in range(5):
        async with checkout.app.state.database.session() as session:
            pending = (
                (
                    await session.execute(
                        select(WebhookEvent.id).where(WebhookEvent.status == "pending")
                    )
                )
                .scalars()
                .all()
            )
        if not pending:
            break
        for event_id in pending:
            assert await process_webhook(checkout.runtime, event_id) != "dead"
    async with checkout.app.state.database.session() as session:
        statuses = set((await session.execute(select(WebhookEvent.status))).scalars())
    assert statuses <= {"processed"}


async def test_a_dashboard_refund_racing_tillpays_own_refund_books_each_once(
    checkout: Checkout, backend: str
) -> None:
    db = checkout.app.state.database
    customer = await checkout.shop.customer()
    admin = await checkout.shop.accounts.admin()
    order, payment = await checkout.paid_order(customer, price=100)
    await refund_at_sandbox(checkout, payment["id"], 50)
    assert await checkout.deliver_webhooks() == 1

    await warm_pool(db, 20)
    with overlap(db) as seen:
        answers = await race(
            refund(checkout, admin, payment["id"], 50),
            *(process_due_webhooks(checkout.runtime) for _ in range(3)),
        )
    assert answers[0].status_code == 201, answers[0].text
    await drain_webhooks(checkout)
    await checkout.deliver_webhooks()  # the sandbox's event for tillpay's own refund
    await drain_webhooks(checkout)

    booked = await refunds_of(checkout, payment["id"])
    assert sorted((r.external, r.status, r.amount) for r in booked) == [
        (False, "succeeded", 50),
        (True, "succeeded", 50),
    ]
    async with db.session() as session:
        stored = await session.get(Payment, payment["id"])
        assert stored is not None
        assert (stored.amount_refund_reserved, stored.amount_refunded) == (100, 100)
    state = await fetch(checkout, customer, f"/v1/orders/{order['id']}")
    assert (state["status"], state["refunded_amount"]) == ("refunded", 100)
    assert {code: b for code, b in (await balances(checkout)).items() if b} == {}
    assert_raced(backend, seen, 4)


async def test_events_of_one_dashboard_refund_processed_in_parallel_book_it_once(
    checkout: Checkout, backend: str
) -> None:
    db = checkout.app.state.database
    customer = await checkout.shop.customer()
    order, payment = await checkout.paid_order(customer, price=100)
    await refund_at_sandbox(checkout, payment["id"], 100)
    assert await checkout.deliver_webhooks() == 1
    async with db.session() as session, session.begin():
        stored = (
            await session.execute(
                select(WebhookEvent).where(WebhookEvent.event_type == "refund.succeeded")
            )
        ).scalar_one()
        # The same refund announced by several events (refund.created, refund.updated, …).
        copies = [
            WebhookEvent(
                provider="sandbox",
                dedupe_key=f"{stored.dedupe_key}_{n}",
                event_type=stored.event_type,
                reference=stored.reference,
                payload=stored.payload,
            )
            for n in range(5)
        ]
        session.add_all(copies)
        await session.flush()
        event_ids = [stored.id, *(c.id for c in copies)]

    await warm_pool(db, 20)
    with overlap(db) as seen:
        await race(*(process_webhook(checkout.runtime, e) for e in event_ids))
    await drain_webhooks(checkout)

    [booked] = await refunds_of(checkout, payment["id"])
    assert (booked.external, booked.status, booked.amount) == (True, "succeeded", 100)
    state = await fetch(checkout, customer, f"/v1/orders/{order['id']}")
    assert (state["status"], state["refunded_amount"]) == ("refunded", 100)
    assert {code: b for code, b in (await balances(checkout)).items() if b} == {}
    assert_raced(backend, seen, 6)


async def pump_webhooks(checkout: Checkout, rounds: int = 20) -> None:
    """Deliver and process the sandbox's webhooks as they appear (bounded)."""
    for _ in range(rounds):
        await checkout.deliver_webhooks()
        await checkout.process_webhooks()
        await asyncio.sleep(0.02)


async def test_tillpays_refund_racing_its_own_webhook_is_one_refund(
    checkout: Checkout, backend: str
) -> None:
    db = checkout.app.state.database
    customer = await checkout.shop.customer()
    admin = await checkout.shop.accounts.admin()
    order, payment = await checkout.paid_order(customer, price=100)

    await warm_pool(db, 20)
    with overlap(db) as seen:
        answer, *_ = await race(
            refund(checkout, admin, payment["id"], 60),
            pump_webhooks(checkout),
            pump_webhooks(checkout),
        )
    assert answer.status_code == 201, answer.text
    await checkout.deliver_webhooks()
    await drain_webhooks(checkout)

    [booked] = await refunds_of(checkout, payment["id"])
    assert (booked.id, booked.external, booked.status) == (answer.json()["id"], False, "succeeded")
    async with db.session() as session:
        stored = await session.get(Payment, payment["id"])
        assert stored is not None
        assert (stored.amount_refund_reserved, stored.amount_refunded) == (60, 60)
    state = await fetch(checkout, customer, f"/v1/orders/{order['id']}")
    assert (state["status"], state["refunded_amount"]) == ("partially_refunded", 60)
    assert (await balances(checkout))["provider_clearing:sandbox:USD"] == 40
    assert_raced(backend, seen, 3)
