"""Razorpay: signature routines pinned by known answers, and the adapter driven through
tillpay's HTTP API against the wire-level emulator (tests/emulators/razorpay.py)."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from tests.conftest import ClientFactory
from tests.emulators.faults import Kind
from tests.emulators.razorpay import (
    API_BASE,
    API_HOST,
    DECLINED_CARD,
    GOOD_CARD,
    INSUFFICIENT_FUNDS_CARD,
    RazorpayEmulator,
)
from tests.http.test_errors import assert_problem
from tests.providers.env import ProviderEnv
from tests.providers.external_refunds import assert_booked_as_external_once
from tillpay.kit.db import utcnow
from tillpay.ledger import service as ledger
from tillpay.ledger.models import LedgerTransaction
from tillpay.payments.models import Payment, PaymentStatus, Refund, WebhookEvent
from tillpay.payments.providers.razorpay import (
    RazorpayAdapter,
    checkout_signature,
    order_state,
    webhook_signature,
)
from tillpay.payments.sync import janitor_pass
from tillpay.settings import Settings

KEY_ID = "rzp_test_TillpayEmulat0r"
KEY_SECRET = "rzp-key-secret-" + "k" * 24
WEBHOOK_SECRET = "rzp-webhook-secret-" + "w" * 20
OLD_WEBHOOK_SECRET = "rzp-retired-webhook-secret-" + "o" * 12
SETTINGS: dict[str, Any] = {
    "razorpay_key_id": KEY_ID,
    "razorpay_key_secret": KEY_SECRET,
    "razorpay_webhook_secret": WEBHOOK_SECRET,
    "razorpay_previous_webhook_secret": OLD_WEBHOOK_SECRET,
    "razorpay_api_base": API_BASE,
    "razorpay_currencies": ["INR", "JPY", "KWD"],
}

# ============================================================================ known answers
# providers.md §4.4, §4.5 and §6 (they reproduce razorpay-python's tests/test_client_utility.py).

SDK_WEBHOOK_BODY = (
    b"{\n"
    b'  "event": "payment.authorized",\n'
    b'  "entity": "event",\n'
    b'  "contains": [\n'
    b'    "payment"\n'
    b"  ],\n"
    b'  "payload": {\n'
    b'    "payment": {\n'
    b'      "entity": {\n'
    b'        "id": "pay_6koWN7bvxujzxM",\n'
    b'        "entity": "payment",\n'
    b'        "amount": 1000000,\n'
    b'        "currency": "INR",\n'
    b'        "status": "captured",\n'
    b'        "order_id": "order_100000000order",\n'
    b'        "international": false,\n'
    b'        "method": "card",\n'
    b'        "amount_refunded": 0,\n'
    b'        "refund_status": null,\n'
    b'        "captured": true,\n'
    b'        "description": "random description",\n'
    b'        "card_id": "card_6koWNAT6LASUqy",\n'
    b'        "bank": null,\n'
    b'        "wallet": null,\n'
    b'        "vpa": null,\n'
    b'        "email": "a@b.com",\n'
    b'        "contact": "+919999999999",\n'
    b'        "notes": {\n'
    b'          "merchant_order_id": "random order id"\n'
    b"        },\n"
    b'        "fee": 23000,\n'
    b'        "service_tax": 3000,\n'
    b'        "error_code": null,\n'
    b'        "error_description": null,\n'
    b'        "created_at": 1479978483\n'
    b"      }\n"
    b"    }\n"
    b"  },\n"
    b'  "created_at": 1400826760\n'
    b"}\n"
)

# order.paid as in razorpay/markdown-docs webhooks/orders.md (card fields trimmed).
SAMPLE_ORDER_PAID = json.dumps(
    {
        "entity": "event",
        "account_id": "acc_BFQ7uQEaa7j2z7",
        "event": "order.paid",
        "contains": ["payment", "order"],
        "payload": {
            "payment": {
                "entity": {
                    "id": "pay_DESp9bgForNoUd",
                    "entity": "payment",
                    "amount": 100,
                    "currency": "INR",
                    "status": "captured",
                    "order_id": "order_DESoU0U4ikYA19",
                    "method": "card",
                    "captured": True,
                    "created_at": 1567674797,
                }
            },
            "order": {
                "entity": {
                    "id": "order_DESoU0U4ikYA19",
                    "entity": "order",
                    "amount": 100,
                    "amount_paid": 100,
                    "amount_due": 0,
                    "currency": "INR",
                    "receipt": "rcptid #1",
                    "status": "paid",
                    "attempts": 1,
                    "created_at": 1567674759,
                }
            },
        },
        "created_at": 1567674804,
    }
).encode()


def test_checkout_signature_matches_the_sdk_vector() -> None:
    assert (
        checkout_signature(b"key_secret", "fake_order_id", "fake_payment_id")
        == "b2335e3b0801106b84a7faff035df56ecffde06918c9ddd1f0fafbb37a51cc89"
    )


def test_webhook_signature_matches_the_sdk_vector_over_the_exact_bytes() -> None:
    assert len(SDK_WEBHOOK_BODY) == 971
    assert (
        webhook_signature(b"key_secret", SDK_WEBHOOK_BODY)
        == "d60e67fd884556c045e9be7dad57903e33efc7172c17c6e3ef77db42d2b366e9"
    )


def test_webhook_signature_matches_the_project_vector() -> None:
    body = b'{"entity":"event","event":"payment.captured","contains":["payment"]}'
    assert (
        webhook_signature(b"test_webhook_secret", body)
        == "34f0a6e7c03551ccd0119498149b3fc3c7d626fa74f7b95c68044168e10beaff"
    )


def _adapter(**overrides: Any) -> RazorpayAdapter:
    settings = Settings(
        environment="test",
        secret_key="s" * 48,
        **{**SETTINGS, "razorpay_webhook_secret": "key_secret", **overrides},
    )
    return RazorpayAdapter(settings)


def test_the_adapter_accepts_the_sdk_vector_and_its_checkout_signature() -> None:
    adapter = _adapter(razorpay_key_secret="key_secret")
    signature = "d60e67fd884556c045e9be7dad57903e33efc7172c17c6e3ef77db42d2b366e9"
    assert adapter.verify_webhook(SDK_WEBHOOK_BODY, {"x-razorpay-signature": signature})
    assert adapter.verify_checkout_signature(
        order_id="fake_order_id",
        payment_id="fake_payment_id",
        signature="b2335e3b0801106b84a7faff035df56ecffde06918c9ddd1f0fafbb37a51cc89",
    )


GOOD_SIGNATURE = "d60e67fd884556c045e9be7dad57903e33efc7172c17c6e3ef77db42d2b366e9"
BAD_WEBHOOKS: dict[str, tuple[bytes, dict[str, str]]] = {
    "one byte changed": (
        SDK_WEBHOOK_BODY.replace(b"1000000", b"1000001"),
        {"x-razorpay-signature": GOOD_SIGNATURE},
    ),
    "re-serialized with spaces": (
        json.dumps(json.loads(SDK_WEBHOOK_BODY), indent=1).encode(),
        {"x-razorpay-signature": GOOD_SIGNATURE},
    ),
    "other key": (
        SDK_WEBHOOK_BODY,
        {"x-razorpay-signature": webhook_signature(b"other_secret", SDK_WEBHOOK_BODY)},
    ),
    "header missing": (SDK_WEBHOOK_BODY, {}),
    "upper-cased": (SDK_WEBHOOK_BODY, {"x-razorpay-signature": GOOD_SIGNATURE.upper()}),
    "truncated": (SDK_WEBHOOK_BODY, {"x-razorpay-signature": GOOD_SIGNATURE[:32]}),
    "empty": (SDK_WEBHOOK_BODY, {"x-razorpay-signature": ""}),
}


@pytest.mark.parametrize("case", list(BAD_WEBHOOKS))
def test_the_adapter_refuses_a_webhook_signature_that_does_not_match(case: str) -> None:
    body, headers = BAD_WEBHOOKS[case]
    assert not _adapter().verify_webhook(body, headers)


def test_the_key_secret_does_not_verify_webhooks() -> None:
    # Two secrets, two purposes: a body signed with the key secret is refused.
    adapter = _adapter(razorpay_key_secret="key_secret", razorpay_webhook_secret="wh_secret")
    assert not adapter.verify_webhook(SDK_WEBHOOK_BODY, {"x-razorpay-signature": GOOD_SIGNATURE})


BAD_CHECKOUTS = {
    "other order": ("other_order_id", "fake_payment_id"),
    "other payment": ("fake_order_id", "other_payment_id"),
    "swapped": ("fake_payment_id", "fake_order_id"),
}


@pytest.mark.parametrize("case", list(BAD_CHECKOUTS))
def test_the_checkout_signature_binds_order_and_payment(case: str) -> None:
    order_id, payment_id = BAD_CHECKOUTS[case]
    adapter = _adapter(razorpay_key_secret="key_secret")
    assert not adapter.verify_checkout_signature(
        order_id=order_id,
        payment_id=payment_id,
        signature="b2335e3b0801106b84a7faff035df56ecffde06918c9ddd1f0fafbb37a51cc89",
    )


def test_the_worker_reads_the_same_notice_from_the_stored_body_without_headers() -> None:
    body = SAMPLE_ORDER_PAID
    with_headers = _adapter().parse_webhook(body, {"x-razorpay-event-id": "KsR8pQ2LmN3o4P"})
    stored = _adapter().parse_webhook(body, {})
    assert with_headers is not None
    assert stored is not None
    assert with_headers.dedupe_key == "event:KsR8pQ2LmN3o4P"
    assert stored.dedupe_key != with_headers.dedupe_key
    assert stored.dedupe_key == _adapter().parse_webhook(body, {}).dedupe_key  # type: ignore[union-attr]
    for notice in (with_headers, stored):
        assert (notice.kind, notice.event_type, notice.status) == (
            "payment",
            "order.paid",
            PaymentStatus.SUCCEEDED,
        )
        assert (notice.reference, notice.provider_object_id) == (
            "rcptid #1",
            "order_DESoU0U4ikYA19",
        )
        assert (notice.amount, notice.currency) == (100, "INR")


def test_events_tillpay_does_not_subscribe_to_are_ignored() -> None:
    body = json.dumps({"entity": "event", "event": "payment.dispute.created", "payload": {}})
    assert _adapter().parse_webhook(body.encode(), {}) is None


@pytest.mark.parametrize(
    ("currency", "amount", "accepted"),
    [
        ("INR", 100, True),
        ("INR", 99, False),  # below INR 1.00
        ("KWD", 1000, True),
        ("KWD", 1005, False),  # three decimals: the last digit must be 0
        ("JPY", 5, True),
        ("USD", 1000, False),  # not configured
    ],
)
def test_supported_amounts(currency: str, amount: int, accepted: bool) -> None:
    assert _adapter().supports(currency, amount) is accepted


def _order(status: str) -> dict[str, Any]:
    return {"id": "order_X", "status": status, "amount": 500, "currency": "INR", "receipt": "r_1"}


def _pay(status: str, *, captured: bool = False, at: int = 1) -> dict[str, Any]:
    return {
        "id": f"pay_{status}{at}",
        "status": status,
        "captured": captured,
        "amount": 500,
        "currency": "INR",
        "created_at": at,
        "error_reason": "card_declined" if status == "failed" else None,
    }


# The mapping table of docs/providers/razorpay.md, row by row.
MAPPING = {
    "order created, no payment": (_order("created"), [], PaymentStatus.REQUIRES_ACTION),
    "captured": (_order("paid"), [_pay("captured", captured=True)], PaymentStatus.SUCCEEDED),
    "refunded after capture": (
        _order("paid"),
        [_pay("refunded", captured=True)],
        PaymentStatus.SUCCEEDED,
    ),
    "failed then captured": (
        _order("paid"),
        [_pay("failed", at=1), _pay("captured", captured=True, at=2)],
        PaymentStatus.SUCCEEDED,
    ),
    "authorized": (_order("attempted"), [_pay("authorized")], PaymentStatus.PROCESSING),
    "created": (_order("attempted"), [_pay("created")], PaymentStatus.PROCESSING),
    "failed then authorized": (
        _order("attempted"),
        [_pay("failed", at=1), _pay("authorized", at=2)],
        PaymentStatus.PROCESSING,
    ),
    "failed": (_order("attempted"), [_pay("failed")], PaymentStatus.FAILED),
    "authorisation auto-refunded": (
        _order("attempted"),
        [_pay("refunded")],
        PaymentStatus.FAILED,
    ),
    "attempted, no payment listed": (_order("attempted"), [], PaymentStatus.PROCESSING),
    "paid, no payment listed": (_order("paid"), [], PaymentStatus.PROCESSING),
    "unknown order status": (_order("mystery"), [], PaymentStatus.UNKNOWN),
}


@pytest.mark.parametrize("case", list(MAPPING))
def test_every_razorpay_state_maps_to_the_documented_attempt_status(case: str) -> None:
    order, items, expected = MAPPING[case]
    assert order_state(order, items).status is expected


def test_a_failed_payment_reports_its_error_reason_as_the_decline_code() -> None:
    state = order_state(_order("attempted"), [_pay("failed")])
    assert state.decline_code == "card_declined"


# ============================================================================ through HTTP


class Env(ProviderEnv[RazorpayEmulator]):
    provider = "razorpay"
    order_defaults = {"currency": "INR"}

    async def settle_payment(self, payment: dict[str, Any]) -> None:
        """The payer pays in Checkout; Razorpay's webhooks are applied by the worker."""
        paid = await self.emulator.pay(razorpay_order(payment))
        assert paid.status_code == 200, paid.text
        await self.emulator.deliver()
        await self.checkout.process_webhooks()

    async def callback(self, payment_id: str, body: dict[str, Any]) -> httpx.Response:
        return await self.client.post(f"/v1/payments/{payment_id}/razorpay/callback", json=body)


