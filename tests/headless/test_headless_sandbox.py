"""Headless payments end to end with the sandbox provider: create, pay, webhook, refund,
idempotency, references, ownership, scopes, bounds, ledger and outbox."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select

from tests.headless.helpers import ShopBackend, body
from tests.http.test_errors import assert_problem
from tests.payments.helpers import GOOD_CARD, Checkout
from tillpay.events.models import OutboxEvent
from tillpay.ledger import service as ledger
from tillpay.orders.models import Order


async def _paid(checkout: Checkout, shop: ShopBackend, **over: Any) -> dict[str, Any]:
    created = await shop.create(body(**over))
    assert created.status_code == 201, created.text
    payment = created.json()
    await checkout.submit_card(payment, GOOD_CARD)
    assert await checkout.deliver_webhooks() == 1
    assert await checkout.process_webhooks() == 1
    state = (await shop.get(payment["id"])).json()
    assert state["status"] == "succeeded", state
    return state


async def _orders(checkout: Checkout) -> int:
    async with checkout.app.state.database.session() as session:
        count = (await session.execute(select(func.count()).select_from(Order))).scalar()
    assert count is not None
    return count


async def test_create_pay_webhook_refund(checkout: Checkout, accounts: Any) -> None:
    admin = await accounts.admin()
    shop = await ShopBackend.make(checkout.client, admin)
    created = await shop.create(body("order-1001", amount=2500))
    assert created.status_code == 201, created.text
    payment = created.json()
    assert payment["kind"] == "headless"
    assert (payment["reference"], payment["merchant"]) == ("order-1001", "acme")
    assert payment["status"] == "requires_action"
    assert payment["next_action"]["type"] == "redirect"
    assert payment["customer"] == {"email": "ada@example.com", "external_id": "cus_1"}
    assert payment["metadata"] == {"cart_id": "c_1"}

    await checkout.submit_card(payment, GOOD_CARD)
    assert await checkout.deliver_webhooks() == 1
    assert await checkout.process_webhooks() == 1
    paid = (await shop.get(payment["id"])).json()
    assert (paid["status"], paid["amount_captured"], paid["applied"]) == ("succeeded", 2500, True)

    refund = await shop.refund(payment["id"], amount=1000)
    assert refund.status_code == 201, refund.text
    assert refund.json()["status"] == "succeeded"
    rest = await shop.refund(payment["id"])
    assert rest.status_code == 201, rest.text

    async with checkout.app.state.database.session() as session:
        assert await ledger.unbalanced_transactions(session) == []
        capture = await ledger.posted(session, kind="payment", reference_ids=[payment["id"]])
        assert {(line.account, line.amount) for line in capture} == {
            ("provider_clearing:sandbox:USD", 2500),
            ("merchant_payable:acme:USD", -2500),
        }
        refunds = await ledger.posted(
            session, kind="refund", reference_ids=[refund.json()["id"], rest.json()["id"]]
        )
        net: dict[str, int] = {}
        for line in refunds:
            net[line.account] = net.get(line.account, 0) + line.amount
        # The refunds mirror the capture exactly: every account it touched back to zero.
        assert net == {"provider_clearing:sandbox:USD": -2500, "merchant_payable:acme:USD": 2500}
        events = list((await session.execute(select(OutboxEvent))).scalars())
    payment_events = [e for e in events if e.type.startswith(("payment.", "refund."))]
    assert {e.type for e in payment_events} >= {"payment.succeeded", "refund.succeeded"}
    for event in payment_events:
        details = event.payload["data"]
        assert details["reference"] == "order-1001", event.payload
        assert details["merchant"] == "acme"
        assert details["kind"] == "headless"


async def test_idempotency_replays_and_refuses_another_body(
    checkout: Checkout, accounts: Any
) -> None:
    shop = await ShopBackend.make(checkout.client, await accounts.admin())
    payload = body("order-idem")
    first = await shop.create(payload, key="key-1")
    again = await shop.create(payload, key="key-1")
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    other = await shop.create({**payload, "amount": 3000}, key="key-1")
    # The codebase's kit/idempotency answer for a reused key (as on order payments).
    assert_problem(other, 422)
    assert other.json()["code"] == "idempotency_error"
    assert await _orders(checkout) == 1


async def test_a_reference_is_unique_per_merchant(checkout: Checkout, accounts: Any) -> None:
    admin = await accounts.admin()
    acme = await ShopBackend.make(checkout.client, admin, "acme")
    globex = await ShopBackend.make(checkout.client, admin, "globex")
    assert (await acme.create(body("order-7"))).status_code == 201
    twice = await acme.create(body("order-7"))
    assert_problem(twice, 409)
    assert twice.json()["code"] == "reference_in_use"
    assert (await globex.create(body("order-7"))).status_code == 201
    assert await _orders(checkout) == 2


async def test_another_merchant_never_sees_a_payment(checkout: Checkout, accounts: Any) -> None:
    admin = await accounts.admin()
    acme = await ShopBackend.make(checkout.client, admin, "acme")
    globex = await ShopBackend.make(checkout.client, admin, "globex")
    paid = await _paid(checkout, acme, reference="order-a")
    assert_problem(await globex.get(paid["id"]), 404)
    assert_problem(await globex.refund(paid["id"]), 404)
    assert_problem(await globex.cancel(paid["id"]), 404)
    assert (await globex.list()).json()["items"] == []
    assert (await globex.list(reference="order-a")).json()["items"] == []
    mine = (await acme.list(reference="order-a")).json()["items"]
    assert [p["id"] for p in mine] == [paid["id"]]
    # A customer never sees a headless payment, nor its order in their list.
    customer = await checkout.shop.customer()
    assert_problem(
        await checkout.client.get(f"/v1/payments/{paid['id']}", headers=customer.headers), 404
    )
    orders = await checkout.client.get("/v1/orders", headers=customer.headers)
    assert orders.json()["items"] == []
    # An administrator sees every headless payment.
    listed = await checkout.client.get("/v1/payments", headers=admin.headers)
    assert [p["id"] for p in listed.json()["items"]] == [paid["id"]]


async def test_the_list_is_paginated(checkout: Checkout, accounts: Any) -> None:
    shop = await ShopBackend.make(checkout.client, await accounts.admin())
    for n in range(3):
        assert (await shop.create(body(f"order-p{n}"))).status_code == 201
    first = (await shop.list(limit="2")).json()
    assert len(first["items"]) == 2
    assert first["next_cursor"]
    second = (await shop.list(limit="2", cursor=first["next_cursor"])).json()
    assert len(second["items"]) == 1
    assert second["next_cursor"] is None


async def test_scopes_are_enforced(checkout: Checkout, accounts: Any) -> None:
    admin = await accounts.admin()
    full = await ShopBackend.make(checkout.client, admin)
    reader = await ShopBackend.make(checkout.client, admin, scopes=["payments:read"])
    writer = await ShopBackend.make(checkout.client, admin, scopes=["payments:write"])
    denied = await reader.create(body())
    assert_problem(denied, 403)
    assert denied.json()["code"] == "insufficient_scope"
    paid = await _paid(checkout, full)
    no_refund = await full.__class__(checkout.client, writer.secret, "acme").refund(paid["id"])
    assert_problem(no_refund, 403)
    assert no_refund.json()["code"] == "insufficient_scope"
    assert_problem(await writer.get(paid["id"]), 403)
    # A person, even an administrator, does not create headless payments.
    person = await checkout.client.post(
        "/v1/payments", json=body(), headers={**admin.headers, "Idempotency-Key": "k-admin"}
    )
    assert_problem(person, 403)
    assert person.json()["code"] == "machine_credential_required"


@pytest.mark.parametrize(
    "over",
    [
        {"amount": 0},
        {"amount": -5},
        {"amount": 10.5},
        {"amount": "100"},
        {"amount": True},
        {"amount": 10**20},
        {"currency": "usd"},
        {"currency": "XXX"},
        {"reference": ""},
        {"reference": "x" * 129},
        {"customer": {"email": "not-an-email"}},
        {"metadata": {f"k{n}": "v" for n in range(21)}},
        {"metadata": {"k" * 41: "v"}},
        {"metadata": {"bad key": "v"}},
        {"metadata": {"k": "v" * 501}},
        {"metadata": {"k": 5}},
        {"metadata": {f"k{n}": "v" * 400 for n in range(12)}},
        {"return_url": "http://shop.example.com/paid"},
        {"return_url": "javascript:alert(1)"},
        {"return_url": "https://user:pw@shop.example.com/"},
        {"provider": "nosuch"},
        {"status": "succeeded"},
    ],
)
async def test_bad_bodies_are_422_and_write_nothing(
    checkout: Checkout, accounts: Any, over: dict[str, Any]
) -> None:
    shop = await ShopBackend.make(checkout.client, await accounts.admin())
    response = await shop.create(body(**over))
    assert response.status_code in (404, 422), response.text
    assert_problem(response, response.status_code)
    assert await _orders(checkout) == 0


async def test_cancel_an_open_payment(checkout: Checkout, accounts: Any) -> None:
    shop = await ShopBackend.make(checkout.client, await accounts.admin())
    created = (await shop.create(body("order-c"))).json()
    canceled = await shop.cancel(created["id"])
    assert canceled.status_code == 200, canceled.text
    assert canceled.json()["status"] == "canceled"
    assert canceled.json()["order_status"] == "cancelled"
    assert (await shop.cancel(created["id"])).json()["status"] == "canceled"
    paid = await _paid(checkout, shop, reference="order-d")
    refused = await shop.cancel(paid["id"])
    assert_problem(refused, 409)
    assert (await shop.get(paid["id"])).json()["status"] == "succeeded"


async def test_a_late_success_after_cancel_is_held_for_review(
    checkout: Checkout, accounts: Any
) -> None:
    shop = await ShopBackend.make(checkout.client, await accounts.admin())
    created = (await shop.create(body("order-late"))).json()
    assert (await shop.cancel(created["id"])).status_code == 200
    await checkout.submit_card(created, GOOD_CARD)
    await checkout.deliver_webhooks()
    await checkout.process_webhooks()
    state = (await shop.get(created["id"])).json()
    assert state["status"] == "succeeded"
    assert state["applied"] is False
    assert state["needs_review"] is True
    async with checkout.app.state.database.session() as session:
        assert await ledger.unbalanced_transactions(session) == []


async def test_a_shop_lists_its_own_payments_refunds_only(
    checkout: Checkout, accounts: Any
) -> None:
    admin = await accounts.admin()
    acme = await ShopBackend.make(checkout.client, admin, "acme")
    globex = await ShopBackend.make(checkout.client, admin, "globex")
    paid = await _paid(checkout, acme, reference="order-r")
    refund = await acme.refund(paid["id"], amount=500)
    assert refund.status_code == 201, refund.text
    path = f"/v1/payments/{paid['id']}/refunds"
    listed = await checkout.client.get(path, headers=acme.headers())
    assert listed.status_code == 200, listed.text
    assert [r["id"] for r in listed.json()] == [refund.json()["id"]]
    assert_problem(await checkout.client.get(path, headers=globex.headers()), 404)
