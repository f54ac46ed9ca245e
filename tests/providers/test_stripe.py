"""Stripe: signature routines pinned by known answers, amount conversion and status
mapping as specifications, and the adapter driven through tillpay's HTTP API against the
wire-level emulator (tests/emulators/stripe.py)."""

from __future__ import annotations

import json
import re
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import select, update

from tests.conftest import ClientFactory
from tests.emulators.stripe import API_HOST, StripeEmulator, sign
from tests.http.test_errors import assert_problem
from tests.providers.env import ProviderEnv
from tests.providers.external_refunds import assert_booked_as_external_once
from tillpay.events.models import OutboxEvent
from tillpay.kit.db import utcnow
from tillpay.ledger import service as ledger
from tillpay.payments.models import (
    PaymentAttempt,
    PaymentStatus,
    RefundStatus,
    WebhookEvent,
)
from tillpay.payments.providers.stripe import StripeAdapter, checkout_lifetime
from tillpay.payments.providers.stripe_wire import (
    PAYMENT_INTENT_STATUS,
    REFUND_STATUS,
    from_stripe_amount,
    intent_state,
    refund_state,
    session_state,
    to_stripe_amount,
    verify_signature,
)
from tillpay.payments.sync import janitor_pass
from tillpay.settings import Settings

KEY = "sk_test_51TillpayEmulatorKey0000000000"
WHSEC = "whsec_tillpayEmulatorSigningSecret000"
PK = "pk_test_51TillpayEmulatorPublishable00"

# providers.md §2.5 / §6
KAT_BODY = b'{"id":"evt_test_webhook","object":"event"}'
KAT_T = 1700000000
KAT_V1 = "d95c6b7477fbd7e9f90b1b0ef5f9c7ac25abca5382460e0d988c2b2a5b71b990"
KAT_V1_NEW = "a205fddac80d1399f0fd8556b976133f791b29797319edad0b299fcda7300bce"


@pytest.fixture
def frozen_clock(monkeypatch: pytest.MonkeyPatch) -> Callable[[float], None]:
    """Set the wall clock the verifier (ours and the SDK's) reads."""

    def freeze(at: float) -> None:
        monkeypatch.setattr(time, "time", lambda: at)

    return freeze


# ============================================================================ known answers


def test_the_reference_signature_verifies_under_its_secret(
    frozen_clock: Callable[[float], None],
) -> None:
    frozen_clock(KAT_T + 1)
    assert verify_signature(KAT_BODY, f"t={KAT_T},v1={KAT_V1}", ["whsec_test_secret"])


def test_a_rotation_header_verifies_under_either_secret(
    frozen_clock: Callable[[float], None],
) -> None:
    frozen_clock(KAT_T + 1)
    header = f"t={KAT_T},v1={KAT_V1},v1={KAT_V1_NEW}"
    assert verify_signature(KAT_BODY, header, ["whsec_test_secret"])
    assert verify_signature(KAT_BODY, header, ["whsec_new"])
    assert not verify_signature(KAT_BODY, header, ["whsec_other"])


def test_any_configured_secret_may_have_signed(frozen_clock: Callable[[float], None]) -> None:
    frozen_clock(KAT_T + 1)
    header = f"t={KAT_T},v1={KAT_V1_NEW}"
    assert verify_signature(KAT_BODY, header, ["whsec_test_secret", "whsec_new"])


def test_the_emulator_signs_exactly_as_the_reference() -> None:
    assert sign(KAT_BODY, ["whsec_test_secret"], KAT_T) == f"t={KAT_T},v1={KAT_V1}"
    assert sign(KAT_BODY, ["whsec_test_secret", "whsec_new"], KAT_T) == (
        f"t={KAT_T},v1={KAT_V1},v1={KAT_V1_NEW}"
    )


BAD_HEADERS: dict[str, tuple[bytes, str | None]] = {
    "one byte changed": (KAT_BODY.replace(b"evt_", b"evt-"), f"t={KAT_T},v1={KAT_V1}"),
    "re-serialized with spaces": (
        json.dumps(json.loads(KAT_BODY)).encode(),
        f"t={KAT_T},v1={KAT_V1}",
    ),
    "header missing": (KAT_BODY, None),
    "empty header": (KAT_BODY, ""),
    "signature upper-cased": (KAT_BODY, f"t={KAT_T},v1={KAT_V1.upper()}"),
    "signature truncated": (KAT_BODY, f"t={KAT_T},v1={KAT_V1[:-2]}"),
    "v0 only": (KAT_BODY, f"t={KAT_T},v0={KAT_V1}"),
    "timestamp changed": (KAT_BODY, f"t={KAT_T + 1},v1={KAT_V1}"),
    "no timestamp": (KAT_BODY, f"v1={KAT_V1}"),
    "garbage": (KAT_BODY, "t=abc,v1=zz"),
}


@pytest.mark.parametrize("variant", sorted(BAD_HEADERS))
def test_a_webhook_not_signed_exactly_is_rejected(
    variant: str, frozen_clock: Callable[[float], None]
) -> None:
    frozen_clock(KAT_T + 1)
    body, header = BAD_HEADERS[variant]
    assert not verify_signature(body, header, ["whsec_test_secret"])


def test_a_signature_older_than_300_seconds_is_rejected(
    frozen_clock: Callable[[float], None],
) -> None:
    header = f"t={KAT_T},v1={KAT_V1}"
    frozen_clock(KAT_T + 300)
    assert verify_signature(KAT_BODY, header, ["whsec_test_secret"])
    frozen_clock(KAT_T + 301)
    assert not verify_signature(KAT_BODY, header, ["whsec_test_secret"])


def test_a_signature_more_than_300_seconds_ahead_is_rejected(
    frozen_clock: Callable[[float], None],
) -> None:
    header = f"t={KAT_T},v1={KAT_V1}"
    frozen_clock(KAT_T - 300)
    assert verify_signature(KAT_BODY, header, ["whsec_test_secret"])
    frozen_clock(KAT_T - 301)
    assert not verify_signature(KAT_BODY, header, ["whsec_test_secret"])


