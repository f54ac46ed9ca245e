"""Refunds tillpay learns of from the provider: made in the provider's dashboard, or
tillpay's own refund whose answer was lost. Each is booked once, when the provider's API
confirms it; what cannot be booked is flagged."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy import select, update

from tests.conftest import ClientFactory
from tests.payments.helpers import Checkout
from tests.payments.test_payment_flows import checkout_with, fetch
from tests.payments.test_refunds import refund
from tests.payments.test_unapplied_payments import balances
from tillpay.audit.models import AuditEvent
from tillpay.events.models import OutboxEvent
from tillpay.kit.ids import new_id
from tillpay.payments.models import Payment, Refund, WebhookEvent
from tillpay.sandbox import psp
from tillpay.sandbox.models import SandboxSession


async def refund_at_sandbox(
    checkout: Checkout, payment_id: str, amount: int, key: str = "dashboard-refund-1"
) -> dict[str, Any]:
    """A refund made in the provider's dashboard: tillpay is not asked."""
    api = {"Authorization": f"Bearer {psp.api_key(checkout.app.state.settings)}"}
    found = await checkout.client.get(
        f"/sandbox/api/sessions/by-reference/{payment_id}_1", headers=api
    )
    refunded = await checkout.client.post(
        f"/sandbox/api/sessions/{found.json()['id']}/refunds",
        json={"amount": amount},
        headers={**api, "Idempotency-Key": key},
    )
    assert refunded.status_code == 201, refunded.text
    return refunded.json()


async def refunds_of(checkout: Checkout, payment_id: str) -> list[Refund]:
    async with checkout.app.state.database.session() as session:
        rows = await session.execute(select(Refund).where(Refund.payment_id == payment_id))
        return list(rows.scalars())


async def event_statuses(checkout: Checkout) -> list[str]:
    async with checkout.app.state.database.session() as session:
        return sorted((await session.execute(select(WebhookEvent.status))).scalars())


async def test_a_refund_made_in_the_provider_dashboard_is_booked(checkout: Checkout) -> None:
    customer = await checkout.shop.customer()
    order, payment = await checkout.paid_order(customer, price=2500)
    made = await refund_at_sandbox(checkout, payment["id"], 100)
    assert await checkout.deliver_webhooks() == 1
    assert await checkout.process_webhooks() == 1
    assert await event_statuses(checkout) == ["processed", "processed"]

    [booked] = await refunds_of(checkout, payment["id"])
    assert (booked.status, booked.amount, booked.external, booked.created_by) == (
        "succeeded",
        100,
        True,
        None,
    )
    assert booked.provider_refund_id == made["id"]
    state = await fetch(checkout, customer, f"/v1/payments/{payment['id']}")
    assert (state["amount_refunded"], state["amount_refund_reserved"]) == (100, 100)
    order_state = await fetch(checkout, customer, f"/v1/orders/{order['id']}")
    assert (order_state["status"], order_state["refunded_amount"]) == ("partially_refunded", 100)
    assert (await balances(checkout))["provider_clearing:sandbox:USD"] == 2400
    async with checkout.app.state.database.session() as session:
        outbox = (
            await session.execute(
                select(OutboxEvent.type).where(OutboxEvent.subject_id == booked.id)
            )
        ).scalars()
        assert list(outbox) == ["refund.succeeded"]
        audit = (
            await session.execute(
                select(AuditEvent.action).where(AuditEvent.target_id == booked.id)
            )
        ).scalars()
        assert "refund.external_recorded" in list(audit)

    # The rest, refunded through tillpay, settles the order.
    admin = await checkout.shop.accounts.admin()
    assert (await refund(checkout, admin, payment["id"])).status_code == 201
    order_state = await fetch(checkout, customer, f"/v1/orders/{order['id']}")
    assert (order_state["status"], order_state["refunded_amount"]) == ("refunded", 2500)
    assert {k: v for k, v in (await balances(checkout)).items() if v} == {}


async def test_a_redelivered_dashboard_refund_is_booked_once(checkout: Checkout) -> None:
    customer = await checkout.shop.customer()
    _, payment = await checkout.paid_order(customer, price=2500)
    await refund_at_sandbox(checkout, payment["id"], 2500)
    assert await checkout.deliver_webhooks() == 1
    async with checkout.app.state.database.session() as session, session.begin():
        # The same refund, announced again under another event id (refund.updated, …).
        stored = (
            await session.execute(
                select(WebhookEvent).where(WebhookEvent.event_type == "refund.succeeded")
            )
        ).scalar_one()
        session.add(
            WebhookEvent(
                provider="sandbox",
                dedupe_key=stored.dedupe_key + "_again",
                event_type=stored.event_type,
                reference=stored.reference,
                payload=stored.payload,
            )
        )
    assert await checkout.process_webhooks() == 2
    [booked] = await refunds_of(checkout, payment["id"])
    assert booked.status == "succeeded"
    order = await fetch(checkout, customer, f"/v1/orders/{payment['order_id']}")
    assert (order["status"], order["refunded_amount"]) == ("refunded", 2500)