def razorpay_order(payment: dict[str, Any]) -> str:
    return str(payment["next_action"]["client_data"]["order_id"])


EnvFactory = Callable[..., AbstractAsyncContextManager[Env]]


@pytest.fixture
def make_env(make_client: ClientFactory, clean_db: None, mail_dir: Path) -> EnvFactory:
    @asynccontextmanager
    async def factory(
        emulator: RazorpayEmulator | None = None, **overrides: Any
    ) -> AsyncIterator[Env]:
        emulator = emulator or RazorpayEmulator(KEY_ID, KEY_SECRET, WEBHOOK_SECRET)
        async with make_client(**{**SETTINGS, **overrides}) as client:
            app = client.app  # type: ignore[attr-defined]
            app.state.provider_transport.mount(API_HOST, emulator.app)
            transport = httpx.ASGITransport(app=app, client=("52.66.75.174", 443))
            async with httpx.AsyncClient(
                transport=transport, base_url="http://localhost"
            ) as webhooks:
                emulator.webhook_client = webhooks
                yield Env(client, emulator, mail_dir)

    return factory


@pytest.fixture
async def env(make_env: EnvFactory) -> AsyncIterator[Env]:
    async with make_env() as e:
        yield e


async def test_the_provider_list_shows_razorpay_with_its_currencies(env: Env) -> None:
    listed = (await env.client.get("/v1/payments/providers")).json()
    assert {"name": "razorpay", "currencies": ["INR", "JPY", "KWD"]} in listed