def test_without_a_secret_nothing_verifies(frozen_clock: Callable[[float], None]) -> None:
    frozen_clock(KAT_T + 1)
    assert not verify_signature(KAT_BODY, f"t={KAT_T},v1={KAT_V1}", [])


# ============================================================================ amounts


@pytest.mark.parametrize(
    ("currency", "ours", "stripes"),
    [
        ("USD", 1999, 1999),
        ("EUR", 50, 50),
        ("JPY", 5000, 5000),  # zero-decimal: never times 100
        ("KRW", 12000, 12000),
        ("ISK", 1000, 100000),  # whole krónur, sent with two decimals
        ("UGX", 5000, 500000),
        ("MGA", 123400, 1234),  # ISO has two decimals, Stripe none
        ("KWD", 12340, 12340),  # three decimals, last digit 0
        ("HUF", 17500, 17500),  # two decimals in the API (payouts aside)
    ],
)
def test_amounts_cross_to_stripe_units_exactly(currency: str, ours: int, stripes: int) -> None:
    assert to_stripe_amount(ours, currency) == stripes
    assert from_stripe_amount(stripes, currency) == ours


@pytest.mark.parametrize(
    ("currency", "ours"), [("MGA", 150), ("KWD", 12345), ("IQD", 1000), ("BTC", 1)]
)
def test_amounts_stripe_cannot_express_are_refused(currency: str, ours: int) -> None:
    with pytest.raises(ValueError, match="Stripe"):
        to_stripe_amount(ours, currency)


@pytest.mark.parametrize(("currency", "stripes"), [("ISK", 150), ("UGX", 1), ("MGA", True)])
def test_stripe_amounts_tillpay_cannot_express_read_as_unknown(currency: str, stripes: Any) -> None:
    assert from_stripe_amount(stripes, currency) is None


# Stripe's unit per currency, in tillpay minor units: what an amount must be a multiple of.
GRANULARITY = {"USD": 1, "EUR": 1, "JPY": 1, "BIF": 1, "ISK": 1, "UGX": 1, "MGA": 100, "KWD": 10}


@given(st.sampled_from(sorted(GRANULARITY)), st.integers(min_value=0, max_value=10**12))
def test_conversion_round_trips_and_refuses_only_fractions_of_stripes_unit(
    currency: str, amount: int
) -> None:
    if amount % GRANULARITY[currency]:
        with pytest.raises(ValueError, match="Stripe"):
            to_stripe_amount(amount, currency)
        return
    sent = to_stripe_amount(amount, currency)
    assert from_stripe_amount(sent, currency) == amount


def _settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "environment": "test",
        "secret_key": "x" * 40,
        "stripe_secret_key": KEY,
        "stripe_webhook_secrets": [WHSEC],
        **overrides,
    }
    return Settings(**values)


def test_supported_amounts_respect_stripe_minimums_and_eight_digits() -> None:
    adapter = StripeAdapter(_settings(stripe_currencies=["USD", "JPY", "KWD"]))
    assert adapter.supports("USD", 50)
    assert not adapter.supports("USD", 49)
    assert not adapter.supports("JPY", 49)
    assert adapter.supports("USD", 99_999_999)
    assert not adapter.supports("USD", 100_000_000)
    assert not adapter.supports("KWD", 12345)
    assert not adapter.supports("EUR", 1000)  # not configured


def test_currencies_stripe_cannot_take_are_never_offered() -> None:
    adapter = StripeAdapter(_settings(stripe_currencies=["usd", "IQD", "BTC", "JPY"]))
    assert adapter.currencies() == ["JPY", "USD"]


def test_webhook_secrets_from_a_file_may_list_one_per_line() -> None:
    settings = _settings(stripe_webhook_secrets="whsec_a\nwhsec_b, whsec_c\n")
    assert [s.get_secret_value() for s in settings.stripe_webhook_secrets] == [
        "whsec_a",
        "whsec_b",
        "whsec_c",
    ]


# ============================================================================ status mapping


def _intent(status: str, **extra: Any) -> dict[str, Any]:
    return {
        "id": "pi_1",
        "object": "payment_intent",
        "status": status,
        "amount": 1000,
        "amount_received": 1000 if status == "succeeded" else 0,
        "currency": "usd",
        "metadata": {"tillpay_reference": "pay_x_1"},
        **extra,
    }


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("requires_payment_method", PaymentStatus.REQUIRES_ACTION),
        ("requires_confirmation", PaymentStatus.REQUIRES_ACTION),
        ("requires_action", PaymentStatus.REQUIRES_ACTION),
        ("processing", PaymentStatus.PROCESSING),
        ("requires_capture", PaymentStatus.PROCESSING),
        ("succeeded", PaymentStatus.SUCCEEDED),
        ("canceled", PaymentStatus.CANCELED),
        ("something_new", PaymentStatus.UNKNOWN),
    ],
)
def test_every_payment_intent_status_is_mapped(status: str, expected: PaymentStatus) -> None:
    assert intent_state(_intent(status)).status is expected


def test_the_mapping_table_covers_every_documented_payment_intent_status() -> None:
    documented = {
        "requires_payment_method",
        "requires_confirmation",
        "requires_action",
        "processing",
        "requires_capture",
        "succeeded",
        "canceled",
    }
    assert set(PAYMENT_INTENT_STATUS) == documented
    assert set(REFUND_STATUS) == {"pending", "requires_action", "succeeded", "failed", "canceled"}


def test_a_declined_confirmation_fails_the_intent_with_the_decline_code() -> None:
    error = {"type": "card_error", "code": "card_declined", "decline_code": "insufficient_funds"}
    state = intent_state(_intent("requires_payment_method", last_payment_error=error))
    assert (state.status, state.decline_code) == (PaymentStatus.FAILED, "insufficient_funds")


