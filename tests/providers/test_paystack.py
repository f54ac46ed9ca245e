"""Paystack: the webhook signature pinned by its known answer, and the adapter driven through
tillpay's HTTP API against the wire-level emulator (tests/emulators/paystack.py)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import func, select

from tests.accounts.helpers import Account, Accounts
from tests.commerce.helpers import Shop
from tests.conftest import ClientFactory
from tests.emulators.paystack import API_BASE, WEBHOOK_IPS, PaystackEmulator, encode, sign
from tests.http.test_errors import assert_problem
from tests.payments.helpers import Checkout
from tests.providers.external_refunds import assert_booked_as_external_once
from tillpay.events.models import OutboxEvent
from tillpay.kit.db import utcnow
from tillpay.kit.ids import new_id
from tillpay.ledger import service as ledger
from tillpay.ledger.models import LedgerTransaction
from tillpay.payments.models import PaymentAttempt, PaymentStatus, RefundStatus, WebhookEvent
from tillpay.payments.providers.paystack import (
    PAYMENT_STATUS,
    REFUND_STATUS,
    PaystackAdapter,
    paystack_reference,
    tillpay_reference,
    verify_signature,
    webhook_signature,
)
from tillpay.payments.sync import janitor_pass
from tillpay.payments.webhooks import process_due_webhooks
from tillpay.settings import ConfigurationError, Settings

SECRET = "sk_test_5b1f0c9e7d3a4b2c8e6f1a0d9c7b5e3f2a1d0c9b"
PUBLIC = "pk_test_5b1f0c9e7d3a4b2c8e6f1a0d9c7b5e3f2a1d0c9b"

# providers.md §3.3 / §6 (PaystackOSS/doc-code-snippets verifying-transaction/index.php).
KAT_KEY = "sk_test_xxx"
KAT_BODY = (
    b'{"event":"charge.success","data":{"reference":"qTPrJoy9Bx","amount":10000,'
    b'"currency":"NGN","status":"success"}}'
)
KAT_SIGNATURE = (
    "3e08cce852ab08bb44791c22e48c11354363e491bf379191881f251927fb1562"
    "df97024ad9f496a4d2cadab58e52487005b259994b8521f32604872858ff4866"
)


# ============================================================================ known answers


def test_webhook_signature_matches_the_known_answer() -> None:
    assert webhook_signature(KAT_BODY, KAT_KEY) == KAT_SIGNATURE
    assert verify_signature(KAT_BODY, KAT_SIGNATURE, KAT_KEY)


def test_emulator_signs_exactly_like_the_known_answer() -> None:
    assert sign(KAT_BODY, KAT_KEY) == KAT_SIGNATURE


@pytest.mark.parametrize(
    ("body", "signature", "key"),
    [
        pytest.param(KAT_BODY.replace(b"10000", b"10001"), KAT_SIGNATURE, KAT_KEY, id="byte"),
        pytest.param(KAT_BODY, KAT_SIGNATURE, "sk_test_xxy", id="key"),
        pytest.param(KAT_BODY, KAT_SIGNATURE, "pk_test_xxx", id="public-key"),
        pytest.param(KAT_BODY, None, KAT_KEY, id="missing"),
        pytest.param(KAT_BODY, "", KAT_KEY, id="empty"),
        pytest.param(KAT_BODY, KAT_SIGNATURE.upper(), KAT_KEY, id="upper-case"),
        pytest.param(KAT_BODY, KAT_SIGNATURE[:64], KAT_KEY, id="truncated"),
        pytest.param(KAT_BODY, KAT_SIGNATURE + "00", KAT_KEY, id="extended"),
        pytest.param(KAT_BODY, "é" * 128, KAT_KEY, id="non-ascii"),
        pytest.param(
            json.dumps(json.loads(KAT_BODY)).encode(), KAT_SIGNATURE, KAT_KEY, id="re-serialized"
        ),
    ],
)
def test_signature_check_refuses_every_variant(
    body: bytes, signature: str | None, key: str
) -> None:
    assert not verify_signature(body, signature, key)


@given(attempt_no=st.integers(min_value=1, max_value=999_999))
def test_attempt_references_round_trip_in_paystack_characters(attempt_no: int) -> None:
    ours = f"{new_id('pay')}_{attempt_no}"
    theirs = paystack_reference(ours)
    assert set(theirs) <= set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.=")
    assert tillpay_reference(theirs) == ours


@pytest.mark.parametrize("reference", ["qTPrJoy9Bx", "T685312322670591", "pay-abc-1", ""])
def test_references_tillpay_did_not_make_are_not_ours(reference: str) -> None:
    assert tillpay_reference(reference) is None


@pytest.mark.parametrize(
    ("status", "expected", "review"),
    [  # providers.md §3.2
        ("success", PaymentStatus.SUCCEEDED, None),
        ("failed", PaymentStatus.FAILED, None),
        ("abandoned", PaymentStatus.REQUIRES_ACTION, None),
        ("ongoing", PaymentStatus.PROCESSING, None),
        ("pending", PaymentStatus.PROCESSING, None),
        ("queued", PaymentStatus.PROCESSING, None),
        ("reversed", PaymentStatus.FAILED, "reversed_at_provider"),
    ],
)
def test_transaction_statuses_map_as_documented(
    status: str, expected: PaymentStatus, review: str | None
) -> None:
    assert PAYMENT_STATUS[status] == (expected, review)


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("pending", RefundStatus.PENDING),
        ("processing", RefundStatus.PENDING),
        ("needs-attention", RefundStatus.PENDING),
        ("processed", RefundStatus.SUCCEEDED),
        ("failed", RefundStatus.FAILED),
    ],
)
def test_refund_statuses_map_as_documented(status: str, expected: RefundStatus) -> None:
    assert REFUND_STATUS[status] is expected


def _settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {"secret_key": "s" * 40, "paystack_secret_key": SECRET}
    return Settings(**{**values, **overrides})


@pytest.mark.parametrize(
    "overrides",
    [
        pytest.param({"paystack_secret_key": PUBLIC}, id="public-key"),
        pytest.param({"paystack_currencies": ["NGN", "XOF"]}, id="currency-without-cents"),
        pytest.param({"paystack_currencies": ["NGN", "ABC"]}, id="unknown-currency"),
        pytest.param({"paystack_webhook_ips": ["52.31.139.75", "not-an-ip"]}, id="bad-ip"),
    ],
)
def test_incomplete_or_wrong_settings_are_refused_at_start(overrides: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        PaystackAdapter(_settings(**overrides))


async def test_events_are_parsed_from_the_body_alone() -> None:
    """The worker re-parses stored bodies without headers."""
    adapter = PaystackAdapter(_settings())
    try:
        ours = f"{new_id('pay')}_1"
        charge = encode(
            {
                "event": "charge.success",
                "data": {
                    "id": 302961,
                    "status": "success",
                    "reference": paystack_reference(ours),
                    "amount": 10000,
                    "currency": "NGN",
                    "metadata": 0,
                },
            }
        )
        notice = adapter.parse_webhook(charge, {})
        assert notice is not None
        assert (notice.kind, notice.reference, notice.status) == (
            "payment",
            ours,
            PaymentStatus.SUCCEEDED,
        )
        assert notice.dedupe_key == f"charge.success:{paystack_reference(ours)}:success"
        refund = encode(
            {
                "event": "refund.failed",
                "data": {
                    "status": "failed",
                    "transaction_reference": paystack_reference(ours),
                    "refund_reference": None,
                    "amount": 20000,
                    "currency": "NGN",
                    "id": "3018284",
                },
            }
        )
        notice = adapter.parse_webhook(refund, {})
        assert notice is not None
        assert (notice.kind, notice.provider_refund_id, notice.refund_status) == (
            "refund",
            "3018284",
            RefundStatus.FAILED,
        )
    finally:
        await adapter.aclose()


@pytest.mark.parametrize(
    ("refund_reference", "distinct"), [("132013318360", "132013318360"), (None, "5000")]
)
async def test_a_refund_event_without_a_refund_id_is_a_refund_notice_of_our_transaction(
    refund_reference: str | None, distinct: str
) -> None:
    # The shape of Paystack's refund-processed.json / refund-pending.json: no ``id``.
    adapter = PaystackAdapter(_settings())
    try:
        ours = f"{new_id('pay')}_1"
        body = encode(
            {
                "event": "refund.processed",
                "data": {
                    "status": "processed",
                    "transaction_reference": paystack_reference(ours),
                    "refund_reference": refund_reference,
                    "amount": "5000",
                    "currency": "NGN",
                },
            }
        )
        notice = adapter.parse_webhook(body, {})
        assert notice is not None
        assert (notice.kind, notice.reference, notice.provider_refund_id) == ("refund", ours, None)
        assert notice.dedupe_key == f"refund.processed:{paystack_reference(ours)}:{distinct}"
    finally:
        await adapter.aclose()


# ============================================================================ harness


class Paystack:
    """tillpay with Paystack enabled, its emulator mounted, and commerce helpers."""

    def __init__(self, client: httpx.AsyncClient, emulator: PaystackEmulator, mail_dir: Path):
        self.client = client
        self.emulator = emulator
        self.accounts = Accounts(client, mail_dir)
        self.shop = Shop(self.accounts)
        self.checkout = Checkout(self.shop)

    @property
    def runtime(self) -> Any:
        return self.checkout.runtime

    async def order(self, customer: Account, *, price: int = 250000, **extra: Any) -> Any:
        return await self.shop.order(customer, price=price, currency=extra.pop("currency", "NGN"))

    async def pay(self, customer: Account, order_id: str) -> httpx.Response:
        return await self.checkout.pay(customer, order_id, provider="paystack")

    async def payment(self, customer: Account, payment_id: str) -> dict[str, Any]:
        response = await self.client.get(f"/v1/payments/{payment_id}", headers=customer.headers)
        assert response.status_code == 200, response.text
        return response.json()  # type: ignore[no-any-return]

    async def order_status(self, customer: Account, order_id: str) -> str:
        response = await self.client.get(f"/v1/orders/{order_id}", headers=customer.headers)
        return str(response.json()["status"])

    async def started(self, customer: Account) -> tuple[dict[str, Any], dict[str, Any]]:
        """An order and its Paystack payment awaiting the payer."""
        order = await self.order(customer)
        created = await self.pay(customer, order["id"])
        assert created.status_code == 201, created.text
        return order, created.json()

    async def paid(self, customer: Account) -> tuple[dict[str, Any], dict[str, Any]]:
        order, payment = await self.started(customer)
        await self.emulator.complete(reference(payment))
        await self.checkout.process_webhooks()
        payment = await self.payment(customer, payment["id"])
        assert payment["status"] == "succeeded", payment
        return order, payment

    async def stored_events(self) -> int:
        async with self.client.app.state.database.session() as session:  # type: ignore[attr-defined]
            count = await session.scalar(select(func.count()).select_from(WebhookEvent))
        return int(count or 0)


def reference(payment: dict[str, Any], attempt_no: int = 1) -> str:
    """The Paystack reference of a payment's attempt."""
    return paystack_reference(f"{payment['id']}_{attempt_no}")