async def test_checkout_data_goes_to_the_client_and_the_webhook_marks_the_order_paid(
    env: Env,
) -> None:
    customer, order, payment = await env.started(price=2500)
    assert payment["status"] == "requires_action"
    action = payment["next_action"]
    assert action["type"] == "client_sdk"
    assert action["redirect_url"] is None
    rp_order = env.emulator.orders[action["client_data"]["order_id"]]
    assert action["client_data"] == {
        "key_id": KEY_ID,
        "order_id": rp_order["id"],
        "amount": 2500,
        "currency": "INR",
        "description": f"Order {order['id']}",
        "verify_url": f"{env.checkout.app.state.settings.public_base_url}"
        f"/v1/payments/{payment['id']}/razorpay/callback",
    }
    assert (rp_order["amount"], rp_order["currency"], rp_order["receipt"]) == (
        2500,
        "INR",
        f"{payment['id']}_1",
    )
    assert (await env.emulator.pay(rp_order["id"], card=GOOD_CARD)).status_code == 200
    assert [e.name for e in env.emulator.outbox] == ["payment.captured", "order.paid"]
    delivered = await env.emulator.deliver()
    assert [r.json() for r in delivered] == [{"received": True, "duplicate": False}] * 2
    assert await env.checkout.process_webhooks() == 2
    state = await env.payment(customer, payment["id"])
    assert (state["status"], state["amount_captured"], state["needs_review"]) == (
        "succeeded",
        2500,
        False,
    )
    assert await env.order_status(order["id"]) == "paid"
    # The webhook was a hint: the order and its payments were read from the API.
    assert f"GET /v1/orders/{rp_order['id']}/payments" in env.emulator.calls
    async with env.database.session() as session:
        assert await ledger.unbalanced_transactions(session) == []