def test_a_succeeded_intent_reports_the_amount_received() -> None:
    state = intent_state(_intent("succeeded", amount_received=400))
    assert (state.amount, state.currency, state.reference) == (400, "USD", "pay_x_1")


def _session(status: str, payment_status: str, intent: Any = None) -> dict[str, Any]:
    return {
        "id": "cs_test_1",
        "object": "checkout.session",
        "status": status,
        "payment_status": payment_status,
        "amount_total": 1000,
        "currency": "jpy",
        "client_reference_id": "pay_x_1",
        "metadata": {},
        "payment_intent": intent,
        "url": "https://checkout.stripe.test/c/pay/cs_test_1",
    }


@pytest.mark.parametrize(
    ("status", "payment_status", "intent", "expected"),
    [
        ("open", "unpaid", None, PaymentStatus.REQUIRES_ACTION),
        ("complete", "paid", "pi_1", PaymentStatus.SUCCEEDED),
        ("complete", "no_payment_required", None, PaymentStatus.SUCCEEDED),
        ("complete", "unpaid", "pi_1", PaymentStatus.PROCESSING),
        ("complete", "unpaid", _intent("processing"), PaymentStatus.PROCESSING),
        (
            "complete",
            "unpaid",
            _intent("requires_payment_method", last_payment_error={"code": "x"}),
            PaymentStatus.FAILED,
        ),
        ("expired", "unpaid", None, PaymentStatus.EXPIRED),
    ],
)
def test_every_checkout_session_state_is_mapped(
    status: str, payment_status: str, intent: Any, expected: PaymentStatus
) -> None:
    state = session_state(_session(status, payment_status, intent))
    assert state.status is expected
    assert (state.amount, state.currency, state.reference) == (1000, "JPY", "pay_x_1")
    assert (state.redirect_url is not None) is (expected is PaymentStatus.REQUIRES_ACTION)


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("pending", RefundStatus.PENDING),
        ("requires_action", RefundStatus.PENDING),
        ("succeeded", RefundStatus.SUCCEEDED),
        ("failed", RefundStatus.FAILED),
        ("canceled", RefundStatus.FAILED),
    ],
)
def test_every_refund_status_is_mapped(status: str, expected: RefundStatus) -> None:
    refund = {"id": "re_1", "object": "refund", "status": status, "amount": 500, "currency": "usd"}
    assert refund_state(refund).status is expected


def _event(type_: str, obj: dict[str, Any], **extra: Any) -> bytes:
    body = {"id": "evt_1", "object": "event", "type": type_, "livemode": False}
    return json.dumps({**body, "data": {"object": obj}, **extra}).encode()


def test_a_stored_event_parses_the_same_without_headers() -> None:
    adapter = StripeAdapter(_settings())
    body = _event("payment_intent.succeeded", _intent("succeeded"))
    with_headers = adapter.parse_webhook(body, {"stripe-signature": "t=1,v1=x"})
    assert with_headers == adapter.parse_webhook(body, {})
    assert with_headers is not None
    assert (with_headers.dedupe_key, with_headers.kind, with_headers.reference) == (
        "evt_1",
        "payment",
        "pay_x_1",
    )


@pytest.mark.parametrize(
    "body",
    [
        _event("payment_intent.succeeded", {**_intent("succeeded"), "metadata": {}}),
        _event("payment_intent.succeeded", _intent("succeeded"), livemode=True),
        _event("customer.created", {"id": "cus_1", "object": "customer"}),
        _event("charge.refunded", {"id": "ch_1", "object": "charge"}),
    ],
    ids=["not ours", "live event in test mode", "unsubscribed type", "charge without refunds"],
)
def test_events_tillpay_does_not_act_on_are_ignored(body: bytes) -> None:
    assert StripeAdapter(_settings()).parse_webhook(body, {}) is None


def test_a_charge_refunded_event_points_at_its_newest_refund() -> None:
    refunds = [
        {"id": "re_old", "object": "refund", "status": "succeeded", "amount": 1, "created": 1},
        {"id": "re_new", "object": "refund", "status": "pending", "amount": 2, "created": 2},
    ]
    charge = {"id": "ch_1", "object": "charge", "refunds": {"data": refunds}}
    notice = StripeAdapter(_settings()).parse_webhook(_event("charge.refunded", charge), {})
    assert notice is not None
    assert (notice.kind, notice.provider_refund_id, notice.refund_status) == (
        "refund",
        "re_new",
        RefundStatus.PENDING,
    )


@pytest.mark.parametrize(
    "body",
    [
        b'{"object": "v2.core.event", "id": "evt_1"}',
        _event("payment_intent.succeeded", {"id": "cs_1", "object": "checkout.session"}),
        b"[]",
    ],
)
def test_malformed_events_are_refused(body: bytes) -> None:
    with pytest.raises((ValueError, KeyError, TypeError)):
        StripeAdapter(_settings()).parse_webhook(body, {})


# ============================================================================ through HTTP


class Env(ProviderEnv[StripeEmulator]):
    provider = "stripe"

    async def settle_payment(self, payment: dict[str, Any]) -> None:
        await self.payer_submits(payment, "pm_card_visa")
        await self.settled()

    async def payer_submits(self, payment: dict[str, Any], method: str) -> httpx.Response:
        """The payer on Stripe's hosted page (the redirect tillpay handed out)."""
        async with self.emulator.browser() as browser:
            return await browser.post(
                payment["next_action"]["redirect_url"], data={"payment_method": method}
            )

    async def elements_confirm(self, payment: dict[str, Any], method: str) -> httpx.Response:
        """Stripe.js in the shop's page, with what tillpay handed the shop: the publishable
        key and the PaymentIntent's client secret."""
        assert payment["next_action"]["type"] == "client_sdk", payment
        client_data = payment["next_action"]["client_data"]
        async with self.emulator.browser() as browser:
            return await browser.post(
                f"https://{API_HOST}/v1/payment_intents/{client_data['payment_intent']}/confirm",
                data={
                    "payment_method": method,
                    "key": client_data["publishable_key"],
                    "client_secret": client_data["client_secret"],
                },
            )

    async def stripe_api(self, path: str, **form: str) -> httpx.Response:
        """The merchant acting in Stripe directly (dashboard or API)."""
        async with self.emulator.browser() as client:
            return await client.post(
                f"https://{API_HOST}{path}", data=form, headers={"authorization": f"Bearer {KEY}"}
            )

    async def settled(self) -> int:
        """Stripe delivers its queued events; tillpay's worker processes them."""
        statuses = await self.emulator.deliver()
        assert set(statuses) <= {200}, statuses
        return await self.checkout.process_webhooks()


