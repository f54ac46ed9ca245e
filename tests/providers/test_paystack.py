"""Paystack: the webhook signature pinned by its known answer, and the adapter driven through
tillpay's HTTP API against the wire-level emulator (tests/emulators/paystack.py)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import func, select

from tests.conftest import ClientFactory
from tests.emulators.paystack import API_BASE, WEBHOOK_IPS, PaystackEmulator, encode, sign
from tests.http.test_errors import assert_problem
from tests.providers.env import ProviderEnv
from tests.providers.external_refunds import assert_booked_as_external_once
from tillpay.events.models import OutboxEvent
from tillpay.kit.db import utcnow
from tillpay.kit.ids import new_id
from tillpay.ledger import service as ledger
from tillpay.ledger.models import LedgerTransaction
from tillpay.payments.models import PaymentAttempt, PaymentStatus, RefundStatus, WebhookEvent
from tillpay.payments.providers.paystack import PaystackAdapter
from tillpay.payments.providers.paystack_wire import (
    PAYMENT_STATUS,
    REFUND_STATUS,
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


class Env(ProviderEnv[PaystackEmulator]):
    provider = "paystack"
    order_defaults = {"price": 250000, "currency": "NGN"}

    async def settle_payment(self, payment: dict[str, Any]) -> None:
        """The payer pays on Paystack's page; ``charge.success`` is applied by the worker."""
        await self.emulator.complete(reference(payment))
        await self.checkout.process_webhooks()


def reference(payment: dict[str, Any], attempt_no: int = 1) -> str:
    """The Paystack reference of a payment's attempt."""
    return paystack_reference(f"{payment['id']}_{attempt_no}")


EnvFactory = Callable[..., AbstractAsyncContextManager[Env]]


@pytest.fixture
def make_env(make_client: ClientFactory, clean_db: None, mail_dir: Path) -> EnvFactory:
    @asynccontextmanager
    async def factory(
        *, emulator: PaystackEmulator | None = None, **overrides: Any
    ) -> AsyncIterator[Env]:
        emulator = emulator or PaystackEmulator(SECRET)
        settings = {"paystack_secret_key": SECRET, "paystack_api_base": API_BASE, **overrides}
        async with make_client(**settings) as client:
            emulator.install(client.app)  # type: ignore[attr-defined]
            yield Env(client, emulator, mail_dir)

    return factory


@pytest.fixture
async def env(make_env: EnvFactory) -> AsyncIterator[Env]:
    async with make_env() as e:
        yield e


# ============================================================================ payments


async def test_hosted_page_payment_is_confirmed_by_webhook_and_marks_the_order_paid(
    env: Env,
) -> None:
    customer = await env.shop.customer()
    _, order, payment = await env.started(customer)
    assert payment["status"] == "requires_action"
    url = payment["next_action"]["redirect_url"]
    assert url.startswith("https://checkout.paystack.test/")
    async with env.emulator.client() as browser:
        assert (await browser.get(url)).status_code == 200
        paid = await browser.post(url, data={"outcome": "success"})
    assert paid.status_code == 302
    assert f"/v1/payments/{payment['id']}/return?trxref=" in paid.headers["location"]
    assert [r.status_code for r in env.emulator.deliveries] == [200]
    assert await env.checkout.process_webhooks() == 1
    assert await env.order_status(order["id"]) == "paid"
    state = await env.payment(customer, payment["id"])
    assert (state["status"], state["amount_captured"]) == ("succeeded", 250000)
    async with env.client.app.state.database.session() as session:  # type: ignore[attr-defined]
        assert await ledger.unbalanced_transactions(session) == []