async def test_the_checkout_callback_verifies_the_signature_then_syncs_with_the_api(
    env: Env,
) -> None:
    _customer, order, payment = await env.started()
    handed = (await env.emulator.pay(razorpay_order(payment))).json()
    assert set(handed) == {"razorpay_order_id", "razorpay_payment_id", "razorpay_signature"}
    response = await env.callback(payment["id"], handed)
    assert response.status_code == 200, response.text
    assert response.json() == {
        "payment_id": payment["id"],
        "order_id": order["id"],
        "status": "succeeded",
    }
    assert await env.order_status(order["id"]) == "paid"
    # No webhook was needed, and none was processed.
    assert await env.count(WebhookEvent) == 0


async def test_a_callback_does_not_mark_paid_what_the_api_does_not_show_as_captured(
    env: Env,
) -> None:
    _customer, order, payment = await env.started()
    # A genuine signature for a payment Razorpay only authorised: the API decides.
    handed = (await env.emulator.pay(razorpay_order(payment), outcome="authorized")).json()
    response = await env.callback(payment["id"], handed)
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "processing"
    assert await env.order_status(order["id"]) == "pending_payment"


def _forged_callbacks(handed: dict[str, str]) -> dict[str, dict[str, str]]:
    other_order = "order_SomeoneElses1"
    return {
        "tampered signature": {**handed, "razorpay_signature": "0" * 64},
        "signed with the webhook secret": {
            **handed,
            "razorpay_signature": checkout_signature(
                WEBHOOK_SECRET.encode(),
                handed["razorpay_order_id"],
                handed["razorpay_payment_id"],
            ),
        },
        "another order, validly signed": {
            **handed,
            "razorpay_order_id": other_order,
            "razorpay_signature": checkout_signature(
                KEY_SECRET.encode(), other_order, handed["razorpay_payment_id"]
            ),
        },
        "upper-cased signature": {
            **handed,
            "razorpay_signature": handed["razorpay_signature"].upper(),
        },
    }


