"""End to end with the sandbox: checkout → payment → hosted page → signed webhook → paid."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError

from tests.payments.helpers import DECLINED_CARD, GOOD_CARD, Checkout
from tillpay.events.models import OutboxEvent
from tillpay.ledger import service as ledger
from tillpay.sandbox.models import SandboxSession, SessionStatus


async def test_card_payment_marks_the_order_paid_via_the_webhook(checkout: Checkout) -> None:
    customer = await checkout.shop.customer()
    order = await checkout.shop.order(customer, price=2500, stock=3)
    created = await checkout.pay(customer, order["id"])
    assert created.status_code == 201, created.text
    payment = created.json()
    assert payment["status"] == "requires_action"
    assert payment["next_action"]["type"] == "redirect"
    submitted = await checkout.submit_card(payment, GOOD_CARD)
    assert submitted.status_code == 303
    assert submitted.headers["location"].endswith(f"/v1/payments/{payment['id']}/return")
    assert await checkout.deliver_webhooks() == 1
    assert await checkout.process_webhooks() == 1
    paid = (await checkout.client.get(f"/v1/orders/{order['id']}", headers=customer.headers)).json()
    assert paid["status"] == "paid"
    state = (
        await checkout.client.get(f"/v1/payments/{payment['id']}", headers=customer.headers)
    ).json()
    assert state["status"] == "succeeded"
    assert state["amount_captured"] == 2500
    async with checkout.app.state.database.session() as session:
        assert await ledger.unbalanced_transactions(session) == []
        types = set((await session.execute(select(OutboxEvent.type))).scalars())
        assert {"payment.succeeded", "order.paid"} <= types
        count = (await session.execute(select(func.count()).select_from(OutboxEvent))).scalar()
        assert count is not None
        assert count >= 2


async def test_declined_card_fails_the_payment_and_leaves_the_order_payable(
    checkout: Checkout,
) -> None:
    customer = await checkout.shop.customer()
    order = await checkout.shop.order(customer)
    payment = (await checkout.pay(customer, order["id"])).json()
    await checkout.submit_card(payment, DECLINED_CARD)
    await checkout.deliver_webhooks()
    await checkout.process_webhooks()
    state = (
        await checkout.client.get(f"/v1/payments/{payment['id']}", headers=customer.headers)
    ).json()
    assert state["status"] == "failed"
    assert state["attempts"][0]["error_code"] == "card_declined"
    again = await checkout.pay(customer, order["id"])
    assert again.status_code == 201
    assert again.json()["id"] != payment["id"]


async def test_admin_refunds_part_then_the_rest(checkout: Checkout) -> None:
    customer = await checkout.shop.customer()
    order, payment = await checkout.paid_order(customer, price=10000, stock=2)
    assert payment["status"] == "succeeded"
    admin = await checkout.shop.accounts.admin()
    headers = {**admin.headers, "Idempotency-Key": "refund-1"}
    partial = await checkout.client.post(
        f"/v1/payments/{payment['id']}/refunds",
        json={"amount": 4000, "reason": "requested_by_customer"},
        headers=headers,
    )
    assert partial.status_code == 201, partial.text
    assert partial.json()["status"] == "succeeded"
    state = (
        await checkout.client.get(f"/v1/orders/{order['id']}", headers=customer.headers)
    ).json()
    assert state["status"] == "partially_refunded"
    rest = await checkout.client.post(
        f"/v1/payments/{payment['id']}/refunds",
        json={"reason": "requested_by_customer"},
        headers={**admin.headers, "Idempotency-Key": "refund-2"},
    )
    assert rest.status_code == 201, rest.text
    assert rest.json()["amount"] == 6000
    state = (
        await checkout.client.get(f"/v1/orders/{order['id']}", headers=customer.headers)
    ).json()
    assert state["status"] == "refunded"
    async with checkout.app.state.database.session() as session:
        assert await ledger.unbalanced_transactions(session) == []


async def test_the_database_refuses_a_sandbox_status_outside_the_enums(checkout: Checkout) -> None:
    customer = await checkout.shop.customer()
    order = await checkout.shop.order(customer)
    await checkout.pay(customer, order["id"])
    database = checkout.app.state.database
    async with database.session() as session:
        row = (await session.execute(select(SandboxSession))).scalar_one()
        assert row.status is SessionStatus.OPEN
    # Raw SQL: the ORM would refuse these values before the database saw them.
    refused = [
        text("UPDATE sandbox_sessions SET status = 'settled'"),
        text(
            "INSERT INTO sandbox_refunds (id, session_id, idempotency_key, amount, status,"
            " created_at) VALUES ('sbr_x', :session_id, 'k', 1, 'pending', :now)"
        ).bindparams(session_id=row.id, now=row.created_at),
    ]
    for statement in refused:
        async with database.session() as session:
            with pytest.raises(IntegrityError):
                await session.execute(statement)