async def test_initialize_carries_our_reference_ids_email_and_return_url(env: Env) -> None:
    customer = await env.shop.customer()
    _, order, payment = await env.started(customer)
    path, body = env.emulator.calls[-1]
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
    env: Env,
) -> None:
    customer = await env.shop.customer()
    _, order, payment = await env.started(customer)
    async with env.emulator.client() as browser:
        declined = await browser.post(
            payment["next_action"]["redirect_url"], data={"outcome": "failed"}
        )
    assert env.emulator.deliveries == []  # Paystack sends no event for a failed charge
    callback = httpx.URL(declined.headers["location"])
    back = await env.client.get(callback.raw_path.decode())  # the browser comes back
    assert back.status_code == 200
    state = await env.payment(customer, payment["id"])
    assert state["status"] == "failed"
    assert state["attempts"][0]["error_code"] == "declined"
    assert await env.order_status(order["id"]) == "pending_payment"
    again = await env.pay(customer, order["id"])
    assert again.status_code == 201, again.text


async def test_lost_initialize_answer_is_unknown_until_the_janitor_verifies(
    env: Env,
) -> None:
    env.emulator.auto_deliver = False  # only the janitor may find out
    env.emulator.fail("POST", "/transaction/initialize", "timeout_after", times=None)
    customer = await env.shop.customer()
    order = await env.new_order(customer)
    created = await env.pay(customer, order["id"])
    assert created.status_code == 503, created.text
    payment = created.json()
    assert payment["status"] == "unknown"
    # The first try reached Paystack; the retries were refused as duplicates.
    assert list(env.emulator.transactions) == [reference(payment)]
    env.emulator.faults.clear()
    await env.emulator.complete(reference(payment))
    assert await janitor_pass(env.runtime, now=utcnow() + timedelta(hours=1)) >= 1
    assert (await env.payment(customer, payment["id"]))["status"] == "succeeded"
    assert await env.order_status(order["id"]) == "paid"


async def test_provider_5xx_leaves_the_attempt_unknown_never_failed(env: Env) -> None:
    env.emulator.fail("POST", "/transaction/initialize", "error", times=None)
    customer = await env.shop.customer()
    order = await env.new_order(customer)
    created = await env.pay(customer, order["id"])
    assert created.status_code == 503, created.text
    env.emulator.faults.clear()
    # Paystack has no such transaction: verify answers 404, which proves nothing yet.
    await janitor_pass(env.runtime, now=utcnow() + timedelta(hours=1))
    assert (await env.payment(customer, created.json()["id"]))["status"] == "unknown"


async def test_rejected_api_key_fails_the_attempt_without_a_transaction(
    make_env: EnvFactory,
) -> None:
    emulator = PaystackEmulator("sk_test_" + "0" * 40)  # the integration has another key
    async with make_env(emulator=emulator) as env:
        customer = await env.shop.customer()
        order = await env.new_order(customer)
        created = await env.pay(customer, order["id"])
        assert created.status_code == 502, created.text
        assert created.json()["attempts"][0]["error_code"] == "paystack_auth_failed"
        assert emulator.transactions == {}


async def test_currency_paystack_does_not_take_is_refused_before_any_call(env: Env) -> None:
    customer = await env.shop.customer()
    order = await env.new_order(customer, currency="EUR")
    refused = await env.pay(customer, order["id"])
    body = assert_problem(refused, 422)
    assert body["code"] == "currency_not_supported"
    assert env.emulator.requests == []


async def test_paystack_is_listed_with_its_currencies(env: Env) -> None:
    listed = (await env.client.get("/v1/payments/providers")).json()
    assert {"name": "paystack", "currencies": ["GHS", "KES", "NGN", "USD", "ZAR"]} in listed


@pytest.mark.parametrize(
    "change",
    [
        pytest.param({"amount": 249900}, id="amount"),
        pytest.param({"currency": "GHS"}, id="currency"),
    ],
)
async def test_charge_that_differs_from_the_order_is_flagged_and_never_fulfils(
    env: Env, change: dict[str, Any]
) -> None:
    customer = await env.shop.customer()
    _, order, payment = await env.started(customer)
    await env.emulator.complete(reference(payment), **change)
    assert await env.checkout.process_webhooks() == 1
    state = await env.payment(customer, payment["id"])
    assert state["needs_review"] is True
    assert state["status"] == "requires_action"
    assert state["amount_captured"] == 0
    assert await env.order_status(order["id"]) == "pending_payment"