@asynccontextmanager
async def paystack_app(
    make_client: ClientFactory,
    mail_dir: Path,
    *,
    emulator: PaystackEmulator | None = None,
    **overrides: Any,
) -> AsyncIterator[Paystack]:
    emulator = emulator or PaystackEmulator(SECRET)
    settings = {"paystack_secret_key": SECRET, "paystack_api_base": API_BASE, **overrides}
    async with make_client(**settings) as client:
        emulator.install(client.app)  # type: ignore[attr-defined]
        yield Paystack(client, emulator, mail_dir)


@pytest.fixture
async def ps(clean_db: None, make_client: ClientFactory, mail_dir: Path) -> AsyncIterator[Paystack]:
    async with paystack_app(make_client, mail_dir) as harness:
        yield harness


# ============================================================================ payments


async def test_hosted_page_payment_is_confirmed_by_webhook_and_marks_the_order_paid(
    ps: Paystack,
) -> None:
    customer = await ps.shop.customer()
    order, payment = await ps.started(customer)
    assert payment["status"] == "requires_action"
    url = payment["next_action"]["redirect_url"]
    assert url.startswith("https://checkout.paystack.test/")
    async with ps.emulator.client() as browser:
        assert (await browser.get(url)).status_code == 200
        paid = await browser.post(url, data={"outcome": "success"})
    assert paid.status_code == 302
    assert f"/v1/payments/{payment['id']}/return?trxref=" in paid.headers["location"]
    assert [r.status_code for r in ps.emulator.deliveries] == [200]
    assert await ps.checkout.process_webhooks() == 1
    assert await ps.order_status(customer, order["id"]) == "paid"
    state = await ps.payment(customer, payment["id"])
    assert (state["status"], state["amount_captured"]) == ("succeeded", 250000)
    async with ps.client.app.state.database.session() as session:  # type: ignore[attr-defined]
        assert await ledger.unbalanced_transactions(session) == []


