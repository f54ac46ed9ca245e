"""Races on webhooks, refunds and payment creation: each money movement happens once.

On PostgreSQL the racers really overlap (checked through the connection pool); on SQLite
they are serialised by BEGIN IMMEDIATE and the same outcomes must hold. Every race is
time-boxed so a deadlock fails fast.
"""

from __future__ import annotations

import uuid
from contextlib import AsyncExitStack
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from tests.accounts.helpers import Account
from tests.concurrency.test_commerce_races import assert_raced, count, overlap, race
from tests.http.test_errors import assert_problem
from tests.payments.helpers import GOOD_CARD, Checkout
from tillpay.audit.models import AuditEvent
from tillpay.kit.db import Database, utcnow
from tillpay.ledger.models import LedgerTransaction
from tillpay.orders.models import OrderEvent
from tillpay.payments.models import Payment, WebhookEvent
from tillpay.payments.sync import janitor_pass
from tillpay.payments.webhooks import process_due_webhooks
from tillpay.sandbox import psp
from tillpay.sandbox.models import SandboxWebhook

pytestmark = pytest.mark.postgres


def database(checkout: Checkout) -> Database:
    return checkout.app.state.database


async def warm_pool(db: Database, connections: int) -> None:
    """Open PostgreSQL connections up front, so no racer is held back by a slow connect
    while the first one is already done (SQLite has nothing to race)."""
    if db.engine.dialect.name != "postgresql":
        return
    async with AsyncExitStack() as stack:
        for _ in range(connections):
            await stack.enter_async_context(db.engine.connect())


async def succeeded_transitions(db: Database, payment_id: str) -> int:
    async with db.session() as session:
        rows = await session.execute(
            select(AuditEvent.details).where(
                AuditEvent.action == "payment.status_changed", AuditEvent.target_id == payment_id
            )
        )
        return sum(details.get("to") == "succeeded" for details in rows.scalars())


async def assert_paid_once(db: Database, order_id: str, payment_id: str) -> None:
    """One transition to succeeded, one ledger posting, one ``paid`` order event."""
    assert await succeeded_transitions(db, payment_id) == 1
    postings = select(func.count()).where(
        LedgerTransaction.kind == "payment", LedgerTransaction.reference_id == payment_id
    )
    assert await count(db, postings) == 1
    paid = select(func.count()).where(
        OrderEvent.order_id == order_id, OrderEvent.to_status == "paid"
    )
    assert await count(db, paid) == 1


async def card_paid_at_sandbox(checkout: Checkout) -> tuple[dict[str, Any], dict[str, Any]]:
    """An order whose sandbox session succeeded; tillpay has not heard of it yet."""
    customer = await checkout.shop.customer()
    order = await checkout.shop.order(customer, price=2500)
    payment = (await checkout.pay(customer, order["id"])).json()
    assert (await checkout.submit_card(payment, GOOD_CARD)).status_code == 303
    return order, payment


async def test_one_webhook_delivered_ten_times_is_stored_and_applied_once(
    checkout: Checkout, backend: str
) -> None:
    db = database(checkout)
    order, payment = await card_paid_at_sandbox(checkout)
    async with db.session() as session:
        body = (await session.execute(select(SandboxWebhook.body))).scalar_one().encode()
    headers = {
        "content-type": "application/json",
        psp.SIGNATURE_HEADER: psp.signature_header(checkout.app.state.settings, body),
    }

    await warm_pool(db, 20)
    with overlap(db) as seen:
        deliveries = await race(
            *(
                checkout.client.post("/v1/webhooks/sandbox", content=body, headers=headers)
                for _ in range(10)
            )
        )

    assert [r.status_code for r in deliveries] == [200] * 10
    assert sum(not r.json()["duplicate"] for r in deliveries) == 1
    assert await count(db, select(func.count()).select_from(WebhookEvent)) == 1
    assert_raced(backend, seen, 10)

    await warm_pool(db, 20)
    with overlap(db) as seen:
        await race(*(process_due_webhooks(checkout.runtime) for _ in range(5)))

    await assert_paid_once(db, order["id"], payment["id"])
    async with db.session() as session:
        assert (await session.execute(select(WebhookEvent.status))).scalar_one() == "processed"
    assert_raced(backend, seen, 5)