async def test_reversed_transaction_fails_the_attempt_and_flags_it(env: Env) -> None:
    customer = await env.shop.customer()
    _, order, payment = await env.started(customer)
    await env.emulator.complete(reference(payment), "reversed")
    await env.client.get(f"/v1/payments/{payment['id']}/return")
    state = await env.payment(customer, payment["id"])
    assert (state["status"], state["needs_review"]) == ("failed", True)
    assert await env.order_status(order["id"]) == "pending_payment"


# ============================================================================ webhooks


async def test_same_event_twice_is_stored_and_applied_once(env: Env) -> None:
    env.emulator.auto_deliver = False
    customer = await env.shop.customer()
    _, order, payment = await env.started(customer)
    await env.emulator.complete(reference(payment))
    answers = await env.emulator.flush(times=2)
    assert [r.json() for r in answers] == [
        {"received": True, "duplicate": False},
        {"received": True, "duplicate": True},
    ]
    assert await env.checkout.process_webhooks() == 1
    assert await env.order_status(order["id"]) == "paid"
    async with env.client.app.state.database.session() as session:  # type: ignore[attr-defined]
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


async def test_refund_events_out_of_order_end_in_the_final_state(env: Env) -> None:
    customer = await env.shop.customer()
    _, order, payment = await env.paid(customer)
    admin = await env.accounts.admin()
    env.emulator.auto_deliver = False
    created = await env.client.post(
        f"/v1/payments/{payment['id']}/refunds",
        json={"amount": 100000, "reason": "requested_by_customer"},
        headers={**admin.headers, "Idempotency-Key": "refund-1"},
    )
    assert created.status_code == 201, created.text
    (refund_id,) = env.emulator.refunds
    await env.emulator.settle(refund_id, "processed")
    # refund.processed arrives first, then the older refund.pending.
    answers = await env.emulator.flush(reverse=True)
    assert [a.status_code for a in answers] == [200, 200]
    assert await env.checkout.process_webhooks() == 2
    refunds = (
        await env.client.get(f"/v1/payments/{payment['id']}/refunds", headers=customer.headers)
    ).json()
    assert [r["status"] for r in refunds] == ["succeeded"]
    assert await env.order_status(order["id"]) == "partially_refunded"


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
async def test_forged_signatures_are_refused_with_no_state_change(env: Env, forge: Any) -> None:
    env.emulator.auto_deliver = False
    customer = await env.shop.customer()
    _, order, payment = await env.started(customer)
    event = await env.emulator.complete(reference(payment))
    assert event is not None
    (refused,) = await env.emulator.deliver(event, **forge(encode(event)))
    assert assert_problem(refused, 400)["code"] == "invalid_signature"
    assert len(await env.webhook_events()) == 0
    assert await env.checkout.process_webhooks() == 0
    assert (await env.payment(customer, payment["id"]))["status"] == "requires_action"
    assert await env.order_status(order["id"]) == "pending_payment"


async def test_events_about_other_integrations_references_are_acknowledged_and_ignored(
    env: Env,
) -> None:
    event = {
        "event": "charge.success",
        "data": {"id": 302961, "status": "success", "reference": "qTPrJoy9Bx", "amount": 10000},
    }
    (answer,) = await env.emulator.deliver(event)
    assert answer.json() == {"received": True, "duplicate": False}
    async with env.client.app.state.database.session() as session:  # type: ignore[attr-defined]
        statuses = list((await session.execute(select(WebhookEvent.status))).scalars())
    assert statuses == ["ignored"]
    assert await env.checkout.process_webhooks() == 0


async def test_webhook_source_outside_the_allow_list_is_refused(make_env: EnvFactory) -> None:
    emulator = PaystackEmulator(SECRET, source_ip="198.51.100.7")
    async with make_env(emulator=emulator, paystack_webhook_ips=list(WEBHOOK_IPS)) as env:
        customer = await env.shop.customer()
        _, _, payment = await env.started(customer)
        event = await emulator.complete(reference(payment))
        assert event is not None
        assert assert_problem(emulator.deliveries[-1], 403)["code"] == "webhook_source_refused"
        assert len(await env.webhook_events()) == 0
        emulator.source_ip = WEBHOOK_IPS[1]
        (accepted,) = await emulator.deliver(event)
        assert accepted.status_code == 200
        assert len(await env.webhook_events()) == 1