async def test_initialize_carries_our_reference_ids_email_and_return_url(ps: Paystack) -> None:
    customer = await ps.shop.customer()
    order, payment = await ps.started(customer)
    path, body = ps.emulator.calls[-1]
    assert path == "/transaction/initialize"
    assert body["reference"] == reference(payment)
    assert (body["amount"], body["currency"], body["email"]) == (250000, "NGN", customer.email)
    assert body["callback_url"].endswith(f"/v1/payments/{payment['id']}/return")
    assert json.loads(body["metadata"]) == {
        "tillpay_payment_id": payment["id"],
        "tillpay_order_id": order["id"],
        "tillpay_reference": f"{payment['id']}_1",
    }
    assert payment["next_action"]["client_data"]["access_code"]


async def test_declined_payment_fails_on_the_browser_return_and_the_order_stays_payable(
    ps: Paystack,
) -> None:
    customer = await ps.shop.customer()
    order, payment = await ps.started(customer)
    async with ps.emulator.client() as browser:
        declined = await browser.post(
            payment["next_action"]["redirect_url"], data={"outcome": "failed"}
        )
    assert ps.emulator.deliveries == []  # Paystack sends no event for a failed charge
    callback = httpx.URL(declined.headers["location"])
    back = await ps.client.get(callback.raw_path.decode())  # the browser comes back
    assert back.status_code == 200
    state = await ps.payment(customer, payment["id"])
    assert state["status"] == "failed"
    assert state["attempts"][0]["error_code"] == "declined"
    assert await ps.order_status(customer, order["id"]) == "pending_payment"
    again = await ps.pay(customer, order["id"])
    assert again.status_code == 201, again.text