async def refund(checkout: Checkout, admin: Account, payment_id: str, amount: int) -> Any:
    return await checkout.client.post(
        f"/v1/payments/{payment_id}/refunds",
        json={"amount": amount, "reason": "requested_by_customer"},
        headers={**admin.headers, "Idempotency-Key": str(uuid.uuid4())},
    )


def assert_over_refunds_refused(responses: list[httpx.Response], refused: int) -> None:
    assert (
        sorted(r.status_code for r in responses)
        == [201] * (len(responses) - refused) + [409] * refused
    )
    for response in responses:
        if response.status_code == 409:
            assert assert_problem(response, 409)["code"] == "refund_exceeds_captured"


async def test_parallel_refunds_never_exceed_the_captured_amount(
    checkout: Checkout, backend: str
) -> None:
    db = database(checkout)
    customer = await checkout.shop.customer()
    admin = await checkout.shop.accounts.admin()
    _, first = await checkout.paid_order(customer, price=100)
    _, second = await checkout.paid_order(customer, price=100)
    assert (first["status"], second["status"]) == ("succeeded", "succeeded")

    await warm_pool(db, 20)
    with overlap(db) as seen:
        halves = await race(*(refund(checkout, admin, first["id"], 60) for _ in range(2)))
    assert_over_refunds_refused(halves, 1)
    async with db.session() as session:
        stored = await session.get(Payment, first["id"])
        assert stored is not None
        assert (stored.amount_refund_reserved, stored.amount_refunded) == (60, 60)
    assert_raced(backend, seen, 2)

    await warm_pool(db, 20)
    with overlap(db) as seen:
        tenths = await race(*(refund(checkout, admin, second["id"], 10) for _ in range(11)))
    assert_over_refunds_refused(tenths, 1)
    async with db.session() as session:
        stored = await session.get(Payment, second["id"])
        assert stored is not None
        assert (stored.amount_refund_reserved, stored.amount_refunded) == (100, 100)
    assert_raced(backend, seen, 11)


async def test_parallel_payment_requests_with_one_key_make_one_payment(
    checkout: Checkout, backend: str
) -> None:
    db = database(checkout)
    customer = await checkout.shop.customer()
    order = await checkout.shop.order(customer)

    await warm_pool(db, 20)
    with overlap(db) as seen:
        responses = await race(*(checkout.pay(customer, order["id"], key="k1") for _ in range(10)))

    rows = (
        await checkout.client.get(f"/v1/orders/{order['id']}/payments", headers=customer.headers)
    ).json()
    assert len(rows) == 1
    created = [r for r in responses if r.status_code == 201]
    assert [r.json()["id"] for r in created] == [rows[0]["id"]] * len(created)
    assert sum("idempotent-replayed" not in r.headers for r in created) == 1
    for response in responses:
        if response.status_code != 201:
            assert assert_problem(response, 409)["code"] == "idempotency_in_progress"
    assert_raced(backend, seen, 10)


async def test_parallel_payment_requests_with_distinct_keys_share_the_open_payment(
    checkout: Checkout, backend: str
) -> None:
    db = database(checkout)
    customer = await checkout.shop.customer()
    order = await checkout.shop.order(customer)

    await warm_pool(db, 20)
    with overlap(db) as seen:
        responses = await race(*(checkout.pay(customer, order["id"]) for _ in range(10)))

    assert sorted(r.status_code for r in responses) == [200] * 9 + [201]
    assert len({r.json()["id"] for r in responses}) == 1
    payments_of_order = select(func.count()).where(Payment.order_id == order["id"])
    assert await count(db, payments_of_order) == 1
    assert_raced(backend, seen, 10)


async def test_janitor_racing_the_webhook_processor_applies_the_success_once(
    checkout: Checkout, backend: str
) -> None:
    db = database(checkout)
    order, payment = await card_paid_at_sandbox(checkout)
    assert await checkout.deliver_webhooks() == 1
    later = utcnow() + timedelta(days=1)  # every open attempt is due for a check

    await warm_pool(db, 20)
    with overlap(db) as seen:
        await race(
            *(process_due_webhooks(checkout.runtime) for _ in range(3)),
            *(janitor_pass(checkout.runtime, now=later) for _ in range(3)),
        )

    await assert_paid_once(db, order["id"], payment["id"])
    assert_raced(backend, seen, 6)
