"""Refunds: who may refund, how much, how often, and what the ledger says afterwards."""

from __future__ import annotations

import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import update

from tests.accounts.helpers import PASSWORD, Account
from tests.conftest import ClientFactory
from tests.http.test_errors import assert_problem
from tests.payments.helpers import GOOD_CARD, Checkout
from tests.payments.test_payment_flows import checkout_with, fetch, started
from tillpay.accounts.models import AuthSession
from tillpay.kit.db import utcnow
from tillpay.ledger import service as ledger


async def refund(
    checkout: Checkout, who: Account, payment_id: str, *, key: str | None = None, **body: Any
) -> httpx.Response:
    return await checkout.client.post(
        f"/v1/payments/{payment_id}/refunds",
        json={"reason": "requested_by_customer", **body},
        headers={**who.headers, "Idempotency-Key": key or str(uuid.uuid4())},
    )


async def paid_order_of(
    checkout: Checkout, customer: Account, *lines: tuple[Account, int]
) -> dict[str, Any]:
    """Pay, through the sandbox, one order holding one item per (vendor, price)."""
    for vendor, price in lines:
        product = await checkout.shop.product(vendor, price=price)
        added = await checkout.shop.add_to_cart(customer, product["variants"][0]["id"])
        assert added.status_code == 200, added.text
    order = (await checkout.shop.checkout(customer)).json()
    payment = (await checkout.pay(customer, order["id"])).json()
    await checkout.submit_card(payment, GOOD_CARD)
    await checkout.deliver_webhooks()
    await checkout.process_webhooks()
    paid = await fetch(checkout, customer, f"/v1/payments/{payment['id']}")
    assert paid["status"] == "succeeded"
    return paid


async def test_partial_refunds_add_up(checkout: Checkout) -> None:
    customer = await checkout.shop.customer()
    order, payment = await checkout.paid_order(customer, price=10000)
    admin = await checkout.shop.accounts.admin()
    for amount in (1000, 2000, 3000):
        response = await refund(checkout, admin, payment["id"], amount=amount)
        assert response.status_code == 201, response.text
    state = await fetch(checkout, customer, f"/v1/payments/{payment['id']}")
    assert (state["amount_refunded"], state["amount_refund_reserved"]) == (6000, 6000)
    refunds = await fetch(checkout, customer, f"/v1/payments/{payment['id']}/refunds")
    assert [r["amount"] for r in refunds] == [1000, 2000, 3000]
    order_state = await fetch(checkout, customer, f"/v1/orders/{order['id']}")
    assert order_state["status"] == "partially_refunded"


async def test_refunding_more_than_is_left_is_refused_and_reserves_nothing(
    checkout: Checkout,
) -> None:
    customer = await checkout.shop.customer()
    _, payment = await checkout.paid_order(customer, price=5000)
    admin = await checkout.shop.accounts.admin()
    assert (await refund(checkout, admin, payment["id"], amount=3000)).status_code == 201
    over = await refund(checkout, admin, payment["id"], amount=2001)
    body = assert_problem(over, 409)
    assert (body["code"], body["refundable"]) == ("refund_exceeds_captured", 2000)
    state = await fetch(checkout, customer, f"/v1/payments/{payment['id']}")
    assert (state["amount_refunded"], state["amount_refund_reserved"]) == (3000, 3000)
    assert len(await fetch(checkout, customer, f"/v1/payments/{payment['id']}/refunds")) == 1


async def test_an_unpaid_payment_cannot_be_refunded(checkout: Checkout) -> None:
    _, payment = await started(checkout)
    admin = await checkout.shop.accounts.admin()
    response = await refund(checkout, admin, payment["id"], amount=100)
    assert assert_problem(response, 409)["code"] == "payment_not_refundable"


async def test_customers_cannot_refund(checkout: Checkout) -> None:
    payer = await checkout.shop.customer()
    _, payment = await checkout.paid_order(payer)
    stranger = await checkout.shop.customer()
    own = await refund(checkout, payer, payment["id"], amount=100)
    assert_problem(own, 403)
    other = await refund(checkout, stranger, payment["id"], amount=100)
    assert_problem(other, 404)
    for response in (own, other):
        assert payment["id"] not in response.text
        assert "amount" not in response.json()
    assert await fetch(checkout, payer, f"/v1/payments/{payment['id']}/refunds") == []


async def test_a_vendor_cannot_refund_by_default(checkout: Checkout) -> None:
    vendor = await checkout.shop.vendor()
    payment = await paid_order_of(checkout, await checkout.shop.customer(), (vendor, 2000))
    response = await refund(checkout, vendor, payment["id"], amount=100)
    assert_problem(response, 403)


async def test_when_enabled_a_vendor_refunds_only_orders_entirely_theirs(
    make_client: ClientFactory, clean_db: None, mail_dir: Path
) -> None:
    async with checkout_with(make_client, mail_dir, vendor_refunds_enabled=True) as checkout:
        mine, theirs = await checkout.shop.vendor(), await checkout.shop.vendor()
        customer = await checkout.shop.customer()
        shared = await paid_order_of(checkout, customer, (mine, 2000), (theirs, 1000))
        assert_problem(await refund(checkout, mine, shared["id"], amount=100), 403)
        own = await paid_order_of(checkout, customer, (mine, 2000))
        response = await refund(checkout, mine, own["id"], amount=100)
        assert response.status_code == 201, response.text