async def test_lost_initialize_answer_is_unknown_until_the_janitor_verifies(
    ps: Paystack,
) -> None:
    ps.emulator.auto_deliver = False  # only the janitor may find out
    ps.emulator.fail("POST", "/transaction/initialize", "timeout_after", times=None)
    customer = await ps.shop.customer()
    order = await ps.order(customer)
    created = await ps.pay(customer, order["id"])
    assert created.status_code == 503, created.text
    payment = created.json()
    assert payment["status"] == "unknown"
    # The first try reached Paystack; the retries were refused as duplicates.
    assert list(ps.emulator.transactions) == [reference(payment)]
    ps.emulator.clear_faults()
    await ps.emulator.complete(reference(payment))
    assert await janitor_pass(ps.runtime, now=utcnow() + timedelta(hours=1)) >= 1
    assert (await ps.payment(customer, payment["id"]))["status"] == "succeeded"
    assert await ps.order_status(customer, order["id"]) == "paid"


async def test_provider_5xx_leaves_the_attempt_unknown_never_failed(ps: Paystack) -> None:
    ps.emulator.fail("POST", "/transaction/initialize", "error", times=None)
    customer = await ps.shop.customer()
    order = await ps.order(customer)
    created = await ps.pay(customer, order["id"])
    assert created.status_code == 503, created.text
    ps.emulator.clear_faults()
    # Paystack has no such transaction: verify answers 404, which proves nothing yet.
    await janitor_pass(ps.runtime, now=utcnow() + timedelta(hours=1))
    assert (await ps.payment(customer, created.json()["id"]))["status"] == "unknown"