EnvFactory = Callable[..., AbstractAsyncContextManager[Env]]


@pytest.fixture
def make_env(make_client: ClientFactory, clean_db: None, mail_dir: Path) -> EnvFactory:
    @asynccontextmanager
    async def factory(
        *, api_key: str = KEY, secrets: list[str] | None = None, **overrides: Any
    ) -> AsyncIterator[Env]:
        emulator = StripeEmulator(
            api_key=api_key, webhook_secrets=secrets or [WHSEC], publishable_key=PK
        )
        settings: dict[str, Any] = {
            "stripe_secret_key": KEY,
            "stripe_webhook_secrets": [WHSEC],
            "stripe_publishable_key": PK,
            "stripe_api_base": f"https://{API_HOST}",
            "stripe_max_network_retries": 1,
            **overrides,
        }
        async with make_client(**settings) as client:
            emulator.attach(client.app)  # type: ignore[attr-defined]
            yield Env(client, emulator, mail_dir)

    return factory


@pytest.fixture
async def env(make_env: EnvFactory) -> AsyncIterator[Env]:
    async with make_env() as e:
        yield e


@pytest.fixture
async def elements(make_env: EnvFactory) -> AsyncIterator[Env]:
    async with make_env(stripe_flow="payment_intent") as e:
        yield e


async def test_a_checkout_payment_is_paid_once_the_webhook_is_confirmed(env: Env) -> None:
    customer, order, payment = await env.started(price=2500)
    assert payment["status"] == "requires_action"
    reference = f"{payment['id']}_1"
    session = env.emulator.by_reference(reference)
    assert payment["next_action"]["redirect_url"] == session["url"]
    [create] = env.emulator.calls("POST", "/v1/checkout/sessions")
    assert create.headers["idempotency-key"] == f"tillpay:{reference}:checkout_session:create"
    assert create.headers["stripe-version"]
    price = create.params["line_items"][0]["price_data"]
    assert (price["unit_amount"], price["currency"]) == ("2500", "usd")
    assert create.params["metadata"]["tillpay_reference"] == reference
    assert create.params["payment_intent_data"]["metadata"]["tillpay_reference"] == reference
    assert create.params["success_url"].endswith(f"/v1/payments/{payment['id']}/return")

    paid = await env.payer_submits(payment, "pm_card_visa")
    assert paid.status_code == 303
    reads_before = len(env.emulator.calls("GET", f"/v1/checkout/sessions/{session['id']}"))
    assert await env.settled() == 2  # payment_intent.succeeded, checkout.session.completed
    reads = len(env.emulator.calls("GET", f"/v1/checkout/sessions/{session['id']}"))
    assert reads > reads_before, "a webhook is only a hint: Stripe is read before acting"

    assert (await env.order(customer, order["id"]))["status"] == "paid"
    state = await env.payment(customer, payment["id"])
    assert (state["status"], state["amount_captured"], state["needs_review"]) == (
        "succeeded",
        2500,
        False,
    )
    async with env.database.session() as session_:
        assert await ledger.unbalanced_transactions(session_) == []


async def test_the_browser_return_confirms_a_paid_session_before_any_webhook(env: Env) -> None:
    customer, order, payment = await env.started()
    await env.payer_submits(payment, "pm_card_visa")
    env.emulator.drop_events()
    back = await env.client.get(f"/v1/payments/{payment['id']}/return?status=paid")
    assert back.status_code == 200  # no shop return_url: tillpay's own thank-you page
    assert (await env.payment(customer, payment["id"]))["status"] == "succeeded"
    assert (await env.order(customer, order["id"]))["status"] == "paid"


async def test_a_declined_card_leaves_the_session_open_for_another_card(env: Env) -> None:
    customer, order, payment = await env.started()
    declined = await env.payer_submits(payment, "pm_card_chargeDeclined")
    assert declined.status_code == 402
    assert await env.settled() == 1  # payment_intent.payment_failed
    state = await env.payment(customer, payment["id"])
    assert state["status"] == "requires_action"
    summary = (await env.attempt(payment["id"])).summary["webhook"]
    assert summary["decline_code"] == "generic_decline"

    await env.payer_submits(payment, "pm_card_visa")
    await env.settled()
    assert (await env.order(customer, order["id"]))["status"] == "paid"


async def test_a_declined_elements_payment_fails_and_the_order_stays_payable(
    elements: Env,
) -> None:
    customer, order, payment = await elements.started()
    assert payment["status"] == "requires_action"
    client_data = payment["next_action"]["client_data"]
    assert client_data["flow"] == "payment_intent"
    assert client_data["publishable_key"] == PK
    assert client_data["client_secret"].startswith(f"{client_data['payment_intent']}_secret_")
    [create] = elements.emulator.calls("POST", "/v1/payment_intents")
    assert create.headers["idempotency-key"] == f"tillpay:{payment['id']}_1:payment_intent:create"

    declined = await elements.elements_confirm(payment, "pm_card_chargeDeclined")
    assert declined.status_code == 402
    assert declined.json()["error"]["decline_code"] == "generic_decline"
    await elements.settled()
    state = await elements.payment(customer, payment["id"])
    assert state["status"] == "failed"
    assert state["attempts"][0]["error_code"] == "generic_decline"
    assert (await elements.order(customer, order["id"]))["status"] == "pending_payment"
    again = await elements.pay(customer, order["id"])
    assert again.status_code == 201, again.text


