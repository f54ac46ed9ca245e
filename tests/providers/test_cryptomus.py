"""Cryptomus: signature routines pinned by known answers, and the adapter driven through
tillpay's HTTP API against the wire-level emulator (tests/emulators/cryptomus.py)."""

from __future__ import annotations

import base64
import hashlib
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
from sqlalchemy import select

from tests.conftest import ClientFactory
from tests.emulators.cryptomus import API_HOST, CryptomusEmulator, md5_sign, php_encode
from tests.http.test_errors import assert_problem
from tests.providers.env import ProviderEnv
from tests.providers.external_refunds import assert_booked_as_external_once
from tillpay.audit.models import AuditEvent
from tillpay.events.models import OutboxEvent
from tillpay.kit.db import utcnow
from tillpay.kit.outbound import ProviderError
from tillpay.ledger import service as ledger
from tillpay.payments.models import PaymentStatus, RefundStatus
from tillpay.payments.providers.cryptomus import (
    PAYMENT_STATUS,
    CryptomusAdapter,
    php_json,
    request_sign,
    verify_webhook_body,
    webhook_sign,
)
from tillpay.payments.sync import janitor_pass
from tillpay.settings import ConfigurationError, Settings

# Cryptomus's published samples (copied from shared/reference/samples; `_sources` says
# where each came from), kept in the repository so the tests need nothing beside it.
SAMPLES = json.loads((Path(__file__).parent / "cryptomus_samples.json").read_text(encoding="utf-8"))
MERCHANT = "8b03432e-385b-4670-8d06-064591096795"
KEY = "cmPaymentKey-" + "k" * 40
WALLET = "TDD97yguPESTpcrJMqU6h2ozZbibv4Vaqm"


# ============================================================================ known answers


def test_request_sign_matches_the_reference_vector() -> None:
    body = b'{"uuid":"x"}'
    assert base64.b64encode(body) == b"eyJ1dWlkIjoieCJ9"
    assert request_sign(body, "uK3yP4ymentKey") == "568a9bed03b5b02f53c100cb4a6aff70"


def test_request_sign_of_an_empty_body_is_md5_of_the_key() -> None:
    assert request_sign(b"", "uK3yP4ymentKey") == "25a58d07041033259964afdadc295990"
    assert request_sign(b"", "uK3yP4ymentKey") == hashlib.md5(b"uK3yP4ymentKey").hexdigest()  # noqa: S324


KAT_DATA = {
    "type": "payment",
    "uuid": "62f88b36-a9d5-4fa6-aa26-e040c3dbf26d",
    "order_id": "ord-1",
    "amount": "10.00",
    "currency": "USD",
    "status": "paid",
    "is_final": True,
    "additional_data": "https://example.com/x Привет",
}


def test_webhook_encoding_escapes_slashes_and_keeps_unicode_like_php() -> None:
    assert '"additional_data":"https:\\/\\/example.com\\/x Привет"' in php_json(KAT_DATA)
    assert webhook_sign(KAT_DATA, "test_api_key") == "99d0d354470749192caf781ff35d600c"


def test_webhook_sign_of_the_official_sample_matches_the_reference_vector() -> None:
    sample = dict(SAMPLES["webhook_payment_paid"])
    del sample["sign"]
    assert webhook_sign(sample, "test_api_key") == "03323ee0a2b94af6b374bfa0b0d7c642"


def test_php_encoding_escapes_line_and_paragraph_separators() -> None:
    assert php_json({"a": "x\u2028y\u2029"}) == '{"a":"x\\u2028y\\u2029"}'


def _signed(data: dict[str, Any], key: str = "test_api_key") -> dict[str, Any]:
    return {**data, "sign": webhook_sign(data, key)}


def test_a_webhook_signed_over_the_php_encoding_verifies() -> None:
    raw = php_encode(_signed(KAT_DATA)).encode()
    assert b"\\/" in raw
    assert verify_webhook_body(raw, "test_api_key")


def test_the_signature_covers_the_values_not_the_formatting() -> None:
    # Unescaped slashes and spaces: the same data, so the same signature.
    raw = json.dumps(_signed(KAT_DATA), ensure_ascii=True, indent=1).encode()
    assert verify_webhook_body(raw, "test_api_key")