# ============================================================================ refunds


async def test_partial_then_full_refund_settle_through_refund_events(env: Env) -> None:
    customer = await env.shop.customer()
    _, order, payment = await env.paid(customer)
    admin = await env.accounts.admin()
    partial = await env.refund(admin, payment["id"], key="r-1", amount=100000)
    assert partial.status_code == 201, partial.text
    assert partial.json()["status"] == "pending"
    first = max(env.emulator.refunds)
    assert env.emulator.refunds[first].merchant_note == f"tillpay refund {partial.json()['id']}"
    await env.emulator.settle(first, "processed")
    await env.checkout.process_webhooks()
    assert await env.order_status(order["id"]) == "partially_refunded"
    rest = await env.refund(admin, payment["id"], key="r-2")
    assert rest.status_code == 201, rest.text
    assert rest.json()["amount"] == 150000
    await env.emulator.settle(max(env.emulator.refunds), "processed")
    await env.checkout.process_webhooks()
    assert await env.order_status(order["id"]) == "refunded"
    state = await env.payment(customer, payment["id"])
    assert state["amount_refunded"] == 250000
    async with env.client.app.state.database.session() as session:  # type: ignore[attr-defined]
        assert await ledger.unbalanced_transactions(session) == []


@pytest.mark.parametrize("event_ids", [True, False], ids=["with_refund_id", "without_refund_id"])
async def test_a_refund_made_in_the_paystack_dashboard_is_booked_as_external_once(
    env: Env, event_ids: bool
) -> None:
    customer = await env.shop.customer()
    _, order, payment = await env.paid(customer)
    env.emulator.auto_deliver = False
    # Paystack's refund-processed.json and refund-pending.json carry no refund id.
    env.emulator.refund_event_ids = event_ids
    # The merchant refunds in Paystack's dashboard: its note, not tillpay's marker.
    async with env.emulator.client() as dashboard:
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
    await env.emulator.settle(max(env.emulator.refunds), "processed")
    responses = await env.emulator.flush(times=2)
    assert {r.status_code for r in responses} == {200}
    await env.checkout.process_webhooks()
    await assert_booked_as_external_once(
        env.client,
        env.client.app.state.database,  # type: ignore[attr-defined]
        admin=await env.accounts.admin(),
        customer=customer,
        payment_id=payment["id"],
        order_id=order["id"],
        amount=100000,
    )


async def test_failed_refund_releases_the_amount(env: Env) -> None:
    customer = await env.shop.customer()
    _, _, payment = await env.paid(customer)
    admin = await env.accounts.admin()
    created = await env.refund(admin, payment["id"], key="r-1", amount=50000)
    await env.emulator.settle(max(env.emulator.refunds), "failed")
    await env.checkout.process_webhooks()
    refunds = (
        await env.client.get(f"/v1/payments/{payment['id']}/refunds", headers=customer.headers)
    ).json()
    assert [(r["id"], r["status"]) for r in refunds] == [(created.json()["id"], "failed")]
    assert (await env.payment(customer, payment["id"]))["amount_refund_reserved"] == 0


async def test_lost_refund_answer_is_found_again_not_refunded_twice(env: Env) -> None:
    customer = await env.shop.customer()
    _, order, payment = await env.paid(customer)
    admin = await env.accounts.admin()
    env.emulator.fail("POST", "/refund", "timeout_after")
    created = await env.refund(admin, payment["id"], key="r-1")
    assert created.status_code == 503, created.text
    assert created.json()["status"] == "unknown"
    await janitor_pass(env.runtime, now=utcnow() + timedelta(hours=1))
    assert len(env.emulator.refunds) == 1
    refunds = (
        await env.client.get(f"/v1/payments/{payment['id']}/refunds", headers=customer.headers)
    ).json()
    assert [r["status"] for r in refunds] == ["pending"]
    await env.emulator.settle(max(env.emulator.refunds), "processed")
    await env.checkout.process_webhooks()
    assert await env.order_status(order["id"]) == "refunded"