async def test_rejected_api_key_fails_the_attempt_without_a_transaction(
    clean_db: None, make_client: ClientFactory, mail_dir: Path
) -> None:
    emulator = PaystackEmulator("sk_test_" + "0" * 40)  # the integration has another key
    async with paystack_app(make_client, mail_dir, emulator=emulator) as ps:
        customer = await ps.shop.customer()
        order = await ps.order(customer)
        created = await ps.pay(customer, order["id"])
        assert created.status_code == 502, created.text
        assert created.json()["attempts"][0]["error_code"] == "paystack_auth_failed"
        assert emulator.transactions == {}


async def test_currency_paystack_does_not_take_is_refused_before_any_call(ps: Paystack) -> None:
    customer = await ps.shop.customer()
    order = await ps.order(customer, currency="EUR")
    refused = await ps.pay(customer, order["id"])
    body = assert_problem(refused, 422)
    assert body["code"] == "currency_not_supported"
    assert ps.emulator.requests == []


async def test_paystack_is_listed_with_its_currencies(ps: Paystack) -> None:
    listed = (await ps.client.get("/v1/payments/providers")).json()
    assert {"name": "paystack", "currencies": ["GHS", "KES", "NGN", "USD", "ZAR"]} in listed


@pytest.mark.parametrize(
    "change",
    [
        pytest.param({"amount": 249900}, id="amount"),
        pytest.param({"currency": "GHS"}, id="currency"),
    ],
)
async def test_charge_that_differs_from_the_order_is_flagged_and_never_fulfils(
    ps: Paystack, change: dict[str, Any]
) -> None:
    customer = await ps.shop.customer()
    order, payment = await ps.started(customer)
    await ps.emulator.complete(reference(payment), **change)
    assert await ps.checkout.process_webhooks() == 1
    state = await ps.payment(customer, payment["id"])
    assert state["needs_review"] is True
    assert state["status"] == "requires_action"
    assert state["amount_captured"] == 0
    assert await ps.order_status(customer, order["id"]) == "pending_payment"


async def test_reversed_transaction_fails_the_attempt_and_flags_it(ps: Paystack) -> None:
    customer = await ps.shop.customer()
    order, payment = await ps.started(customer)
    await ps.emulator.complete(reference(payment), "reversed")
    await ps.client.get(f"/v1/payments/{payment['id']}/return")
    state = await ps.payment(customer, payment["id"])
    assert (state["status"], state["needs_review"]) == ("failed", True)
    assert await ps.order_status(customer, order["id"]) == "pending_payment"


# ============================================================================ webhooks


async def test_same_event_twice_is_stored_and_applied_once(ps: Paystack) -> None:
    ps.emulator.auto_deliver = False
    customer = await ps.shop.customer()
    order, payment = await ps.started(customer)
    await ps.emulator.complete(reference(payment))
    answers = await ps.emulator.flush(times=2)
    assert [r.json() for r in answers] == [
        {"received": True, "duplicate": False},
        {"received": True, "duplicate": True},
    ]
    assert await ps.checkout.process_webhooks() == 1
    assert await ps.order_status(customer, order["id"]) == "paid"
    async with ps.client.app.state.database.session() as session:  # type: ignore[attr-defined]
        posted = await session.scalar(
            select(func.count())
            .select_from(LedgerTransaction)
            .where(LedgerTransaction.kind == "payment")
        )
        succeeded = await session.scalar(
            select(func.count())
            .select_from(OutboxEvent)
            .where(OutboxEvent.type == "payment.succeeded")
        )
    assert (posted, succeeded) == (1, 1)