async def test_a_confirmed_elements_payment_marks_the_order_paid(elements: Env) -> None:
    customer, order, payment = await elements.started(price=1800)
    confirmed = await elements.elements_confirm(payment, "pm_card_visa")
    assert confirmed.status_code == 200
    assert confirmed.json()["status"] == "succeeded"
    await elements.settled()
    assert (await elements.order(customer, order["id"]))["status"] == "paid"
    assert (await elements.payment(customer, payment["id"]))["amount_captured"] == 1800


async def test_an_expired_session_expires_the_payment(env: Env) -> None:
    customer, order, payment = await env.started()
    session = env.emulator.by_reference(f"{payment['id']}_1")
    expired = await env.stripe_api(f"/v1/checkout/sessions/{session['id']}/expire")
    assert expired.status_code == 200
    await env.settled()
    assert (await env.payment(customer, payment["id"]))["status"] == "expired"
    assert (await env.order(customer, order["id"]))["status"] == "pending_payment"


async def test_a_cancelled_payment_intent_cancels_the_payment(elements: Env) -> None:
    customer, _, payment = await elements.started()
    client_data = payment["next_action"]["client_data"]
    cancelled = await elements.stripe_api(
        f"/v1/payment_intents/{client_data['payment_intent']}/cancel"
    )
    assert cancelled.status_code == 200
    await elements.settled()
    assert (await elements.payment(customer, payment["id"]))["status"] == "canceled"


@pytest.mark.parametrize(("clears", "expected"), [(True, "succeeded"), (False, "failed")])
async def test_a_delayed_payment_is_processing_until_it_clears_or_bounces(
    env: Env, clears: bool, expected: str
) -> None:
    customer, _, payment = await env.started()
    submitted = await env.payer_submits(payment, "pm_delayed")
    assert submitted.status_code == 303
    await env.settled()  # payment_intent.processing, checkout.session.completed (unpaid)
    assert (await env.payment(customer, payment["id"]))["status"] == "processing"
    session = env.emulator.by_reference(f"{payment['id']}_1")
    env.emulator.settle(session["payment_intent"], succeeded=clears)
    await env.settled()  # checkout.session.async_payment_succeeded / _failed
    assert (await env.payment(customer, payment["id"]))["status"] == expected


# ---------------------------------------------------------------------------- outages


def _lifetime_at_stripe(env: Env) -> float:
    """How far ahead of Stripe's clock the one session's ``expires_at`` was when created."""
    (session,) = env.emulator.sessions.values()
    return float(session["expires_at"] - session["created"])


async def test_a_checkout_session_with_the_default_lifetime_is_accepted_by_stripe(
    env: Env,
) -> None:
    """Stripe judges ``expires_at`` on its own, slightly later clock: a value computed as
    exactly 30 minutes from tillpay's clock is already too close."""
    _, _, payment = await env.started()
    assert payment["next_action"]["type"] == "redirect"
    assert _lifetime_at_stripe(env) >= 1800


async def test_a_checkout_session_is_accepted_when_stripes_clock_runs_ahead(env: Env) -> None:
    env.emulator.clock_offset = 30.0
    await env.started()
    assert len(env.emulator.sessions) == 1


async def test_the_longest_checkout_lifetime_is_accepted_when_stripes_clock_runs_behind(
    make_env: EnvFactory,
) -> None:
    async with make_env(stripe_checkout_expires_seconds=86400) as env:
        env.emulator.clock_offset = -30.0
        await env.started()
        assert _lifetime_at_stripe(env) <= 86400


async def test_sdk_retries_resend_the_same_expiry_and_stripe_still_accepts_it(
    make_env: EnvFactory,
) -> None:
    """Retries carry the first try's ``expires_at`` unchanged (same idempotency key); the
    margin covers the time until the last retry arrives."""
    async with make_env(stripe_max_network_retries=2) as env:
        customer = await env.shop.customer()
        order = await env.shop.order(customer)
        env.emulator.fail("POST", "/v1/checkout/sessions", "error", times=2)
        # The two retries arrive after their time-outs and back-offs, on Stripe's clock.
        env.emulator.clock_offset = 2 * (10 + 5)
        created = await env.pay(customer, order["id"])
        assert created.status_code == 201, created.text
        sent = {c.params["expires_at"] for c in env.emulator.calls("POST", "/v1/checkout/sessions")}
        assert len(sent) == 1
        assert len(env.emulator.sessions) == 1


@pytest.mark.parametrize(
    ("requested", "timeout", "retries", "expected"),
    [
        pytest.param(1800, 10.0, 2, 1800 + 60 + 30, id="minimum-gets-the-margin"),
        pytest.param(1800, 80.0, 5, 1800 + 60 + 425, id="margin-grows-with-retries"),
        pytest.param(1800, 10.0, 0, 1800 + 60, id="no-retries-clock-only"),
        pytest.param(7200, 10.0, 2, 7200, id="inside-the-window-unchanged"),
        pytest.param(86400, 10.0, 2, 86400 - 60, id="maximum-kept-under-24h"),
    ],
)
def test_checkout_lifetime_keeps_a_margin_inside_stripes_window(
    requested: int, timeout: float, retries: int, expected: int
) -> None:
    assert checkout_lifetime(requested, timeout=timeout, retries=retries) == expected


async def test_a_timed_out_create_is_retried_with_the_same_key_into_one_session(
    env: Env,
) -> None:
    customer = await env.shop.customer()
    order = await env.shop.order(customer)
    env.emulator.fail("POST", "/v1/checkout/sessions", "timeout_after")
    created = await env.pay(customer, order["id"])
    assert created.status_code == 201, created.text
    first, retry = env.emulator.calls("POST", "/v1/checkout/sessions")
    assert first.headers["idempotency-key"] == retry.headers["idempotency-key"]
    assert retry.replayed
    assert len(env.emulator.sessions) == 1