def _refund_creations(env: Env) -> int:
    return sum(1 for path, _ in env.emulator.calls if path == "/refund")


async def test_lost_refund_answer_is_found_behind_a_page_of_newer_refunds(env: Env) -> None:
    """Paystack's refund list has no transaction filter: the earlier refund is found by
    paging through the refunds created since it, however many other refunds came after."""
    customer = await env.shop.customer()
    _, order, payment = await env.paid(customer)
    admin = await env.accounts.admin()
    env.emulator.fail("POST", "/refund", "timeout_after")
    created = await env.refund(admin, payment["id"], key="r-1", amount=100000)
    assert created.status_code == 503, created.text
    env.emulator.other_refunds(150)  # newer refunds push ours past the first page of 100
    await janitor_pass(env.runtime, now=utcnow() + timedelta(hours=1))
    assert _refund_creations(env) == 1
    refunds = (
        await env.client.get(f"/v1/payments/{payment['id']}/refunds", headers=customer.headers)
    ).json()
    assert [r["status"] for r in refunds] == ["pending"]
    ours = [
        r for r in env.emulator.refunds.values() if r.transaction.reference == reference(payment)
    ]
    assert [r.amount for r in ours] == [100000]
    await env.emulator.settle(ours[0].id, "processed")
    await env.checkout.process_webhooks()
    assert await env.order_status(order["id"]) == "partially_refunded"


async def test_refund_lookup_only_lists_refunds_created_since_the_refund(env: Env) -> None:
    customer = await env.shop.customer()
    _, _, payment = await env.paid(customer)
    admin = await env.accounts.admin()
    env.emulator.other_refunds(500, created=utcnow() - timedelta(days=30))
    created = await env.refund(admin, payment["id"], key="r-1")
    assert created.status_code == 201, created.text
    lookups = [r for r in env.emulator.requests if r.startswith("GET /refund?")]
    assert len(lookups) == 1
    assert "from=" in lookups[0]
    assert "transaction=" not in lookups[0]


async def test_refund_stays_unknown_when_too_many_refunds_hide_an_earlier_try(
    env: Env,
) -> None:
    """Beyond the bounded look-up tillpay cannot rule out an earlier refund: it never
    creates a second one; the refund stays unknown for a person and the janitor."""
    customer = await env.shop.customer()
    _, _, payment = await env.paid(customer)
    admin = await env.accounts.admin()
    env.emulator.fail("POST", "/refund", "timeout_after")
    created = await env.refund(admin, payment["id"], key="r-1")
    assert created.status_code == 503, created.text
    env.emulator.other_refunds(1100)
    await janitor_pass(env.runtime, now=utcnow() + timedelta(hours=1))
    assert _refund_creations(env) == 1
    refunds = (
        await env.client.get(f"/v1/payments/{payment['id']}/refunds", headers=customer.headers)
    ).json()
    assert [r["status"] for r in refunds] == ["unknown"]


# ============================================================================ secrets


async def test_no_secret_or_card_data_in_logs_or_attempt_summaries(
    make_env: EnvFactory,
    capsys: pytest.CaptureFixture[str],
) -> None:
    async with make_env() as env:
        capsys.readouterr()
        customer = await env.shop.customer()
        _, _, payment = await env.started(customer)
        env.emulator.fail("GET", "/transaction/verify/.+", "error")  # a logged provider failure
        await env.emulator.complete(reference(payment))
        await env.checkout.process_webhooks()
        await process_due_webhooks(env.runtime)
        admin = await env.accounts.admin()
        await env.refund(admin, payment["id"], key="r-1")
        authorization_code = env.emulator.transactions[reference(payment)].authorization_code
        async with env.client.app.state.database.session() as session:  # type: ignore[attr-defined]
            summaries = json.dumps(list(await session.scalars(select(PaymentAttempt.summary))))
    output = capsys.readouterr().out
    assert "provider.call_failed" in output
    for secret in (SECRET, authorization_code, "4084084084084081", "408408"):
        assert secret not in output
        assert secret not in summaries
    assert "4081" in summaries  # the last four digits are all that is kept