def _bad_variants() -> dict[str, bytes]:
    good = _signed(KAT_DATA)
    sign = good["sign"]
    unescaped = json.dumps(KAT_DATA, ensure_ascii=False, separators=(",", ":")).encode()
    naive = hashlib.md5(base64.b64encode(unescaped) + b"test_api_key").hexdigest()  # noqa: S324
    return {
        "value changed": php_encode({**good, "amount": "11.00"}).encode(),
        "field added": php_encode({**good, "extra": "1"}).encode(),
        "other key": php_encode(_signed(KAT_DATA, "other_key")).encode(),
        "sign missing": php_encode(KAT_DATA).encode(),
        "sign upper-cased": php_encode({**good, "sign": sign.upper()}).encode(),
        "sign truncated": php_encode({**good, "sign": sign[:-1]}).encode(),
        "sign not a string": php_encode({**good, "sign": 1}).encode(),
        "sign non-ascii": php_encode({**good, "sign": "é" * 32}).encode(),
        "without slash escaping": php_encode({**KAT_DATA, "sign": naive}).encode(),
        "raw body hashed": php_encode(
            {**KAT_DATA, "sign": md5_sign(php_encode(KAT_DATA).encode() + b" ", "test_api_key")}
        ).encode(),
        "not json": b"sign=" + sign.encode(),
        "a list": b"[]",
        "lone surrogate": b'{"a":"\\ud800","sign":"' + sign.encode() + b'"}',
    }


@pytest.mark.parametrize("variant", list(_bad_variants()))
def test_a_webhook_that_is_not_exactly_signed_is_rejected(variant: str) -> None:
    assert not verify_webhook_body(_bad_variants()[variant], "test_api_key")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=10,
)


@given(st.dictionaries(st.text(max_size=8), json_values, max_size=5))
def test_the_encoding_agrees_with_a_character_by_character_php_encoder(
    data: dict[str, Any],
) -> None:
    assert php_json(data) == php_encode(data)


# ============================================================================ adapter units


def _settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "environment": "test",
        "secret_key": "s" * 40,
        "cryptomus_merchant_id": MERCHANT,
        "cryptomus_payment_api_key": KEY,
        **overrides,
    }
    return Settings(**values)


def test_every_documented_status_is_mapped_explicitly() -> None:
    documented = {
        "check",
        "confirm_check",
        "process",
        "paid",
        "paid_over",
        "wrong_amount",
        "wrong_amount_waiting",
        "cancel",
        "fail",
        "system_fail",
        "locked",
        "refund_process",
        "refund_fail",
        "refund_paid",
    }
    assert set(PAYMENT_STATUS) == documented


@pytest.mark.parametrize("status", ["paid_over", "wrong_amount", "locked", "refund_paid"])
def test_outcomes_a_person_must_judge_are_never_a_plain_success(status: str) -> None:
    _, review = PAYMENT_STATUS[status]
    assert review is not None


def _webhook(**fields: Any) -> bytes:
    data = {**SAMPLES["webhook_payment_paid"], **fields}
    del data["sign"]
    return php_encode(_signed(data, KEY)).encode()


def test_a_paid_webhook_that_is_not_final_is_only_processing() -> None:
    adapter = CryptomusAdapter(_settings())
    notice = adapter.parse_webhook(_webhook(is_final=False), {})
    assert notice is not None
    assert notice.status is PaymentStatus.PROCESSING


def test_webhooks_dedupe_on_uuid_and_status_from_the_body_alone() -> None:
    adapter = CryptomusAdapter(_settings())
    paid = adapter.parse_webhook(_webhook(), {})
    again = adapter.parse_webhook(_webhook(txid="other"), {})
    process = adapter.parse_webhook(_webhook(status="process"), {})
    assert paid is not None
    assert again is not None
    assert process is not None
    assert paid.dedupe_key == again.dedupe_key == f"{paid.provider_object_id}:paid"
    assert process.dedupe_key != paid.dedupe_key
    assert paid.reference == "97a75bf8eda5cca41ba9d2e104840fcd"


