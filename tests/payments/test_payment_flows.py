"""Starting payments, the browser return, and the ways the outcome reaches tillpay: the API
at create time, the return, webhooks (late, twice, out of order, forged amounts) and the
janitor."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select, update

from tests.accounts.helpers import Account, Accounts
from tests.commerce.helpers import Shop
from tests.conftest import ClientFactory
from tests.http.test_errors import assert_problem
from tests.payments.helpers import GOOD_CARD, LATE_TWICE_CARD, PENDING_CARD, Checkout
from tests.payments.test_webhook_security import post_webhook
from tillpay.accounts.models import User
from tillpay.audit.models import AuditEvent
from tillpay.kit import signing
from tillpay.kit.db import utcnow
from tillpay.ledger.models import LedgerTransaction
from tillpay.payments.expiry import expire_unpaid_orders
from tillpay.payments.models import Payment, PaymentAttempt, WebhookEvent
from tillpay.payments.sync import janitor_pass
from tillpay.payments.webhooks import WEBHOOK_MAX_ATTEMPTS, process_webhook
from tillpay.sandbox import psp
from tillpay.sandbox.models import SandboxSession, SandboxWebhook

ALLOWED_RETURN = "http://localhost:3000/thanks"


@asynccontextmanager
async def checkout_with(
    make_client: ClientFactory, mail_dir: Path, **overrides: Any
) -> AsyncIterator[Checkout]:
    """A checkout driver on an app with these settings (pair with the ``clean_db`` fixture)."""
    async with make_client(**overrides) as client:
        yield Checkout(Shop(Accounts(client, mail_dir)))


async def fetch(checkout: Checkout, who: Account, path: str) -> Any:
    response = await checkout.client.get(path, headers=who.headers)
    assert response.status_code == 200, response.text
    return response.json()


async def started(checkout: Checkout, **product: Any) -> tuple[Account, dict[str, Any]]:
    """A customer and the payment they just started for a fresh order."""
    customer = await checkout.shop.customer()
    order = await checkout.shop.order(customer, **product)
    created = await checkout.pay(customer, order["id"], return_url=ALLOWED_RETURN)
    assert created.status_code == 201, created.text
    return customer, created.json()


async def ledger_transactions(checkout: Checkout, reference_id: str) -> int:
    async with checkout.app.state.database.session() as session:
        count = await session.scalar(
            select(func.count())
            .select_from(LedgerTransaction)
            .where(LedgerTransaction.reference_id == reference_id)
        )
    return int(count or 0)


async def queued_body(checkout: Checkout) -> dict[str, Any]:
    async with checkout.app.state.database.session() as session:
        body = (
            (await session.execute(select(SandboxWebhook.body).order_by(SandboxWebhook.deliver_at)))
            .scalars()
            .first()
        )
    assert body is not None
    return json.loads(body)


def signed(checkout: Checkout, event: dict[str, Any]) -> tuple[bytes, str]:
    raw = json.dumps(event, separators=(",", ":")).encode()
    return raw, signing.sign(raw, psp.webhook_secret(checkout.app.state.settings))


# ----------------------------------------------------------------------------- creating


async def test_paying_needs_a_verified_email(checkout: Checkout) -> None:
    customer = await checkout.shop.customer()
    order = await checkout.shop.order(customer)
    async with checkout.app.state.database.session() as session, session.begin():
        await session.execute(
            update(User).where(User.id == customer.user_id).values(email_verified_at=None)
        )
    response = await checkout.pay(customer, order["id"])
    assert assert_problem(response, 403)["code"] == "email_not_verified"


async def test_paying_needs_an_idempotency_key(checkout: Checkout) -> None:
    customer = await checkout.shop.customer()
    order = await checkout.shop.order(customer)
    response = await checkout.client.post(
        f"/v1/orders/{order['id']}/payments",
        json={"provider": "sandbox"},
        headers=customer.headers,
    )
    assert_problem(response, 422)
    assert await fetch(checkout, customer, f"/v1/orders/{order['id']}/payments") == []


async def test_an_unknown_provider_is_refused(checkout: Checkout) -> None:
    customer = await checkout.shop.customer()
    order = await checkout.shop.order(customer)
    response = await checkout.pay(customer, order["id"], provider="acmepay")
    assert assert_problem(response, 422)["code"] == "provider_unavailable"


async def test_the_same_key_replays_the_same_payment(checkout: Checkout) -> None:
    customer = await checkout.shop.customer()
    order = await checkout.shop.order(customer)
    first = await checkout.pay(customer, order["id"], key="pay-1")
    again = await checkout.pay(customer, order["id"], key="pay-1")
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.json()["id"] == first.json()["id"]
    assert again.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers


async def test_the_same_key_with_another_body_is_refused(checkout: Checkout) -> None:
    customer = await checkout.shop.customer()
    order = await checkout.shop.order(customer)
    assert (await checkout.pay(customer, order["id"], key="pay-1")).status_code == 201
    other = await checkout.pay(customer, order["id"], key="pay-1", return_url=ALLOWED_RETURN)
    assert assert_problem(other, 422)["code"] == "idempotency_error"


async def test_paying_again_returns_the_open_payment(checkout: Checkout) -> None:
    customer = await checkout.shop.customer()
    order = await checkout.shop.order(customer)
    first = await checkout.pay(customer, order["id"])
    again = await checkout.pay(customer, order["id"])
    assert again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    assert len(await fetch(checkout, customer, f"/v1/orders/{order['id']}/payments")) == 1


async def _cancelled(checkout: Checkout, customer: Account) -> str:
    order = await checkout.shop.order(customer)
    response = await checkout.client.post(
        f"/v1/orders/{order['id']}/cancel", headers=customer.headers
    )
    assert response.status_code == 200, response.text
    return str(order["id"])


async def _expired(checkout: Checkout, customer: Account) -> str:
    order = await checkout.shop.order(customer)
    async with checkout.app.state.database.session() as session, session.begin():
        await expire_unpaid_orders(session, now=utcnow() + timedelta(days=1))
    return str(order["id"])


async def _paid(checkout: Checkout, customer: Account) -> str:
    order, _ = await checkout.paid_order(customer)
    return str(order["id"])


@pytest.mark.parametrize("make_order", [_cancelled, _expired, _paid])
async def test_an_order_that_is_not_pending_cannot_be_paid(
    checkout: Checkout, make_order: Any
) -> None:
    customer = await checkout.shop.customer()
    order_id = await make_order(checkout, customer)
    response = await checkout.pay(customer, order_id)
    assert assert_problem(response, 409)["code"] == "order_not_payable"


async def test_another_customers_order_is_not_found(checkout: Checkout) -> None:
    owner = await checkout.shop.customer()
    order = await checkout.shop.order(owner)
    intruder = await checkout.shop.customer()
    response = await checkout.pay(intruder, order["id"])
    assert assert_problem(response, 404)["code"] == "not_found"
    assert await fetch(checkout, owner, f"/v1/orders/{order['id']}/payments") == []


@pytest.mark.parametrize(
    "return_url",
    [
        "https://evil.example/",
        "http://localhost:3000.evil.example/",
        "http://user@localhost:3000/",
        "javascript:alert(1)",
    ],
)
async def test_return_url_outside_the_allow_list_is_refused(
    checkout: Checkout, return_url: str
) -> None:
    customer = await checkout.shop.customer()
    order = await checkout.shop.order(customer)
    response = await checkout.pay(customer, order["id"], return_url=return_url)
    assert assert_problem(response, 422)["code"] == "return_url_not_allowed"


# ----------------------------------------------------------------------------- browser return


async def test_a_forged_success_return_changes_nothing(checkout: Checkout) -> None:
    customer, payment = await started(checkout)
    reference = f"{payment['id']}_1"
    for _ in range(2):  # hit directly, then replayed
        response = await checkout.client.get(
            f"/v1/payments/{payment['id']}/return",
            params={"status": "success", "reference": reference, "payment_id": "pay_other"},
        )
        assert response.status_code == 303
        assert response.headers["location"] == f"{ALLOWED_RETURN}?payment_id={payment['id']}"
    state = await fetch(checkout, customer, f"/v1/payments/{payment['id']}")
    assert state["status"] == "requires_action"
    order = await fetch(checkout, customer, f"/v1/orders/{payment['order_id']}")
    assert order["status"] == "pending_payment"


async def test_the_return_after_a_paid_card_marks_the_order_paid_before_any_webhook(
    checkout: Checkout,
) -> None:
    customer, payment = await started(checkout)
    await checkout.submit_card(payment, GOOD_CARD)
    response = await checkout.client.get(f"/v1/payments/{payment['id']}/return")
    assert response.status_code == 303
    state = await fetch(checkout, customer, f"/v1/payments/{payment['id']}")
    assert state["status"] == "succeeded"
    order = await fetch(checkout, customer, f"/v1/orders/{payment['order_id']}")
    assert order["status"] == "paid"
    # The webhook that follows finds nothing left to do.
    assert await checkout.deliver_webhooks() == 1
    assert await checkout.process_webhooks() == 1
    assert await ledger_transactions(checkout, payment["id"]) == 1


# ----------------------------------------------------------------------------- janitor


async def test_a_pending_card_is_resolved_by_the_janitor(
    make_client: ClientFactory, clean_db: None, mail_dir: Path
) -> None:
    async with checkout_with(make_client, mail_dir, sandbox_settle_seconds=0) as checkout:
        customer, payment = await started(checkout)
        await checkout.submit_card(payment, PENDING_CARD)
        assert await checkout.deliver_webhooks() == 0  # pending cards announce nothing
        assert await janitor_pass(checkout.runtime) == 0  # not due yet
        state = await fetch(checkout, customer, f"/v1/payments/{payment['id']}")
        assert state["status"] in ("requires_action", "processing")
        later = utcnow() + timedelta(hours=1)
        assert await janitor_pass(checkout.runtime, now=later) == 1
        state = await fetch(checkout, customer, f"/v1/payments/{payment['id']}")
        assert state["status"] == "succeeded"
        order = await fetch(checkout, customer, f"/v1/orders/{payment['order_id']}")
        assert order["status"] == "paid"


class FlakyProvider(httpx.AsyncBaseTransport):
    """Times out every session create while ``down``; passes everything else through."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.down = True

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self.down and (request.method, request.url.path) == ("POST", "/sandbox/api/sessions"):
            raise httpx.ReadTimeout("provider did not answer", request=request)
        return await self.inner.handle_async_request(request)