async def test_a_dashboard_refund_beyond_what_is_refundable_is_flagged_not_booked(
    checkout: Checkout,
) -> None:
    customer = await checkout.shop.customer()
    _, payment = await checkout.paid_order(customer, price=2500)
    async with checkout.app.state.database.session() as session, session.begin():
        # The provider holds more for this session than tillpay captured.
        await session.execute(
            update(SandboxSession)
            .where(SandboxSession.reference == f"{payment['id']}_1")
            .values(amount=5000)
        )
    await refund_at_sandbox(checkout, payment["id"], 3000)
    assert await checkout.deliver_webhooks() == 1
    assert await checkout.process_webhooks() == 1
    assert await event_statuses(checkout) == ["processed", "processed"]
    assert await refunds_of(checkout, payment["id"]) == []
    state = await fetch(checkout, customer, f"/v1/payments/{payment['id']}")
    assert (state["needs_review"], state["amount_refunded"]) == (True, 0)
    async with checkout.app.state.database.session() as session:
        stored = await session.get(Payment, payment["id"])
        assert stored is not None
        assert stored.review_reason == "external_refund_exceeds_refundable"
    assert (await balances(checkout))["provider_clearing:sandbox:USD"] == 2500


class LostRefundAnswers(httpx.AsyncBaseTransport):
    """Passes refund creates to the sandbox, then loses the answer (a read timeout)."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        if request.method == "POST" and request.url.path.endswith("/refunds"):
            await response.aread()
            raise httpx.ReadTimeout("the answer was lost", request=request)
        return response


async def test_the_webhook_of_tillpays_own_refund_ahead_of_its_answer_matches_that_refund(
    make_client: ClientFactory, clean_db: None, mail_dir: Path
) -> None:
    def setup(app: FastAPI) -> None:
        routing = app.state.provider_transport
        routing.default = LostRefundAnswers(routing.default)

    async with checkout_with(make_client, mail_dir, setup=setup) as checkout:
        customer = await checkout.shop.customer()
        order, payment = await checkout.paid_order(customer, price=2500)
        admin = await checkout.shop.accounts.admin()
        response = await refund(checkout, admin, payment["id"], amount=1000)
        assert response.status_code == 503, response.text
        [own] = await refunds_of(checkout, payment["id"])
        assert (own.status, own.provider_refund_id) == ("unknown", None)

        assert await checkout.deliver_webhooks() == 1
        assert await checkout.process_webhooks() == 1
        [matched] = await refunds_of(checkout, payment["id"])
        assert (matched.id, matched.status, matched.external) == (own.id, "succeeded", False)
        assert matched.provider_refund_id is not None
        state = await fetch(checkout, customer, f"/v1/payments/{payment['id']}")
        assert (state["amount_refunded"], state["amount_refund_reserved"]) == (1000, 1000)
        order_state = await fetch(checkout, customer, f"/v1/orders/{order['id']}")
        assert order_state["refunded_amount"] == 1000


class WebhookAheadOfTheAnswer(httpx.AsyncBaseTransport):
    """Lets the sandbox's refund webhook be delivered and processed before tillpay reads
    the answer to its refund create."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.checkout: Checkout | None = None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        if self.checkout and request.method == "POST" and request.url.path.endswith("/refunds"):
            assert await self.checkout.deliver_webhooks() == 1
            assert await self.checkout.process_webhooks() == 1
        return response


async def test_the_webhook_of_tillpays_own_refund_before_its_answer_is_applied_once(
    make_client: ClientFactory, clean_db: None, mail_dir: Path
) -> None:
    transports: list[WebhookAheadOfTheAnswer] = []

    def setup(app: FastAPI) -> None:
        routing = app.state.provider_transport
        transports.append(WebhookAheadOfTheAnswer(routing.default))
        routing.default = transports[0]

    async with checkout_with(make_client, mail_dir, setup=setup) as checkout:
        customer = await checkout.shop.customer()
        order, payment = await checkout.paid_order(customer, price=2500)
        transports[0].checkout = checkout
        admin = await checkout.shop.accounts.admin()
        response = await refund(checkout, admin, payment["id"], amount=1000)
        assert (response.status_code, response.json()["status"]) == (201, "succeeded")
        [own] = await refunds_of(checkout, payment["id"])
        assert (own.id, own.external) == (response.json()["id"], False)
        assert await event_statuses(checkout) == ["processed", "processed"]
        state = await fetch(checkout, customer, f"/v1/payments/{payment['id']}")
        assert (state["amount_refunded"], state["amount_refund_reserved"]) == (1000, 1000)
        order_state = await fetch(checkout, customer, f"/v1/orders/{order['id']}")
        assert (order_state["status"], order_state["refunded_amount"]) == (
            "partially_refunded",
            1000,
        )
        assert (await balances(checkout))["provider_clearing:sandbox:USD"] == 1500


async def test_a_provider_refund_naming_a_tillpay_refund_that_does_not_exist_is_flagged(
    checkout: Checkout,
) -> None:
    customer = await checkout.shop.customer()
    _, payment = await checkout.paid_order(customer, price=2500)
    await refund_at_sandbox(checkout, payment["id"], 500, key=f"tillpay:{new_id('rfd')}:refund")
    assert await checkout.deliver_webhooks() == 1
    assert await checkout.process_webhooks() == 1
    assert await event_statuses(checkout) == ["processed", "processed"]
    assert await refunds_of(checkout, payment["id"]) == []
    async with checkout.app.state.database.session() as session:
        stored = await session.get(Payment, payment["id"])
        assert stored is not None
        assert (stored.needs_review, stored.review_reason) == (True, "refund_unmatched")
        assert stored.amount_refunded == 0