def test_refund_webhooks_are_refund_notices_keyed_by_the_invoice() -> None:
    adapter = CryptomusAdapter(_settings())
    notice = adapter.parse_webhook(_webhook(status="refund_paid"), {})
    assert notice is not None
    assert notice.kind == "refund"
    assert notice.refund_status is RefundStatus.SUCCEEDED
    assert notice.provider_refund_id == SAMPLES["webhook_payment_paid"]["uuid"]


def test_payout_webhooks_are_ignored() -> None:
    adapter = CryptomusAdapter(_settings())
    body = dict(SAMPLES["webhook_payout_paid"])
    assert adapter.parse_webhook(json.dumps(body).encode(), {}) is None


def test_without_an_allow_list_every_source_is_allowed() -> None:
    assert CryptomusAdapter(_settings()).allowed_source("203.0.113.9")


@pytest.mark.parametrize(
    ("ip", "allowed"),
    [
        ("91.227.144.54", True),
        ("::ffff:91.227.144.54", True),
        ("91.227.144.55", False),
        ("2001:db8::1", False),
        ("unknown", False),
    ],
)
def test_the_allow_list_admits_only_configured_sources(ip: str, allowed: bool) -> None:
    adapter = CryptomusAdapter(_settings(cryptomus_webhook_ips=["91.227.144.54/32"]))
    assert adapter.allowed_source(ip) is allowed