async def test_a_create_timeout_stays_unknown_until_the_provider_proves_it_never_happened(
    make_client: ClientFactory, clean_db: None, mail_dir: Path
) -> None:
    flaky: list[FlakyProvider] = []

    def setup(app: FastAPI) -> None:
        routing = app.state.provider_transport
        flaky.append(FlakyProvider(routing.default))
        routing.default = flaky[0]

    async with checkout_with(make_client, mail_dir, setup=setup) as checkout:
        customer = await checkout.shop.customer()
        order = await checkout.shop.order(customer)
        created = await checkout.pay(customer, order["id"])
        assert created.status_code == 503
        payment = created.json()
        assert payment["status"] == "unknown"
        flaky[0].down = False
        # The sandbox has no such session, but a young attempt may still be in flight.
        assert await janitor_pass(checkout.runtime, now=utcnow() + timedelta(hours=2))
        state = await fetch(checkout, customer, f"/v1/payments/{payment['id']}")
        assert state["status"] == "unknown"
        async with checkout.app.state.database.session() as session, session.begin():
            await session.execute(
                update(PaymentAttempt)
                .where(PaymentAttempt.payment_id == payment["id"])
                .values(created_at=utcnow() - timedelta(hours=2))
            )
        assert await janitor_pass(checkout.runtime, now=utcnow() + timedelta(days=2))
        state = await fetch(checkout, customer, f"/v1/payments/{payment['id']}")
        assert state["status"] == "failed"
        assert state["attempts"][0]["error_code"] == "not_created"
        order_state = await fetch(checkout, customer, f"/v1/orders/{order['id']}")
        assert order_state["status"] == "pending_payment"
        assert (await checkout.pay(customer, order["id"])).status_code == 201