@pytest.mark.parametrize(
    "case",
    [
        "tampered signature",
        "signed with the webhook secret",
        "another order, validly signed",
        "upper-cased signature",
    ],
)
async def test_a_forged_callback_is_refused_without_asking_razorpay(env: Env, case: str) -> None:
    customer, order, payment = await env.started()
    handed = (await env.emulator.pay(razorpay_order(payment))).json()
    calls_before = len(env.emulator.calls)
    response = await env.callback(payment["id"], _forged_callbacks(handed)[case])
    assert assert_problem(response, 400)["code"] == "invalid_signature"
    assert len(env.emulator.calls) == calls_before
    assert (await env.payment(customer, payment["id"]))["status"] == "requires_action"
    assert await env.order_status(order["id"]) == "pending_payment"


async def test_a_callback_for_an_unknown_payment_is_not_found(env: Env) -> None:
    response = await env.callback(
        "pay_01JD3XK5Q6R7S8T9V0W1X2Y3Z4",
        {
            "razorpay_order_id": "order_x",
            "razorpay_payment_id": "pay_x",
            "razorpay_signature": "0" * 64,
        },
    )
    assert_problem(response, 404)


@pytest.mark.parametrize(
    ("card", "reason"),
    [(DECLINED_CARD, "card_declined"), (INSUFFICIENT_FUNDS_CARD, "insufficient_funds")],
)
async def test_a_declined_card_fails_the_payment_and_the_order_stays_payable(
    env: Env, card: str, reason: str
) -> None:
    customer, order, payment = await env.started()
    declined = await env.emulator.pay(razorpay_order(payment), card=card)
    assert declined.status_code == 400
    assert declined.json()["error"]["reason"] == reason
    assert [e.name for e in env.emulator.outbox] == ["payment.failed"]
    await env.emulator.deliver()
    await env.checkout.process_webhooks()
    state = await env.payment(customer, payment["id"])
    assert state["status"] == "failed"
    assert state["attempts"][0]["error_code"] == reason
    assert await env.order_status(order["id"]) == "pending_payment"
    again = await env.checkout.pay(customer, order["id"], provider="razorpay")
    assert again.status_code == 201
    assert again.json()["id"] != payment["id"]


async def test_a_failed_payment_captured_late_is_applied_and_flagged_for_review(
    env: Env,
) -> None:
    customer, order, payment = await env.started()
    declined = (await env.emulator.pay(razorpay_order(payment), card=DECLINED_CARD)).json()
    await env.emulator.deliver()
    await env.checkout.process_webhooks()
    assert (await env.payment(customer, payment["id"]))["status"] == "failed"
    # Razorpay documents payment.failed followed by payment.captured (late authorisation).
    late = await env.emulator.capture_late(declined["error"]["metadata"]["payment_id"])
    assert late.status_code == 200
    await env.emulator.deliver()
    await env.checkout.process_webhooks()
    state = await env.payment(customer, payment["id"])
    assert (state["status"], state["needs_review"]) == ("succeeded", True)
    assert await env.order_status(order["id"]) == "paid"


async def test_a_lost_create_answer_is_unknown_until_the_janitor_finds_the_order(
    env: Env,
) -> None:
    env.emulator.fail("POST", "/v1/orders", "timeout_after")
    customer = await env.shop.customer()
    order = await env.shop.order(customer, currency="INR", price=4200)
    created = await env.checkout.pay(customer, order["id"], provider="razorpay")
    assert created.status_code == 503
    payment = created.json()
    assert payment["status"] == "unknown"
    # The order exists at Razorpay; only the answer was lost.
    [rp_order] = env.emulator.orders.values()
    assert rp_order["receipt"] == f"{payment['id']}_1"
    await env.emulator.pay(rp_order["id"])
    resolved = await janitor_pass(env.checkout.runtime, now=utcnow() + timedelta(hours=1))
    assert resolved == 1
    # Found by its receipt.
    assert f"GET /v1/orders?receipt={payment['id']}_1&count=100" in env.emulator.calls
    state = await env.payment(customer, payment["id"])
    assert (state["status"], state["needs_review"]) == ("succeeded", False)
    assert await env.order_status(order["id"]) == "paid"
    attempt = await env.attempt(payment["id"])
    assert attempt.provider_object_id == rp_order["id"]