async def test_a_lost_create_answer_is_unknown_until_the_janitor_finds_the_intent(
    elements: Env,
) -> None:
    customer = await elements.shop.customer()
    order = await elements.shop.order(customer)
    elements.emulator.fail("POST", "/v1/payment_intents", "timeout_after", times=2)  # try + retry
    created = await elements.pay(customer, order["id"])
    assert created.status_code == 503, created.text
    payment = created.json()
    assert payment["status"] == "unknown"
    assert len(elements.emulator.intents) == 1, "the retry reused the idempotency key"

    await janitor_pass(elements.checkout.runtime, now=utcnow() + timedelta(hours=1))
    assert elements.emulator.calls("GET", "/v1/payment_intents/search")
    state = await elements.payment(customer, payment["id"])
    assert state["status"] == "requires_action"
    intent = elements.emulator.by_reference(f"{payment['id']}_1")
    assert (await elements.attempt(payment["id"])).provider_object_id == intent["id"]


async def test_a_create_that_never_reached_stripe_fails_once_an_hour_shows_nothing(
    env: Env,
) -> None:
    customer = await env.shop.customer()
    order = await env.shop.order(customer)
    env.emulator.fail("POST", "/v1/checkout/sessions", "unreachable", times=2)
    created = await env.pay(customer, order["id"])
    assert created.status_code == 503
    payment = created.json()
    assert env.emulator.sessions == {}

    rt = env.checkout.runtime
    await janitor_pass(rt, now=utcnow() + timedelta(hours=1))
    assert (await env.payment(customer, payment["id"]))["status"] == "unknown"

    async with env.database.session() as session, session.begin():
        await session.execute(
            update(PaymentAttempt)
            .where(PaymentAttempt.payment_id == payment["id"])
            .values(created_at=utcnow() - timedelta(hours=2))
        )
    await janitor_pass(rt, now=utcnow() + timedelta(days=1))
    state = await env.payment(customer, payment["id"])
    assert (state["status"], state["attempts"][0]["error_code"]) == ("failed", "not_created")
    again = await env.pay(customer, order["id"])
    assert again.status_code == 201, again.text


async def test_server_errors_on_create_leave_the_outcome_unknown(env: Env) -> None:
    customer = await env.shop.customer()
    order = await env.shop.order(customer)
    env.emulator.fail("POST", "/v1/checkout/sessions", "error", times=2)
    created = await env.pay(customer, order["id"])
    assert created.status_code == 503
    assert created.json()["status"] == "unknown"
    assert len(env.emulator.calls("POST", "/v1/checkout/sessions")) == 2


async def test_a_refused_api_key_is_a_provider_error_not_an_unknown(
    make_env: EnvFactory,
) -> None:
    async with make_env(api_key="sk_test_someOtherAccount") as env:
        customer = await env.shop.customer()
        order = await env.shop.order(customer)
        created = await env.pay(customer, order["id"])
        assert created.status_code == 502
        assert created.json()["status"] == "failed"
        assert len(env.emulator.calls("POST", "/v1/checkout/sessions")) == 1, "no retry"


async def test_a_webhook_waits_while_stripe_cannot_be_read(env: Env) -> None:
    customer, order, payment = await env.started()
    await env.payer_submits(payment, "pm_card_visa")
    session = env.emulator.by_reference(f"{payment['id']}_1")
    env.emulator.fail("GET", f"/v1/checkout/sessions/{session['id']}", "error", times=4)
    await env.settled()
    assert (await env.payment(customer, payment["id"]))["status"] == "requires_action"
    assert {(e.status, e.attempts) for e in await env.webhook_events(with_ignored=False)} == {
        ("pending", 1)
    }

    async with env.database.session() as db, db.begin():
        await db.execute(update(WebhookEvent).values(next_attempt_at=utcnow()))
    assert await env.checkout.process_webhooks() == 2
    assert (await env.order(customer, order["id"]))["status"] == "paid"


# ---------------------------------------------------------------------------- delivery


async def test_each_event_is_stored_and_applied_once_however_often_it_arrives(env: Env) -> None:
    customer, order, payment = await env.started()
    await env.payer_submits(payment, "pm_card_visa")
    statuses = await env.emulator.deliver(twice=True)
    assert set(statuses) == {200}
    events = await env.webhook_events(with_ignored=False)
    assert len(events) == 2
    assert {e.dedupe_key for e in events} == {
        e.body["id"]
        for e, _ in env.emulator.sent
        if e.body["type"] in ("payment_intent.succeeded", "checkout.session.completed")
    }
    await env.checkout.process_webhooks()
    assert (await env.order(customer, order["id"]))["status"] == "paid"
    async with env.database.session() as db:
        succeeded = await db.execute(
            select(OutboxEvent).where(
                OutboxEvent.type == "payment.succeeded", OutboxEvent.subject_id == payment["id"]
            )
        )
        assert len(succeeded.scalars().all()) == 1


async def test_a_redelivered_event_is_acknowledged_as_a_duplicate(env: Env) -> None:
    _, _, payment = await env.started()
    await env.payer_submits(payment, "pm_card_visa")
    [event] = [e for e in env.emulator.events if e.body["type"] == "payment_intent.succeeded"]
    first = await env.emulator.post(event.raw, env.emulator.signed(event))
    again = await env.emulator.post(event.raw, env.emulator.signed(event))
    assert first.json() == {"received": True, "duplicate": False}
    assert again.json() == {"received": True, "duplicate": True}