@pytest.mark.parametrize(
    "overrides",
    [{"cryptomus_currencies": ["USD", "XYZ"]}, {"cryptomus_webhook_ips": ["not-an-ip"]}],
)
def test_bad_cryptomus_settings_stop_the_start(overrides: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        CryptomusAdapter(_settings(**overrides))


def test_only_configured_currencies_and_positive_amounts_are_supported() -> None:
    adapter = CryptomusAdapter(_settings(cryptomus_currencies=["USD"]))
    assert adapter.currencies() == ["USD"]
    assert adapter.supports("USD", 1)
    assert not adapter.supports("USD", 0)
    assert not adapter.supports("EUR", 100)


# ============================================================================ through HTTP


class Env(ProviderEnv[CryptomusEmulator]):
    provider = "cryptomus"

    @property
    def adapter(self) -> CryptomusAdapter:
        adapter = self.checkout.runtime.providers.get("cryptomus")
        assert isinstance(adapter, CryptomusAdapter)
        return adapter

    async def settle_payment(self, payment: dict[str, Any]) -> None:
        """The payer pays the invoice in full; its webhook is applied by the worker."""
        await self.emulator.control(f"{payment['id']}_1", "paid")
        await self.checkout.process_webhooks()

    async def post_webhook(self, body: bytes) -> httpx.Response:
        return await self.client.post(
            "/v1/webhooks/cryptomus", content=body, headers={"content-type": "application/json"}
        )


EnvFactory = Callable[..., AbstractAsyncContextManager[Env]]


@pytest.fixture
def make_env(make_client: ClientFactory, clean_db: None, mail_dir: Path) -> EnvFactory:
    @asynccontextmanager
    async def factory(source_ip: str = "91.227.144.54", **overrides: Any) -> AsyncIterator[Env]:
        emulator = CryptomusEmulator(merchant=MERCHANT, payment_key=KEY)
        settings: dict[str, Any] = {
            "cryptomus_merchant_id": MERCHANT,
            "cryptomus_payment_api_key": KEY,
            "cryptomus_api_base": f"https://{API_HOST}",
            **overrides,
        }
        async with make_client(**settings) as client:
            emulator.attach(client.app, source_ip=source_ip)  # type: ignore[attr-defined]
            yield Env(client, emulator, mail_dir)

    return factory


@pytest.fixture
async def env(make_env: EnvFactory) -> AsyncIterator[Env]:
    async with make_env() as e:
        yield e


async def test_a_paid_invoice_marks_the_order_paid_after_re_reading_it(env: Env) -> None:
    customer, order, payment = await env.started(price=2500)
    assert payment["status"] == "requires_action"
    invoice = env.emulator.invoice(f"{payment['id']}_1")
    assert (
        payment["next_action"]["redirect_url"] == f"https://pay.cryptomus.test/pay/{invoice.uuid}"
    )
    sent = json.loads(env.emulator.calls[0][1])
    assert (sent["amount"], sent["currency"], sent["order_id"]) == (
        "25.00",
        "USD",
        invoice.order_id,
    )
    assert sent["url_callback"].endswith("/v1/webhooks/cryptomus")

    # Unicode and slashes in the webhook exercise the PHP re-encoding for real.
    paid = await env.emulator.control(
        invoice.order_id, "paid", additional_data="https://shop.example/ß/Привет\u2028"
    )
    assert paid.status_code == 200
    body, status = env.emulator.deliveries[-1]
    assert status == 200
    assert body["additional_data"] == "https://shop.example/ß/Привет\u2028"
    assert await env.checkout.process_webhooks() == 1

    assert (await env.order(customer, order["id"]))["status"] == "paid"
    state = await env.payment(customer, payment["id"])
    assert (state["status"], state["amount_captured"], state["needs_review"]) == (
        "succeeded",
        2500,
        False,
    )
    info_calls = [path for path, _ in env.emulator.calls if path == "/v1/payment/info"]
    assert info_calls, "the webhook must be confirmed through invoice info"
    summary = (await env.attempt(payment["id"])).summary["webhook"]
    assert summary["payer_amount"] == "25.00000000"
    assert summary["payment_amount"] == "25.00000000"
    assert summary["merchant_amount"] == "24.50000000"
    async with env.client.app.state.database.session() as session:  # type: ignore[attr-defined]
        assert await ledger.unbalanced_transactions(session) == []


async def test_a_failed_invoice_fails_the_payment_and_a_new_one_can_start(env: Env) -> None:
    customer, order, payment = await env.started()
    await env.emulator.control(f"{payment['id']}_1", "fail")
    await env.checkout.process_webhooks()
    state = await env.payment(customer, payment["id"])
    assert state["status"] == "failed"
    assert state["attempts"][0]["error_code"] == "fail"
    assert (await env.order(customer, order["id"]))["status"] == "pending_payment"
    again = await env.pay(customer, order["id"])
    assert again.status_code == 201, again.text
    assert len(env.emulator.invoices) == 2


async def test_a_cancelled_invoice_expires_the_payment(env: Env) -> None:
    customer, _, payment = await env.started()
    await env.emulator.control(f"{payment['id']}_1", "cancel")
    await env.checkout.process_webhooks()
    assert (await env.payment(customer, payment["id"]))["status"] == "expired"


async def test_a_lost_create_answer_is_unknown_until_the_janitor_finds_the_invoice(
    env: Env,
) -> None:
    customer = await env.shop.customer()
    order = await env.shop.order(customer, price=1200)
    env.emulator.fail(
        "POST", "/v1/payment", "timeout_after", times=3
    )  # the first try and both retries
    created = await env.pay(customer, order["id"])
    assert created.status_code == 503, created.text
    payment = created.json()
    assert payment["status"] == "unknown"
    reference = f"{payment['id']}_1"
    assert len(env.emulator.invoices) == 1, "retries reuse the invoice of the same order_id"

    await env.emulator.control(reference, "paid", webhook="none")
    await janitor_pass(env.checkout.runtime, now=utcnow() + timedelta(hours=1))
    state = await env.payment(customer, payment["id"])
    assert (state["status"], state["amount_captured"]) == ("succeeded", 1200)
    assert (await env.order(customer, order["id"]))["status"] == "paid"


async def test_a_webhook_waits_while_invoice_info_is_unavailable(env: Env) -> None:
    customer, _, payment = await env.started()
    await env.emulator.control(f"{payment['id']}_1", "paid")
    env.emulator.fail("POST", "/v1/payment/info", "error", times=3)
    await env.checkout.process_webhooks()
    assert (await env.payment(customer, payment["id"]))["status"] == "requires_action"
    [event] = await env.webhook_events()
    assert (event.status, event.attempts) == ("pending", 1)


async def test_a_duplicate_webhook_is_stored_and_applied_once(env: Env) -> None:
    customer, order, payment = await env.started()
    await env.emulator.control(f"{payment['id']}_1", "paid", webhook="twice")
    assert [status for _, status in env.emulator.deliveries] == [200, 200]
    assert len(await env.webhook_events()) == 1
    assert await env.checkout.process_webhooks() == 1
    assert (await env.order(customer, order["id"]))["status"] == "paid"
    async with env.client.app.state.database.session() as session:  # type: ignore[attr-defined]
        succeeded = await session.execute(
            select(OutboxEvent).where(
                OutboxEvent.type == "payment.succeeded", OutboxEvent.subject_id == payment["id"]
            )
        )
        assert len(succeeded.scalars().all()) == 1


async def test_an_earlier_status_arriving_last_changes_nothing(env: Env) -> None:
    customer, order, payment = await env.started()
    reference = f"{payment['id']}_1"
    await env.emulator.control(reference, "confirm_check", webhook="hold")
    await env.emulator.control(reference, "paid", webhook="hold")
    assert await env.emulator.deliver_held(reverse=True) == [200, 200]
    assert [b["status"] for b, _ in env.emulator.deliveries] == ["paid", "confirm_check"]
    assert await env.checkout.process_webhooks() == 2
    state = await env.payment(customer, payment["id"])
    assert state["status"] == "succeeded"
    assert state["attempts"][0]["provider_status"] == "paid"
    assert (await env.order(customer, order["id"]))["status"] == "paid"


async def test_a_signed_paid_webhook_is_not_believed_without_the_invoice_saying_so(
    env: Env,
) -> None:
    customer, _, payment = await env.started()
    invoice = env.emulator.invoice(f"{payment['id']}_1")
    forged = invoice.webhook() | {"status": "paid", "is_final": True, "payment_amount": "15"}
    forged["sign"] = md5_sign(php_encode(forged).encode(), KEY)
    response = await env.post_webhook(php_encode(forged).encode())
    assert response.status_code == 200
    await env.checkout.process_webhooks()
    assert (await env.payment(customer, payment["id"]))["status"] == "requires_action"


def _tamper(body: dict[str, Any], how: str) -> bytes:
    if how == "amount changed after signing":
        return php_encode({**body, "amount": "1.00"}).encode()
    if how == "signed with another key":
        data = {k: v for k, v in body.items() if k != "sign"}
        return php_encode({**data, "sign": md5_sign(php_encode(data).encode(), "wrong")}).encode()
    return php_encode({k: v for k, v in body.items() if k != "sign"}).encode()


@pytest.mark.parametrize(
    "how", ["amount changed after signing", "signed with another key", "sign removed"]
)
async def test_a_badly_signed_webhook_is_refused_and_changes_nothing(env: Env, how: str) -> None:
    customer, _, payment = await env.started()
    await env.emulator.control(f"{payment['id']}_1", "paid", webhook="hold")
    [(_, body)] = env.emulator.held
    response = await env.post_webhook(_tamper(json.loads(body), how))
    assert_problem(response, 400)
    assert response.json()["code"] == "invalid_signature"
    assert await env.webhook_events() == []
    assert await env.checkout.process_webhooks() == 0
    assert (await env.payment(customer, payment["id"]))["status"] == "requires_action"


async def _review_audits(env: Env, payment_id: str) -> list[dict[str, Any]]:
    async with env.client.app.state.database.session() as session:  # type: ignore[attr-defined]
        rows = await session.execute(
            select(AuditEvent).where(
                AuditEvent.action == "payment.review_flagged", AuditEvent.target_id == payment_id
            )
        )
        return [row.details for row in rows.scalars()]


@pytest.mark.parametrize(
    ("status", "reason"), [("paid_over", "overpaid"), ("wrong_amount", "underpaid")]
)
async def test_a_wrong_payment_is_flagged_and_audited_never_fulfilled(
    env: Env, status: str, reason: str
) -> None:
    customer, order, payment = await env.started()
    await env.emulator.control(f"{payment['id']}_1", status)
    await env.checkout.process_webhooks()
    state = await env.payment(customer, payment["id"])
    assert state["status"] != "succeeded"
    assert (state["needs_review"], state["amount_captured"]) == (True, 0)
    assert (await env.order(customer, order["id"]))["status"] == "pending_payment"
    assert await _review_audits(env, payment["id"]) == [{"reason": reason, "source": "webhook"}]
    # The janitor keeps watching the invoice without flagging (or auditing) it again.
    await janitor_pass(env.checkout.runtime, now=utcnow() + timedelta(hours=1))
    assert len(await _review_audits(env, payment["id"])) == 1
    assert (await env.order(customer, order["id"]))["status"] == "pending_payment"
    summary = (await env.attempt(payment["id"])).summary["webhook"]
    assert summary["status"] == status
    assert summary["payment_amount"] != summary["payer_amount"]


@pytest.mark.parametrize(("field", "value"), [("amount", "1.00"), ("currency", "EUR")])
async def test_an_invoice_for_another_amount_or_currency_is_refused(
    env: Env, field: str, value: str
) -> None:
    customer, order, payment = await env.started()
    invoice = env.emulator.invoice(f"{payment['id']}_1")
    setattr(invoice, field, value)  # the provider's record disagrees with ours
    await env.emulator.control(invoice.order_id, "paid")
    await env.checkout.process_webhooks()
    state = await env.payment(customer, payment["id"])
    assert (state["status"], state["needs_review"]) == ("requires_action", True)
    assert (await env.order(customer, order["id"]))["status"] == "pending_payment"
    [audit] = await _review_audits(env, payment["id"])
    assert audit["reason"] == f"{field}_mismatch"


async def test_an_unsupported_currency_is_refused_before_any_call(env: Env) -> None:
    customer = await env.shop.customer()
    order = await env.shop.order(customer, currency="JPY", price=1500)
    response = await env.pay(customer, order["id"])
    assert_problem(response, 422)
    assert response.json()["code"] == "currency_not_supported"
    assert env.emulator.calls == []


async def test_the_provider_list_shows_cryptomus_with_its_currencies(env: Env) -> None:
    listed = (await env.client.get("/v1/payments/providers")).json()
    assert {"name": "cryptomus", "currencies": ["EUR", "USD"]} in listed


async def test_a_wrong_api_key_is_refused_by_cryptomus_and_fails_the_attempt(
    make_env: EnvFactory,
) -> None:
    async with make_env() as env:
        env.emulator.payment_key = "rotated-at-cryptomus"
        customer = await env.shop.customer()
        order = await env.shop.order(customer)
        response = await env.pay(customer, order["id"])
    assert response.status_code == 502
    assert response.json()["attempts"][0]["error_code"] == "cryptomus_unauthorized"
    assert env.emulator.invoices == {}


async def test_a_webhook_from_outside_the_allow_list_is_refused(make_env: EnvFactory) -> None:
    async with make_env(source_ip="198.51.100.7", cryptomus_webhook_ips=["91.227.144.54"]) as env:
        customer, _, payment = await env.started()
        await env.emulator.control(f"{payment['id']}_1", "paid")
        assert [status for _, status in env.emulator.deliveries] == [403]
        assert await env.webhook_events() == []
        assert (await env.payment(customer, payment["id"]))["status"] == "requires_action"


async def test_a_webhook_from_the_allow_list_is_accepted(make_env: EnvFactory) -> None:
    async with make_env(cryptomus_webhook_ips=["91.227.144.54"]) as env:
        _, _, payment = await env.started()
        await env.emulator.control(f"{payment['id']}_1", "paid")
        assert [status for _, status in env.emulator.deliveries] == [200]


# ---------------------------------------------------------------------------- refunds


async def test_a_refund_through_the_api_fails_clearly_without_the_payer_wallet(
    env: Env,
) -> None:
    customer, order, payment = await env.paid(price=3000)
    admin = await env.shop.accounts.admin()
    response = await env.client.post(
        f"/v1/payments/{payment['id']}/refunds",
        json={"reason": "requested_by_customer"},
        headers={**admin.headers, "Idempotency-Key": "refund-1"},
    )
    assert response.status_code == 502, response.text
    assert (response.json()["status"], response.json()["error_code"]) == (
        "failed",
        "refund_needs_address",
    )
    state = await env.payment(customer, payment["id"])
    assert (state["amount_refund_reserved"], state["amount_refunded"]) == (0, 0)
    assert (await env.order(customer, order["id"]))["status"] == "paid"
    assert not any(path == "/v1/payment/refund" for path, _ in env.emulator.calls)


async def test_a_full_refund_to_a_given_wallet_completes_at_cryptomus(env: Env) -> None:
    _, _, payment = await env.paid(price=3000)
    attempt = await env.attempt(payment["id"])
    assert attempt.provider_object_id is not None
    refund: dict[str, Any] = {
        "refund_id": "rfd_1",
        "provider_object_id": attempt.provider_object_id,
        "reference": attempt.reference,
        "amount": 3000,
        "currency": "USD",
        "reason": "requested_by_customer",
        "address": WALLET,
    }
    started = await env.adapter.refund(**refund)
    assert (started.status, started.provider_refund_id) == (
        RefundStatus.PENDING,
        attempt.provider_object_id,
    )
    invoice = env.emulator.invoice(attempt.reference)
    assert (invoice.status, invoice.refund_address, invoice.refund_is_subtract) == (
        "refund_process",
        WALLET,
        True,
    )
    # Asked again (a retry), the refund under way is reported, not requested twice.
    assert (await env.adapter.refund(**refund)).status is RefundStatus.PENDING
    assert [p for p, _ in env.emulator.calls].count("/v1/payment/refund") == 1

    await env.emulator.control(attempt.reference, "refund_paid")
    done = await env.adapter.retrieve_refund(
        refund_id="rfd_1",
        provider_refund_id=started.provider_refund_id,
        provider_object_id=attempt.provider_object_id,
    )
    assert (done.status, done.amount) == (RefundStatus.SUCCEEDED, 3000)


async def test_a_refund_made_in_the_cryptomus_dashboard_is_booked_as_external_once(
    env: Env,
) -> None:
    # A Cryptomus refund is a state of the invoice (same uuid, same order_id): the merchant
    # refunds the whole invoice in the dashboard and each status is posted, here twice.
    customer, order, payment = await env.paid(price=3000)
    reference = f"{payment['id']}_1"
    for status in ("refund_process", "refund_paid"):
        moved = await env.emulator.control(reference, status, webhook="twice")
        assert moved.status_code == 200, moved.text
    assert {code for _, code in env.emulator.deliveries} == {200}
    await env.checkout.process_webhooks()
    await assert_booked_as_external_once(
        env.client,
        env.client.app.state.database,  # type: ignore[attr-defined]
        admin=await env.shop.accounts.admin(),
        customer=customer,
        payment_id=payment["id"],
        order_id=order["id"],
        amount=3000,
        order_status="refunded",
    )


async def test_a_partial_refund_is_refused_before_asking_cryptomus(env: Env) -> None:
    _, _, payment = await env.paid(price=3000)
    attempt = await env.attempt(payment["id"])
    with pytest.raises(ProviderError) as refused:
        await env.adapter.refund(
            refund_id="rfd_2",
            provider_object_id=attempt.provider_object_id or "",
            reference=attempt.reference,
            amount=1000,
            currency="USD",
            reason="requested_by_customer",
            address=WALLET,
        )
    assert refused.value.code == "partial_refund_unsupported"
    assert env.emulator.invoice(attempt.reference).status == "paid"
    assert not any(path == "/v1/payment/refund" for path, _ in env.emulator.calls)


# ---------------------------------------------------------------------------- secrets


async def test_no_secret_reaches_the_logs_or_the_attempt_summaries(
    make_env: EnvFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    async with make_env() as env:
        capsys.readouterr()
        customer, _, payment = await env.started()
        env.emulator.fail("POST", "/v1/payment/info", "error", times=3)
        await env.emulator.control(f"{payment['id']}_1", "paid")
        await env.checkout.process_webhooks()
        await env.post_webhook(b'{"sign":"x"}')
        await janitor_pass(env.checkout.runtime, now=utcnow() + timedelta(hours=1))
        assert (await env.payment(customer, payment["id"]))["status"] == "succeeded"
        attempt = await env.attempt(payment["id"])
    output = capsys.readouterr().out
    assert "provider.call_failed" in output
    summaries = json.dumps(attempt.summary)
    sender = env.emulator.invoice(attempt.reference).sender
    assert sender is not None
    for text in (output, summaries):
        assert KEY not in text
        assert base64.b64encode(KEY.encode()).decode() not in text
    assert sender not in summaries  # the payer's wallet is personal data