@pytest.mark.parametrize(("kind", "status"), [("timeout", 500), ("error", 503)])
async def test_a_create_that_never_reached_razorpay_stays_unknown_never_failed(
    env: Env, kind: Kind, status: int
) -> None:
    env.emulator.fail("POST", "/v1/orders", kind, status=status)
    customer = await env.shop.customer()
    order = await env.shop.order(customer, currency="INR")
    created = await env.checkout.pay(customer, order["id"], provider="razorpay")
    assert created.status_code == 503
    assert env.emulator.orders == {}
    assert env.emulator.calls == ["POST /v1/orders"]  # no blind retry of a create
    await janitor_pass(env.checkout.runtime, now=utcnow() + timedelta(hours=1))
    assert (await env.payment(customer, created.json()["id"]))["status"] == "unknown"


async def test_a_duplicate_delivery_is_stored_once_and_applied_once(env: Env) -> None:
    _customer, order, payment = await env.started()
    await env.emulator.pay(razorpay_order(payment))
    delivered = await env.emulator.deliver(twice=True)
    assert [r.json()["duplicate"] for r in delivered] == [False, True, False, True]
    assert await env.count(WebhookEvent) == 2
    assert await env.checkout.process_webhooks() == 2
    assert await env.order_status(order["id"]) == "paid"
    async with env.database.session() as session:
        kinds = (await session.execute(select(LedgerTransaction.kind))).scalars().all()
    assert kinds == ["payment"]


async def test_a_stale_failure_arriving_last_does_not_undo_the_success(env: Env) -> None:
    customer, order, payment = await env.started()
    rp_order = razorpay_order(payment)
    # The payer's first card is declined; Checkout's retry with another card succeeds.
    await env.emulator.pay(rp_order, card=DECLINED_CARD)
    await env.emulator.pay(rp_order, card=GOOD_CARD)
    names = [e.name for e in env.emulator.outbox]
    assert names == ["payment.failed", "payment.captured", "order.paid"]
    await env.emulator.deliver(reverse=True)
    assert await env.checkout.process_webhooks() == 3
    state = await env.payment(customer, payment["id"])
    assert (state["status"], state["needs_review"]) == ("succeeded", False)
    assert await env.order_status(order["id"]) == "paid"


def _tampered(body: bytes) -> bytes:
    return body.replace(b'"amount":', b'"amount":1', 1)


BAD_DELIVERIES: dict[str, Callable[[RazorpayEmulator, bytes], tuple[bytes, dict[str, str]]]] = {
    "no signature": lambda emu, body: (
        body,
        {"content-type": "application/json", "x-razorpay-event-id": "EvtNoSignature1"},
    ),
    "one byte changed": lambda emu, body: (_tampered(body), emu.headers_for(body)),
    "body re-serialized": lambda emu, body: (
        json.dumps(json.loads(body), indent=2).encode(),
        emu.headers_for(body),
    ),
    "signed with the key secret": lambda emu, body: (
        body,
        emu.headers_for(body, secret=KEY_SECRET),
    ),
    "signed with an unknown secret": lambda emu, body: (
        body,
        emu.headers_for(body, secret="not-the-webhook-secret"),
    ),
}


@pytest.mark.parametrize("case", list(BAD_DELIVERIES))
async def test_a_badly_signed_webhook_is_refused_and_changes_nothing(env: Env, case: str) -> None:
    customer, order, payment = await env.started()
    await env.emulator.pay(razorpay_order(payment))
    genuine = env.emulator.outbox[-1].body  # order.paid
    body, headers = BAD_DELIVERIES[case](env.emulator, genuine)
    response = await env.client.post("/v1/webhooks/razorpay", content=body, headers=headers)
    assert assert_problem(response, 400)["code"] == "invalid_signature"
    assert await env.count(WebhookEvent) == 0
    assert await env.checkout.process_webhooks() == 0
    assert (await env.payment(customer, payment["id"]))["status"] == "requires_action"
    assert await env.order_status(order["id"]) == "pending_payment"


async def test_the_retired_webhook_secret_still_verifies_during_rotation(env: Env) -> None:
    _customer, order, payment = await env.started()
    await env.emulator.pay(razorpay_order(payment))
    body = env.emulator.outbox[-1].body
    response = await env.client.post(
        "/v1/webhooks/razorpay",
        content=body,
        headers=env.emulator.headers_for(body, secret=OLD_WEBHOOK_SECRET),
    )
    assert response.status_code == 200, response.text
    assert await env.checkout.process_webhooks() == 1
    assert await env.order_status(order["id"]) == "paid"