async def test_events_out_of_order_never_undo_a_success(env: Env) -> None:
    customer, order, payment = await env.started()
    await env.payer_submits(payment, "pm_card_chargeDeclined")
    await env.payer_submits(payment, "pm_card_visa")
    # The success arrives first, the earlier decline last.
    assert set(await env.emulator.deliver(reverse=True)) == {200}
    await env.checkout.process_webhooks()
    state = await env.payment(customer, payment["id"])
    assert (state["status"], state["attempts"][0]["status"]) == ("succeeded", "succeeded")
    assert (await env.order(customer, order["id"]))["status"] == "paid"


async def test_events_for_objects_tillpay_did_not_create_are_acknowledged_and_ignored(
    env: Env,
) -> None:
    foreign = await env.stripe_api(
        "/v1/payment_intents", amount="700", currency="usd", **{"metadata[source]": "pos"}
    )
    assert foreign.status_code == 200
    assert set(await env.emulator.deliver()) == {200}
    stored = await env.webhook_events()
    assert stored
    assert {e.status for e in stored} == {"ignored"}
    assert await env.checkout.process_webhooks() == 0


# ---------------------------------------------------------------------------- signatures


@pytest.mark.parametrize("forgery", ["tampered", "wrong secret", "stale", "future", "unsigned"])
async def test_a_forged_webhook_is_rejected_and_changes_nothing(env: Env, forgery: str) -> None:
    customer, order, payment = await env.started()
    await env.payer_submits(payment, "pm_card_visa")
    [event] = [e for e in env.emulator.events if e.body["type"] == "checkout.session.completed"]
    raw, now = event.raw, int(time.time())
    header: str | None = sign(raw, [WHSEC], now)
    if forgery == "tampered":
        raw = raw.replace(b'"livemode": false', b'"livemode": false ', 1)
    elif forgery == "wrong secret":
        header = sign(raw, ["whsec_notTheEndpointSecret"], now)
    elif forgery == "stale":
        header = sign(raw, [WHSEC], now - 310)
    elif forgery == "future":
        header = sign(raw, [WHSEC], now + 310)
    else:
        header = None
    headers = {"content-type": "application/json"}
    if header is not None:
        headers["stripe-signature"] = header
    response = await env.emulator.post(raw, headers)
    assert_problem(response, 400)
    assert await env.webhook_events(with_ignored=False) == []
    assert await env.checkout.process_webhooks() == 0
    assert (await env.payment(customer, payment["id"]))["status"] == "requires_action"
    assert (await env.order(customer, order["id"]))["status"] == "pending_payment"


async def test_during_rotation_either_secret_is_accepted(make_env: EnvFactory) -> None:
    # Stripe signs with the rolled secret only; tillpay still lists the old one too.
    async with make_env(
        secrets=["whsec_rolledSecret"], stripe_webhook_secrets=[WHSEC, "whsec_rolledSecret"]
    ) as env:
        customer, order, payment = await env.started()
        await env.payer_submits(payment, "pm_card_visa")
        await env.settled()
        assert (await env.order(customer, order["id"]))["status"] == "paid"


# ---------------------------------------------------------------------------- amounts


@pytest.mark.parametrize("tamper", ["amount_total", "currency"])
async def test_a_session_that_does_not_match_the_order_is_flagged_not_paid(
    env: Env, tamper: str
) -> None:
    customer, order, payment = await env.started(price=2500)
    session = env.emulator.by_reference(f"{payment['id']}_1")
    session[tamper] = 100 if tamper == "amount_total" else "eur"
    await env.payer_submits(payment, "pm_card_visa")
    await env.settled()
    state = await env.payment(customer, payment["id"])
    assert state["needs_review"] is True
    assert state["status"] != "succeeded"
    assert state["amount_captured"] == 0
    assert (await env.order(customer, order["id"]))["status"] == "pending_payment"


@pytest.mark.parametrize(
    ("currency", "price", "sent"), [("JPY", 5000, "5000"), ("ISK", 1500, "150000")]
)
async def test_special_currencies_are_charged_in_stripe_units(
    make_env: EnvFactory, currency: str, price: int, sent: str
) -> None:
    async with make_env(stripe_currencies=["USD", currency]) as env:
        customer, _, payment = await env.started(price=price, currency=currency)
        [create] = env.emulator.calls("POST", "/v1/checkout/sessions")
        price_data = create.params["line_items"][0]["price_data"]
        assert (price_data["unit_amount"], price_data["currency"]) == (sent, currency.lower())
        await env.payer_submits(payment, "pm_card_visa")
        await env.settled()
        state = await env.payment(customer, payment["id"])
        assert (state["status"], state["amount_captured"], state["needs_review"]) == (
            "succeeded",
            price,
            False,
        )


@pytest.mark.parametrize(("currency", "price"), [("NGN", 5000), ("USD", 49)])
async def test_what_stripe_cannot_charge_is_refused_before_any_call(
    env: Env, currency: str, price: int
) -> None:
    customer = await env.shop.customer()
    order = await env.shop.order(customer, price=price, currency=currency)
    refused = await env.pay(customer, order["id"])
    assert_problem(refused, 422)
    assert env.emulator.requests == []


async def test_stripe_is_listed_with_its_currencies(env: Env) -> None:
    listed = (await env.client.get("/v1/payments/providers")).json()
    stripe_entry = next(p for p in listed if p["name"] == "stripe")
    assert "USD" in stripe_entry["currencies"]
    assert "JPY" in stripe_entry["currencies"]


# ---------------------------------------------------------------------------- refunds