async def test_refund_events_out_of_order_end_in_the_final_state(ps: Paystack) -> None:
    customer = await ps.shop.customer()
    order, payment = await ps.paid(customer)
    admin = await ps.accounts.admin()
    ps.emulator.auto_deliver = False
    created = await ps.client.post(
        f"/v1/payments/{payment['id']}/refunds",
        json={"amount": 100000, "reason": "requested_by_customer"},
        headers={**admin.headers, "Idempotency-Key": "refund-1"},
    )
    assert created.status_code == 201, created.text
    (refund_id,) = ps.emulator.refunds
    await ps.emulator.settle(refund_id, "processed")
    # refund.processed arrives first, then the older refund.pending.
    answers = await ps.emulator.flush(reverse=True)
    assert [a.status_code for a in answers] == [200, 200]
    assert await ps.checkout.process_webhooks() == 2
    refunds = (
        await ps.client.get(f"/v1/payments/{payment['id']}/refunds", headers=customer.headers)
    ).json()
    assert [r["status"] for r in refunds] == ["succeeded"]
    assert await ps.order_status(customer, order["id"]) == "partially_refunded"


@pytest.mark.parametrize(
    "forge",
    [
        pytest.param(
            lambda body: {
                "body": body.replace(b"250000", b"250001"),
                "signature": sign(body, SECRET),
            },
            id="tampered",
        ),
        pytest.param(lambda body: {"signature": sign(body, "sk_test_" + "9" * 40)}, id="wrong-key"),
        pytest.param(lambda body: {"signature": sign(body, PUBLIC)}, id="public-key"),
        pytest.param(lambda body: {"signature": ""}, id="missing"),
        pytest.param(lambda body: {"signature": sign(body, SECRET).upper()}, id="upper-case"),
    ],
)
async def test_forged_signatures_are_refused_with_no_state_change(ps: Paystack, forge: Any) -> None:
    ps.emulator.auto_deliver = False
    customer = await ps.shop.customer()
    order, payment = await ps.started(customer)
    event = await ps.emulator.complete(reference(payment))
    assert event is not None
    (refused,) = await ps.emulator.deliver(event, **forge(encode(event)))
    assert assert_problem(refused, 400)["code"] == "invalid_signature"
    assert await ps.stored_events() == 0
    assert await ps.checkout.process_webhooks() == 0
    assert (await ps.payment(customer, payment["id"]))["status"] == "requires_action"
    assert await ps.order_status(customer, order["id"]) == "pending_payment"


async def test_events_about_other_integrations_references_are_acknowledged_and_ignored(
    ps: Paystack,
) -> None:
    event = {
        "event": "charge.success",
        "data": {"id": 302961, "status": "success", "reference": "qTPrJoy9Bx", "amount": 10000},
    }
    (answer,) = await ps.emulator.deliver(event)
    assert answer.json() == {"received": True, "duplicate": False}
    async with ps.client.app.state.database.session() as session:  # type: ignore[attr-defined]
        statuses = list((await session.execute(select(WebhookEvent.status))).scalars())
    assert statuses == ["ignored"]
    assert await ps.checkout.process_webhooks() == 0


async def test_webhook_source_outside_the_allow_list_is_refused(
    clean_db: None, make_client: ClientFactory, mail_dir: Path
) -> None:
    emulator = PaystackEmulator(SECRET, source_ip="198.51.100.7")
    async with paystack_app(
        make_client, mail_dir, emulator=emulator, paystack_webhook_ips=list(WEBHOOK_IPS)
    ) as ps:
        customer = await ps.shop.customer()
        _, payment = await ps.started(customer)
        event = await emulator.complete(reference(payment))
        assert event is not None
        assert assert_problem(emulator.deliveries[-1], 403)["code"] == "webhook_source_refused"
        assert await ps.stored_events() == 0
        emulator.source_ip = WEBHOOK_IPS[1]
        (accepted,) = await emulator.deliver(event)
        assert accepted.status_code == 200
        assert await ps.stored_events() == 1


# ============================================================================ refunds


async def _refund(ps: Paystack, admin: Account, payment_id: str, key: str, **body: Any) -> Any:
    return await ps.client.post(
        f"/v1/payments/{payment_id}/refunds",
        json={"reason": "requested_by_customer", **body},
        headers={**admin.headers, "Idempotency-Key": key},
    )