# ----------------------------------------------------------------------------- webhooks


async def test_late_duplicated_webhooks_apply_once(
    make_client: ClientFactory, clean_db: None, mail_dir: Path
) -> None:
    async with checkout_with(make_client, mail_dir, sandbox_late_webhook_seconds=0) as checkout:
        customer, payment = await started(checkout)
        await checkout.submit_card(payment, LATE_TWICE_CARD)
        assert await checkout.deliver_webhooks() == 2
        assert await checkout.process_webhooks() == 1
        async with checkout.app.state.database.session() as session:
            events = await session.scalar(select(func.count()).select_from(WebhookEvent))
        assert events == 1
        state = await fetch(checkout, customer, f"/v1/payments/{payment['id']}")
        assert state["status"] == "succeeded"
        history = await fetch(checkout, customer, f"/v1/orders/{payment['order_id']}/events")
        assert [e["to_status"] for e in history].count("paid") == 1
        assert await ledger_transactions(checkout, payment["id"]) == 1


async def test_a_late_failure_notice_after_success_changes_nothing(checkout: Checkout) -> None:
    customer = await checkout.shop.customer()
    order, payment = await checkout.paid_order(customer)
    event = await queued_body(checkout)
    event["id"] = f"sbe_late_{uuid.uuid4().hex[:12]}"
    event["type"] = "session.failed"
    event["created"] = int(time.time())
    event["data"]["session"].update(status="failed", decline_code="card_declined")
    raw, signature = signed(checkout, event)
    response = await post_webhook(checkout, raw, signature)
    assert response.json() == {"received": True, "duplicate": False}
    assert await checkout.process_webhooks() == 1
    async with checkout.app.state.database.session() as session:
        stored = (
            await session.execute(
                select(WebhookEvent).where(WebhookEvent.dedupe_key == event["id"])
            )
        ).scalar_one()
        assert stored.status == "processed"
    state = await fetch(checkout, customer, f"/v1/payments/{payment['id']}")
    assert (state["status"], state["amount_captured"]) == ("succeeded", payment["amount"])
    assert (await fetch(checkout, customer, f"/v1/orders/{order['id']}"))["status"] == "paid"
    assert await ledger_transactions(checkout, payment["id"]) == 1


