"""Money captured for an order that can no longer take it (cancelled, expired, or already
paid by another payment): held in ``unapplied_payments``, flagged, refundable, and
refunded back out of exactly the accounts it went into."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, update

from tests.accounts.helpers import Account
from tests.payments.helpers import GOOD_CARD, Checkout
from tests.payments.test_payment_flows import ALLOWED_RETURN, fetch
from tests.payments.test_refunds import refund
from tillpay.audit.models import AuditEvent
from tillpay.events.models import OutboxEvent
from tillpay.ledger import service as ledger
from tillpay.payments.models import Payment, PaymentAttempt, PaymentStatus, WebhookEvent


async def balances(checkout: Checkout) -> dict[str, int]:
    """Every ledger account's balance, after checking each transaction balances."""
    async with checkout.app.state.database.session() as session:
        assert await ledger.unbalanced_transactions(session) == []
        return {b.code: b.balance for b in await ledger.balances(session)}


async def order_of(checkout: Checkout, customer: Account, *lines: tuple[Account, int]) -> Any:
    for vendor, price in lines:
        product = await checkout.shop.product(vendor, price=price)
        added = await checkout.shop.add_to_cart(customer, product["variants"][0]["id"])
        assert added.status_code == 200, added.text
    created = await checkout.shop.checkout(customer)
    assert created.status_code == 201, created.text
    return created.json()


async def captured_at_sandbox(checkout: Checkout, customer: Account, order_id: str) -> Any:
    """A payment the card paid at the sandbox; tillpay has not heard the outcome yet."""
    created = await checkout.pay(customer, order_id, return_url=ALLOWED_RETURN)
    assert created.status_code == 201, created.text
    assert (await checkout.submit_card(created.json(), GOOD_CARD)).status_code == 303
    return created.json()


async def give_up_on(checkout: Checkout, payment_id: str) -> None:
    """What the janitor concludes about a create that seemed never to reach the provider."""
    async with checkout.app.state.database.session() as session, session.begin():
        await session.execute(
            update(PaymentAttempt)
            .where(PaymentAttempt.payment_id == payment_id)
            .values(status=PaymentStatus.FAILED, error_code="not_created")
        )
        await session.execute(
            update(Payment).where(Payment.id == payment_id).values(status=PaymentStatus.FAILED)
        )


async def test_a_late_success_on_an_order_paid_by_another_payment_is_held_unapplied(
    checkout: Checkout,
) -> None:
    customer = await checkout.shop.customer()
    order = await order_of(checkout, customer, (await checkout.shop.vendor(), 100))
    first = await captured_at_sandbox(checkout, customer, order["id"])
    await give_up_on(checkout, first["id"])
    second = await captured_at_sandbox(checkout, customer, order["id"])
    returned = await checkout.client.get(f"/v1/payments/{second['id']}/return")
    assert returned.status_code == 303
    assert (await fetch(checkout, customer, f"/v1/orders/{order['id']}"))["status"] == "paid"

    # The first payment's webhook lands: the provider holds 200 for a 100 order.
    assert await checkout.deliver_webhooks() == 2
    assert await checkout.process_webhooks() == 2
    async with checkout.app.state.database.session() as session:
        events = (await session.execute(select(WebhookEvent.status))).scalars().all()
        assert sorted(events) == ["processed", "processed"]
    late = await fetch(checkout, customer, f"/v1/payments/{first['id']}")
    assert (late["status"], late["amount_captured"], late["applied"]) == ("succeeded", 100, False)
    assert late["needs_review"] is True
    paying = await fetch(checkout, customer, f"/v1/payments/{second['id']}")
    assert (paying["status"], paying["applied"]) == ("succeeded", True)
    assert (await fetch(checkout, customer, f"/v1/orders/{order['id']}"))["status"] == "paid"
    assert (await balances(checkout))["unapplied_payments:USD"] == -100
    async with checkout.app.state.database.session() as session:
        stored = await session.get(Payment, first["id"])
        assert stored is not None
        assert stored.review_reason == "order_already_paid"
        flagged = (
            await session.execute(
                select(AuditEvent.details).where(
                    AuditEvent.action == "payment.review_flagged",
                    AuditEvent.target_id == first["id"],
                )
            )
        ).scalars()
        assert "order_already_paid" in [details["reason"] for details in flagged]
        outbox = (
            await session.execute(
                select(OutboxEvent.type).where(OutboxEvent.subject_id == first["id"])
            )
        ).scalars()
        assert "payment.needs_review" in list(outbox)

    # It is refundable, and refunding it leaves the order (paid by the other payment) alone.
    admin = await checkout.shop.accounts.admin()
    refunded = await refund(checkout, admin, first["id"])
    assert refunded.status_code == 201, refunded.text
    after = await balances(checkout)
    assert after["unapplied_payments:USD"] == 0
    assert after["provider_clearing:sandbox:USD"] == 100
    state = await fetch(checkout, customer, f"/v1/orders/{order['id']}")
    assert (state["status"], state["refunded_amount"]) == ("paid", 0)


async def test_two_late_successes_on_a_cancelled_order_are_both_held(
    checkout: Checkout,
) -> None:
    customer = await checkout.shop.customer()
    order = await order_of(checkout, customer, (await checkout.shop.vendor(), 100))
    first = await captured_at_sandbox(checkout, customer, order["id"])
    await give_up_on(checkout, first["id"])
    second = await captured_at_sandbox(checkout, customer, order["id"])
    cancelled = await checkout.client.post(
        f"/v1/orders/{order['id']}/cancel", headers=customer.headers
    )
    assert cancelled.status_code == 200, cancelled.text
    assert await checkout.deliver_webhooks() == 2
    assert await checkout.process_webhooks() == 2
    for payment in (first, second):
        state = await fetch(checkout, customer, f"/v1/payments/{payment['id']}")
        assert (state["status"], state["applied"], state["needs_review"]) == (
            "succeeded",
            False,
            True,
        )
    assert (await balances(checkout))["unapplied_payments:USD"] == -200


async def test_refunding_a_capture_for_a_cancelled_order_takes_it_back_from_unapplied(
    checkout: Checkout,
) -> None:
    customer = await checkout.shop.customer()
    vendors = [await checkout.shop.vendor(), await checkout.shop.vendor()]
    order = await order_of(checkout, customer, (vendors[0], 33), (vendors[1], 67))
    payment = await captured_at_sandbox(checkout, customer, order["id"])
    cancelled = await checkout.client.post(
        f"/v1/orders/{order['id']}/cancel", headers=customer.headers
    )
    assert cancelled.status_code == 200, cancelled.text
    assert await checkout.deliver_webhooks() == 1
    assert await checkout.process_webhooks() == 1
    state = await fetch(checkout, customer, f"/v1/payments/{payment['id']}")
    assert (state["status"], state["applied"], state["needs_review"]) == (
        "succeeded",
        False,
        True,
    )
    assert (await balances(checkout))["unapplied_payments:USD"] == -100

    admin = await checkout.shop.accounts.admin()
    for amount in (1, None):
        response = await refund(checkout, admin, payment["id"], amount=amount)
        assert response.status_code == 201, response.text
    after = await balances(checkout)
    assert {code: balance for code, balance in after.items() if balance} == {}
    assert not any(code.startswith("vendor_payable") for code in after)
    state = await fetch(checkout, customer, f"/v1/orders/{order['id']}")
    assert (state["status"], state["refunded_amount"]) == ("cancelled", 0)