async def test_partial_then_full_refund_settle_through_refund_events(ps: Paystack) -> None:
    customer = await ps.shop.customer()
    order, payment = await ps.paid(customer)
    admin = await ps.accounts.admin()
    partial = await _refund(ps, admin, payment["id"], "r-1", amount=100000)
    assert partial.status_code == 201, partial.text
    assert partial.json()["status"] == "pending"
    first = max(ps.emulator.refunds)
    assert ps.emulator.refunds[first].merchant_note == f"tillpay refund {partial.json()['id']}"
    await ps.emulator.settle(first, "processed")
    await ps.checkout.process_webhooks()
    assert await ps.order_status(customer, order["id"]) == "partially_refunded"
    rest = await _refund(ps, admin, payment["id"], "r-2")
    assert rest.status_code == 201, rest.text
    assert rest.json()["amount"] == 150000
    await ps.emulator.settle(max(ps.emulator.refunds), "processed")
    await ps.checkout.process_webhooks()
    assert await ps.order_status(customer, order["id"]) == "refunded"
    state = await ps.payment(customer, payment["id"])
    assert state["amount_refunded"] == 250000
    async with ps.client.app.state.database.session() as session:  # type: ignore[attr-defined]
        assert await ledger.unbalanced_transactions(session) == []


@pytest.mark.parametrize("event_ids", [True, False], ids=["with_refund_id", "without_refund_id"])
async def test_a_refund_made_in_the_paystack_dashboard_is_booked_as_external_once(
    ps: Paystack, event_ids: bool
) -> None:
    customer = await ps.shop.customer()
    order, payment = await ps.paid(customer)
    ps.emulator.auto_deliver = False
    # Paystack's refund-processed.json and refund-pending.json carry no refund id.
    ps.emulator.refund_event_ids = event_ids
    # The merchant refunds in Paystack's dashboard: its note, not tillpay's marker.
    async with ps.emulator.client() as dashboard:
        made = await dashboard.post(
            "/refund",
            json={
                "transaction": reference(payment),
                "amount": 100000,
                "merchant_note": "Refund for transaction by merchant@shop.test",
            },
            headers={"authorization": f"Bearer {SECRET}"},
        )
    assert made.status_code == 200, made.text
    await ps.emulator.settle(max(ps.emulator.refunds), "processed")
    responses = await ps.emulator.flush(times=2)
    assert {r.status_code for r in responses} == {200}
    await ps.checkout.process_webhooks()
    await assert_booked_as_external_once(
        ps.client,
        ps.client.app.state.database,  # type: ignore[attr-defined]
        admin=await ps.accounts.admin(),
        customer=customer,
        payment_id=payment["id"],
        order_id=order["id"],
        amount=100000,
    )


async def test_failed_refund_releases_the_amount(ps: Paystack) -> None:
    customer = await ps.shop.customer()
    _, payment = await ps.paid(customer)
    admin = await ps.accounts.admin()
    created = await _refund(ps, admin, payment["id"], "r-1", amount=50000)
    await ps.emulator.settle(max(ps.emulator.refunds), "failed")
    await ps.checkout.process_webhooks()
    refunds = (
        await ps.client.get(f"/v1/payments/{payment['id']}/refunds", headers=customer.headers)
    ).json()
    assert [(r["id"], r["status"]) for r in refunds] == [(created.json()["id"], "failed")]
    assert (await ps.payment(customer, payment["id"]))["amount_refund_reserved"] == 0


async def test_lost_refund_answer_is_found_again_not_refunded_twice(ps: Paystack) -> None:
    customer = await ps.shop.customer()
    order, payment = await ps.paid(customer)
    admin = await ps.accounts.admin()
    ps.emulator.fail("POST", "/refund", "timeout_after")
    created = await _refund(ps, admin, payment["id"], "r-1")
    assert created.status_code == 503, created.text
    assert created.json()["status"] == "unknown"
    await janitor_pass(ps.runtime, now=utcnow() + timedelta(hours=1))
    assert len(ps.emulator.refunds) == 1
    refunds = (
        await ps.client.get(f"/v1/payments/{payment['id']}/refunds", headers=customer.headers)
    ).json()
    assert [r["status"] for r in refunds] == ["pending"]
    await ps.emulator.settle(max(ps.emulator.refunds), "processed")
    await ps.checkout.process_webhooks()
    assert await ps.order_status(customer, order["id"]) == "refunded"


def _refund_creations(ps: Paystack) -> int:
    return sum(1 for path, _ in ps.emulator.calls if path == "/refund")