async def test_a_partial_then_a_full_refund(env: Env) -> None:
    customer, order, payment = await env.paid(price=10000, stock=2)
    admin = await env.shop.accounts.admin()
    partial = await env.refund(admin, payment["id"], amount=4000)
    assert partial.status_code == 201, partial.text
    assert partial.json()["status"] == "succeeded"
    [stripe_refund] = env.emulator.refunds.values()
    session = env.emulator.by_reference(f"{payment['id']}_1")
    assert (stripe_refund["amount"], stripe_refund["payment_intent"]) == (
        4000,
        session["payment_intent"],
    )
    [call] = env.emulator.calls("POST", "/v1/refunds")
    assert call.headers["idempotency-key"] == f"tillpay:{partial.json()['id']}:refund"
    assert (await env.order(customer, order["id"]))["status"] == "partially_refunded"

    rest = await env.refund(admin, payment["id"])
    assert rest.status_code == 201, rest.text
    assert rest.json()["amount"] == 6000
    assert (await env.order(customer, order["id"]))["status"] == "refunded"
    assert sum(r["amount"] for r in env.emulator.refunds.values()) == 10000
    # Both refund.created are stored and re-read; charge.refunded without refunds is not.
    assert set(await env.emulator.deliver()) == {200}
    assert await env.checkout.process_webhooks() == 2
    refund_events = [
        e for e in await env.webhook_events(with_ignored=False) if "refund" in e.event_type
    ]
    assert [(e.event_type, e.status) for e in refund_events] == [
        ("refund.created", "processed"),
        ("refund.created", "processed"),
    ]
    assert (await env.payment(customer, payment["id"]))["amount_refunded"] == 10000
    async with env.database.session() as db:
        assert await ledger.unbalanced_transactions(db) == []


@pytest.mark.parametrize(("succeeds", "expected"), [(True, "succeeded"), (False, "failed")])
async def test_a_pending_refund_is_settled_by_its_webhook(
    env: Env, succeeds: bool, expected: str
) -> None:
    customer, _, payment = await env.paid(price=3000)
    admin = await env.shop.accounts.admin()
    env.emulator.refund_outcome = "pending"
    created = await env.refund(admin, payment["id"], amount=1000)
    assert created.status_code == 201, created.text
    assert created.json()["status"] == "pending"
    [stripe_refund] = env.emulator.refunds.values()
    env.emulator.settle_refund(stripe_refund["id"], succeeded=succeeds)
    await env.settled()
    [refund] = (
        await env.client.get(f"/v1/payments/{payment['id']}/refunds", headers=admin.headers)
    ).json()
    assert refund["status"] == expected
    state = await env.payment(customer, payment["id"])
    assert state["amount_refunded"] == (1000 if succeeds else 0)
    assert state["amount_refund_reserved"] == (1000 if succeeds else 0)


async def test_a_refund_made_in_the_stripe_dashboard_is_booked_as_external(
    elements: Env,
) -> None:
    customer, order, payment = await elements.started(price=3000)
    await elements.elements_confirm(payment, "pm_card_visa")
    await elements.settled()
    intent = payment["next_action"]["client_data"]["payment_intent"]
    made = await elements.stripe_api("/v1/refunds", payment_intent=intent, amount="1000")
    assert made.status_code == 200, made.text
    await elements.settled()
    assert {e.status for e in await elements.webhook_events(with_ignored=False)} == {"processed"}
    admin = await elements.shop.accounts.admin()
    [booked] = (
        await elements.client.get(f"/v1/payments/{payment['id']}/refunds", headers=admin.headers)
    ).json()
    assert (booked["external"], booked["status"], booked["amount"]) == (True, "succeeded", 1000)
    state = await elements.order(customer, order["id"])
    assert (state["status"], state["refunded_amount"]) == ("partially_refunded", 1000)
    async with elements.database.session() as db:
        assert await ledger.unbalanced_transactions(db) == []


async def test_a_dashboard_refund_of_a_checkout_payment_is_booked_as_external_once(
    env: Env,
) -> None:
    # Stripe's refund names only the PaymentIntent (and charge); tillpay stored the
    # Checkout Session id, and a dashboard refund carries none of tillpay's metadata.
    customer, order, payment = await env.paid(price=3000)
    attempt = await env.attempt(payment["id"])
    assert (attempt.provider_object_id or "").startswith("cs_")
    intent = env.emulator.by_reference(f"{payment['id']}_1")["payment_intent"]
    made = await env.stripe_api("/v1/refunds", payment_intent=intent, amount="1000")
    assert made.status_code == 200, made.text
    statuses = await env.emulator.deliver(twice=True)
    assert set(statuses) == {200}, statuses
    await env.checkout.process_webhooks()
    await assert_booked_as_external_once(
        env.client,
        env.database,
        admin=await env.shop.accounts.admin(),
        customer=customer,
        payment_id=payment["id"],
        order_id=order["id"],
        amount=1000,
    )


# ---------------------------------------------------------------------------- secrets


async def test_no_secret_or_card_data_reaches_logs_or_attempt_summaries(
    capsys: pytest.CaptureFixture[str],
    make_env: EnvFactory,
) -> None:
    # The app is built inside the test so that its log stream is the captured stdout.
    async with make_env(stripe_flow="payment_intent") as env:
        capsys.readouterr()
        customer, _, payment = await env.started()
        await env.elements_confirm(payment, "pm_card_chargeDeclined")
        await env.settled()
        again = (await env.pay(customer, payment["order_id"])).json()
        await env.elements_confirm(again, "pm_card_visa")
        forged = await env.emulator.post(
            b"{}", {"content-type": "application/json", "stripe-signature": f"t=1,v1={WHSEC}"}
        )
        assert forged.status_code == 400
        await env.settled()
        admin = await env.shop.accounts.admin()
        refunded = await env.refund(admin, again["id"], amount=500)
        assert refunded.json()["status"] == "succeeded"
        async with env.database.session() as db:
            summaries = json.dumps(
                [a.summary for a in (await db.execute(select(PaymentAttempt))).scalars()]
            )
        output = capsys.readouterr().out
    assert "webhook.signature_invalid" in output, "the log stream was captured"
    client_secrets = [p["next_action"]["client_data"]["client_secret"] for p in (payment, again)]
    for needle in (KEY, WHSEC, *client_secrets, "4242424242424242", "4242 4242"):
        assert needle not in output
        assert needle not in summaries
    assert re.search(r"sk_(test|live)_[A-Za-z0-9]{6}", output) is None