async def test_refunding_needs_a_recent_authentication(checkout: Checkout) -> None:
    customer = await checkout.shop.customer()
    _, payment = await checkout.paid_order(customer)
    admin = await checkout.shop.accounts.admin()
    async with checkout.app.state.database.session() as session, session.begin():
        await session.execute(
            update(AuthSession)
            .where(AuthSession.id == admin.session_id)
            .values(auth_time=utcnow() - timedelta(hours=1))
        )
    stale = await refund(checkout, admin, payment["id"], amount=100)
    assert assert_problem(stale, 401)["code"] == "step_up_required"
    assert await fetch(checkout, customer, f"/v1/payments/{payment['id']}/refunds") == []
    reauth = await checkout.client.post(
        "/v1/auth/reauthenticate", json={"password": PASSWORD}, headers=admin.headers
    )
    assert reauth.status_code == 204, reauth.text
    assert (await refund(checkout, admin, payment["id"], amount=100)).status_code == 201


async def test_the_same_key_replays_the_refund(checkout: Checkout) -> None:
    customer = await checkout.shop.customer()
    _, payment = await checkout.paid_order(customer)
    admin = await checkout.shop.accounts.admin()
    first = await refund(checkout, admin, payment["id"], key="refund-1", amount=500)
    again = await refund(checkout, admin, payment["id"], key="refund-1", amount=500)
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.json()["id"] == first.json()["id"]
    assert again.headers["Idempotent-Replayed"] == "true"
    refunds = await fetch(checkout, customer, f"/v1/payments/{payment['id']}/refunds")
    assert [r["id"] for r in refunds] == [first.json()["id"]]


@pytest.mark.parametrize("amount", [0, -1, 1.5, "10", True])
async def test_a_refund_amount_must_be_a_positive_integer(
    checkout: Checkout, amount: object
) -> None:
    customer = await checkout.shop.customer()
    _, payment = await checkout.paid_order(customer)
    admin = await checkout.shop.accounts.admin()
    response = await refund(checkout, admin, payment["id"], amount=amount)
    assert assert_problem(response, 422)["code"] == "validation_error"
    state = await fetch(checkout, customer, f"/v1/payments/{payment['id']}")
    assert state["amount_refund_reserved"] == 0


async def test_a_refund_takes_back_the_vendor_payable_and_the_clearing_balance(
    checkout: Checkout,
) -> None:
    vendor = await checkout.shop.vendor()
    payment = await paid_order_of(checkout, await checkout.shop.customer(), (vendor, 10000))
    admin = await checkout.shop.accounts.admin()
    assert (await refund(checkout, admin, payment["id"], amount=2500)).status_code == 201
    async with checkout.app.state.database.session() as session:
        balances = {b.code: b.balance for b in await ledger.balances(session)}
        assert await ledger.unbalanced_transactions(session) == []
    # Debits minus credits: the platform owes the vendor 7500 and holds 7500 at the PSP.
    assert balances[f"vendor_payable:{vendor.user_id}:USD"] == -7500
    assert balances["provider_clearing:sandbox:USD"] == 7500


async def test_a_vendor_sees_only_their_own_payable(checkout: Checkout) -> None:
    first, second = await checkout.shop.vendor(), await checkout.shop.vendor()
    await paid_order_of(checkout, await checkout.shop.customer(), (first, 3000), (second, 1000))
    for vendor, owed in ((first, -3000), (second, -1000)):
        balance = await fetch(checkout, vendor, "/v1/vendor/balance")
        assert [(b["owner_id"], b["currency"], b["balance"]) for b in balance] == [
            (vendor.user_id, "USD", owed)
        ]


async def test_a_customer_cannot_read_another_customers_payment_or_refunds(
    checkout: Checkout,
) -> None:
    owner = await checkout.shop.customer()
    _, payment = await checkout.paid_order(owner)
    admin = await checkout.shop.accounts.admin()
    assert (await refund(checkout, admin, payment["id"], amount=100)).status_code == 201
    intruder = await checkout.shop.customer()
    for path in (f"/v1/payments/{payment['id']}", f"/v1/payments/{payment['id']}/refunds"):
        response = await checkout.client.get(path, headers=intruder.headers)
        assert_problem(response, 404)
        assert payment["id"] not in response.text


async def test_the_order_keeps_count_of_what_was_refunded(checkout: Checkout) -> None:
    customer = await checkout.shop.customer()
    order, payment = await checkout.paid_order(customer, price=10000)
    admin = await checkout.shop.accounts.admin()
    for amount in (1000, 1900):
        assert (await refund(checkout, admin, payment["id"], amount=amount)).status_code == 201
    state = await fetch(checkout, customer, f"/v1/orders/{order['id']}")
    assert (state["status"], state["refunded_amount"]) == ("partially_refunded", 2900)
    assert (await refund(checkout, admin, payment["id"])).status_code == 201
    state = await fetch(checkout, customer, f"/v1/orders/{order['id']}")
    assert (state["status"], state["refunded_amount"]) == ("refunded", 10000)