async def test_a_success_for_another_amount_is_flagged_not_applied(checkout: Checkout) -> None:
    customer, payment = await started(checkout, price=2500)
    await checkout.submit_card(payment, GOOD_CARD)
    async with checkout.app.state.database.session() as session, session.begin():
        await session.execute(
            update(SandboxSession)
            .where(SandboxSession.reference == f"{payment['id']}_1")
            .values(amount=1)
        )
    assert await checkout.deliver_webhooks() == 1
    assert await checkout.process_webhooks() == 1
    state = await fetch(checkout, customer, f"/v1/payments/{payment['id']}")
    assert state["status"] != "succeeded"
    assert state["amount_captured"] == 0
    assert state["needs_review"] is True
    order = await fetch(checkout, customer, f"/v1/orders/{payment['order_id']}")
    assert order["status"] == "pending_payment"
    async with checkout.app.state.database.session() as session:
        stored = await session.get(Payment, payment["id"])
        assert stored is not None
        assert stored.review_reason == "amount_mismatch"
        audit = (
            await session.execute(
                select(AuditEvent).where(
                    AuditEvent.action == "payment.review_flagged",
                    AuditEvent.target_id == payment["id"],
                )
            )
        ).scalar_one()
        assert audit.details["reason"] == "amount_mismatch"
    assert await ledger_transactions(checkout, payment["id"]) == 0


async def test_a_refund_event_for_no_known_payment_retries_then_dies_and_can_be_replayed(
    checkout: Checkout,
) -> None:
    # A signed refund event for a session tillpay never created: nothing to match it to.
    forged = {
        "id": f"sbe_unmatched_{uuid.uuid4().hex[:12]}",
        "type": "refund.succeeded",
        "created": int(time.time()),
        "data": {
            "refund": {"id": "sbr_unknown", "session_id": "sbs_unknown", "amount": 100},
            "session": {"id": "sbs_unknown", "reference": "pay_unknown_1"},
        },
    }
    raw, signature = signed(checkout, forged)
    assert (await post_webhook(checkout, raw, signature)).status_code == 200
    assert await checkout.process_webhooks() == 1
    async with checkout.app.state.database.session() as session:
        event = (
            await session.execute(
                select(WebhookEvent).where(WebhookEvent.event_type == "refund.succeeded")
            )
        ).scalar_one()
    assert (event.status, event.attempts) == ("pending", 1)
    outcome = "retry"
    for _ in range(WEBHOOK_MAX_ATTEMPTS - 1):
        outcome = await process_webhook(checkout.runtime, event.id)
    assert outcome == "dead"
    admin = await checkout.shop.accounts.admin()
    dead = await fetch(checkout, admin, "/v1/admin/webhook-events?status=dead")
    assert [e["id"] for e in dead] == [event.id]
    replayed = await checkout.client.post(
        f"/v1/admin/webhook-events/{event.id}/replay", headers=admin.headers
    )
    assert replayed.status_code == 200, replayed.text
    assert (replayed.json()["status"], replayed.json()["attempts"]) == ("pending", 0)
    assert await checkout.process_webhooks() == 1