async def test_lost_refund_answer_is_found_behind_a_page_of_newer_refunds(ps: Paystack) -> None:
    """Paystack's refund list has no transaction filter: the earlier refund is found by
    paging through the refunds created since it, however many other refunds came after."""
    customer = await ps.shop.customer()
    order, payment = await ps.paid(customer)
    admin = await ps.accounts.admin()
    ps.emulator.fail("POST", "/refund", "timeout_after")
    created = await _refund(ps, admin, payment["id"], "r-1", amount=100000)
    assert created.status_code == 503, created.text
    ps.emulator.other_refunds(150)  # newer refunds push ours past the first page of 100
    await janitor_pass(ps.runtime, now=utcnow() + timedelta(hours=1))
    assert _refund_creations(ps) == 1
    refunds = (
        await ps.client.get(f"/v1/payments/{payment['id']}/refunds", headers=customer.headers)
    ).json()
    assert [r["status"] for r in refunds] == ["pending"]
    ours = [
        r for r in ps.emulator.refunds.values() if r.transaction.reference == reference(payment)
    ]
    assert [r.amount for r in ours] == [100000]
    await ps.emulator.settle(ours[0].id, "processed")
    await ps.checkout.process_webhooks()
    assert await ps.order_status(customer, order["id"]) == "partially_refunded"


async def test_refund_lookup_only_lists_refunds_created_since_the_refund(ps: Paystack) -> None:
    customer = await ps.shop.customer()
    _, payment = await ps.paid(customer)
    admin = await ps.accounts.admin()
    ps.emulator.other_refunds(500, created=utcnow() - timedelta(days=30))
    created = await _refund(ps, admin, payment["id"], "r-1")
    assert created.status_code == 201, created.text
    lookups = [r for r in ps.emulator.requests if r.startswith("GET /refund?")]
    assert len(lookups) == 1
    assert "from=" in lookups[0]
    assert "transaction=" not in lookups[0]


async def test_refund_stays_unknown_when_too_many_refunds_hide_an_earlier_try(
    ps: Paystack,
) -> None:
    """Beyond the bounded look-up tillpay cannot rule out an earlier refund: it never
    creates a second one; the refund stays unknown for a person and the janitor."""
    customer = await ps.shop.customer()
    _, payment = await ps.paid(customer)
    admin = await ps.accounts.admin()
    ps.emulator.fail("POST", "/refund", "timeout_after")
    created = await _refund(ps, admin, payment["id"], "r-1")
    assert created.status_code == 503, created.text
    ps.emulator.other_refunds(1100)
    await janitor_pass(ps.runtime, now=utcnow() + timedelta(hours=1))
    assert _refund_creations(ps) == 1
    refunds = (
        await ps.client.get(f"/v1/payments/{payment['id']}/refunds", headers=customer.headers)
    ).json()
    assert [r["status"] for r in refunds] == ["unknown"]


# ============================================================================ secrets


async def test_no_secret_or_card_data_in_logs_or_attempt_summaries(
    clean_db: None,
    make_client: ClientFactory,
    mail_dir: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    async with paystack_app(make_client, mail_dir) as ps:
        capsys.readouterr()
        customer = await ps.shop.customer()
        _, payment = await ps.started(customer)
        ps.emulator.fail("GET", "/transaction/verify/", "error")  # a logged provider failure
        await ps.emulator.complete(reference(payment))
        await ps.checkout.process_webhooks()
        await process_due_webhooks(ps.runtime)
        admin = await ps.accounts.admin()
        await _refund(ps, admin, payment["id"], "r-1")
        authorization_code = ps.emulator.transactions[reference(payment)].authorization_code
        async with ps.client.app.state.database.session() as session:  # type: ignore[attr-defined]
            summaries = json.dumps(list(await session.scalars(select(PaymentAttempt.summary))))
    output = capsys.readouterr().out
    assert "provider.call_failed" in output
    for secret in (SECRET, authorization_code, "4084084084084081", "408408"):
        assert secret not in output
        assert secret not in summaries
    assert "4081" in summaries  # the last four digits are all that is kept