async def test_a_signed_webhook_alone_is_not_believed(env: Env) -> None:
    """A correctly signed order.paid for an order Razorpay has not been paid for."""
    customer, order, payment = await env.started()
    rp_order = env.emulator.orders[razorpay_order(payment)]
    event = json.loads(SAMPLE_ORDER_PAID)
    event["payload"]["order"]["entity"].update(id=rp_order["id"], receipt=rp_order["receipt"])
    event["payload"]["payment"]["entity"].update(order_id=rp_order["id"], amount=10000)
    body = json.dumps(event).encode()
    response = await env.client.post(
        "/v1/webhooks/razorpay", content=body, headers=env.emulator.headers_for(body)
    )
    assert response.status_code == 200
    await env.checkout.process_webhooks()
    assert (await env.payment(customer, payment["id"]))["status"] == "requires_action"
    assert await env.order_status(order["id"]) == "pending_payment"


@pytest.mark.parametrize(
    ("paid", "reason"),
    [({"amount": 100}, "amount_mismatch"), ({"currency": "USD"}, "currency_mismatch")],
)
async def test_a_captured_payment_for_another_amount_or_currency_is_flagged_not_applied(
    env: Env, paid: dict[str, Any], reason: str
) -> None:
    customer, order, payment = await env.started(price=2500)
    await env.emulator.pay(razorpay_order(payment), **paid)
    await env.emulator.deliver()
    await env.checkout.process_webhooks()
    state = await env.payment(customer, payment["id"])
    assert state["status"] != "succeeded"
    assert state["needs_review"] is True
    assert (await env.stored(Payment, payment["id"])).review_reason == reason
    assert await env.order_status(order["id"]) == "pending_payment"


@pytest.mark.parametrize(("currency", "price"), [("KWD", 1005), ("USD", 1000), ("INR", 99)])
async def test_an_amount_razorpay_cannot_take_is_refused_before_any_call(
    env: Env, currency: str, price: int
) -> None:
    customer = await env.shop.customer()
    order = await env.shop.order(customer, currency=currency, price=price)
    response = await env.checkout.pay(customer, order["id"], provider="razorpay")
    assert assert_problem(response, 422)["code"] == "currency_not_supported"
    assert env.emulator.calls == []


async def test_a_three_decimal_amount_ending_in_zero_is_sent_as_is(env: Env) -> None:
    customer = await env.shop.customer()
    order = await env.shop.order(customer, currency="KWD", price=12340)
    response = await env.checkout.pay(customer, order["id"], provider="razorpay")
    assert response.status_code == 201, response.text
    [rp_order] = env.emulator.orders.values()
    assert (rp_order["amount"], rp_order["currency"]) == (12340, "KWD")


async def test_wrong_api_credentials_are_refused_by_razorpay_and_fail_the_attempt(
    make_env: EnvFactory,
) -> None:
    emulator = RazorpayEmulator(KEY_ID, "the-real-key-secret-is-different", WEBHOOK_SECRET)
    async with make_env(emulator) as env:
        customer = await env.shop.customer()
        order = await env.shop.order(customer, currency="INR")
        response = await env.checkout.pay(customer, order["id"], provider="razorpay")
        assert response.status_code == 502
        assert response.json()["attempts"][0]["error_code"] == "razorpay_auth_failed"
        assert env.emulator.orders == {}


# ---------------------------------------------------------------------------- refunds


async def test_a_partial_then_a_full_refund_go_to_razorpay_with_idempotency_keys(
    env: Env,
) -> None:
    _customer, order, payment = await env.paid(price=10000)
    admin = await env.shop.accounts.admin()
    partial = await env.refund(admin, payment["id"], amount=4000)
    assert partial.status_code == 201, partial.text
    assert partial.json()["status"] == "succeeded"
    assert await env.order_status(order["id"]) == "partially_refunded"
    rest = await env.refund(admin, payment["id"])
    assert rest.status_code == 201, rest.text
    assert rest.json()["amount"] == 6000
    assert await env.order_status(order["id"]) == "refunded"
    [rp_payment] = env.emulator.payments.values()
    assert (rp_payment["amount_refunded"], rp_payment["status"]) == (10000, "refunded")
    refund_ids = {partial.json()["id"], rest.json()["id"]}
    assert {k.removeprefix("tp_") for k in env.emulator._idempotency} == refund_ids
    assert sorted(r["amount"] for r in env.emulator.refunds.values()) == [4000, 6000]
    async with env.database.session() as session:
        assert await ledger.unbalanced_transactions(session) == []


async def test_a_refund_whose_answer_was_lost_is_replayed_by_the_janitor_not_duplicated(
    env: Env,
) -> None:
    _customer, order, payment = await env.paid(price=10000)
    admin = await env.shop.accounts.admin()
    # Every try (the first and both retries) reaches Razorpay and loses its answer.
    env.emulator.fail("POST", r"/v1/payments/\w+/refund", "timeout_after", times=3)
    lost = await env.refund(admin, payment["id"], amount=2500)
    assert lost.status_code == 503
    assert lost.json()["status"] == "unknown"
    assert len(env.emulator.refunds) == 1
    await janitor_pass(env.checkout.runtime, now=utcnow() + timedelta(hours=1))
    refund = await env.stored(Refund, lost.json()["id"])
    assert str(refund.status) == "succeeded"
    assert refund.provider_refund_id == next(iter(env.emulator.refunds))
    assert len(env.emulator.refunds) == 1
    assert await env.order_status(order["id"]) == "partially_refunded"


@pytest.mark.parametrize(
    ("outcome", "refund_status", "order_status"),
    [("processed", "succeeded", "refunded"), ("failed", "failed", "paid")],
)
async def test_a_pending_refund_is_settled_by_its_webhook(
    env: Env, outcome: str, refund_status: str, order_status: str
) -> None:
    _customer, order, payment = await env.paid(price=10000)
    admin = await env.shop.accounts.admin()
    env.emulator.refund_outcome = "pending"
    created = await env.refund(admin, payment["id"])
    assert created.status_code == 201, created.text
    assert created.json()["status"] == "pending"
    [rp_refund] = env.emulator.refunds.values()
    assert (await env.emulator.settle_refund(rp_refund["id"], outcome)).status_code == 200
    assert [e.name for e in env.emulator.outbox] == [f"refund.{outcome}"]
    await env.emulator.deliver()
    assert await env.checkout.process_webhooks() == 1
    refund = await env.stored(Refund, created.json()["id"])
    assert str(refund.status) == refund_status
    assert await env.order_status(order["id"]) == order_status
    stored = await env.stored(Payment, payment["id"])
    assert stored.amount_refund_reserved == (10000 if outcome == "processed" else 0)


async def test_a_refund_made_in_the_razorpay_dashboard_is_booked_as_external_once(
    env: Env,
) -> None:
    customer, order, payment = await env.paid(price=10000)
    rp_order = (await env.attempt(payment["id"])).provider_object_id
    [rp_payment] = [p for p in env.emulator.payments.values() if p["order_id"] == rp_order]
    # The merchant refunds in Razorpay directly: no notes, no receipt, no idempotency key.
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=env.emulator.app),
        base_url=API_BASE,
        auth=(KEY_ID, KEY_SECRET),
    ) as dashboard:
        made = await dashboard.post(
            f"/v1/payments/{rp_payment['id']}/refund", json={"amount": 4000}
        )
    assert made.status_code == 200, made.text
    assert [e.name for e in env.emulator.outbox] == ["refund.processed"]
    responses = await env.emulator.deliver(twice=True)
    assert {r.status_code for r in responses} == {200}
    await env.checkout.process_webhooks()
    await assert_booked_as_external_once(
        env.client,
        env.database,
        admin=await env.shop.accounts.admin(),
        customer=customer,
        payment_id=payment["id"],
        order_id=order["id"],
        amount=4000,
    )


# ---------------------------------------------------------------------------- secrets


async def test_no_secret_or_card_number_reaches_the_logs_or_the_attempt_summaries(
    make_env: EnvFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    async with make_env() as env:
        capsys.readouterr()
        _customer, _order, payment = await env.started()
        rp_order = razorpay_order(payment)
        await env.emulator.pay(rp_order, card=DECLINED_CARD)
        await env.emulator.pay(rp_order, card=GOOD_CARD)
        env.emulator.fail("GET", r"/v1/orders/\w+/payments", "error", status=503)
        await env.emulator.deliver()
        await env.checkout.process_webhooks()
        body = b'{"event":"order.paid"}'
        await env.client.post(
            "/v1/webhooks/razorpay",
            content=body,
            headers=env.emulator.headers_for(body, secret="x"),
        )
        await env.callback(
            payment["id"],
            {
                "razorpay_order_id": rp_order,
                "razorpay_payment_id": "pay_x",
                "razorpay_signature": "f" * 64,
            },
        )
        admin = await env.shop.accounts.admin()
        await env.refund(admin, payment["id"], amount=1000)
        attempt = await env.attempt(payment["id"])
    output = capsys.readouterr().out
    assert "provider.call_failed" in output  # the log stream was captured
    assert "webhook.signature_invalid" in output
    summaries = json.dumps(attempt.summary)
    basic = base64.b64encode(f"{KEY_ID}:{KEY_SECRET}".encode()).decode()
    for text in (output, summaries):
        for secret in (KEY_SECRET, WEBHOOK_SECRET, OLD_WEBHOOK_SECRET, basic):
            assert secret not in text
        for card in (GOOD_CARD, DECLINED_CARD):
            assert card.replace(" ", "") not in text
            assert card not in text
    assert "gaurav.kumar@example.com" not in summaries  # the payer's contact data stays out
