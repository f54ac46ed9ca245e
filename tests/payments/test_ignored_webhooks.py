"""A correctly signed event that tillpay does not act on is acknowledged (200), stored once as
``ignored`` and never processed, for every provider: a refusal would only make the provider
retry a genuine event for days. Only a bad signature or a body that is not JSON is a 4xx.

The events are the providers' official sample payloads (tests/providers/webhook_samples.json,
copied from the project's reference samples), signed with the test secrets.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from tests.accounts.helpers import Accounts
from tests.conftest import ClientFactory
from tests.emulators import cryptomus, paystack, razorpay, stripe
from tests.http.test_errors import assert_problem
from tillpay.kit import signing
from tillpay.payments.models import WebhookEvent
from tillpay.payments.webhooks import process_due_webhooks
from tillpay.sandbox import psp

SAMPLES: dict[str, Any] = json.loads(
    (Path(__file__).parents[1] / "providers" / "webhook_samples.json").read_text("utf-8")
)

STRIPE_KEY = "sk_test_51TillpayIgnoredEvents000000000"
STRIPE_WHSEC = "whsec_tillpayIgnoredEventsSecret00000"
PAYSTACK_KEY = "sk_test_0c9b8a7f6e5d4c3b2a1f0e9d8c7b6a5f4e3d2c1b"
RAZORPAY_WEBHOOK_SECRET = "rzp-webhook-secret-" + "i" * 20
CRYPTOMUS_KEY = "cmPaymentKey-" + "i" * 40

SETTINGS: dict[str, Any] = {
    "stripe_secret_key": STRIPE_KEY,
    "stripe_webhook_secrets": [STRIPE_WHSEC],
    "paystack_secret_key": PAYSTACK_KEY,
    "razorpay_key_id": "rzp_test_TillpayIgnored0",
    "razorpay_key_secret": "rzp-key-secret-" + "i" * 24,
    "razorpay_webhook_secret": RAZORPAY_WEBHOOK_SECRET,
    "cryptomus_merchant_id": "8b03432e-385b-4670-8d06-064591096795",
    "cryptomus_payment_api_key": CRYPTOMUS_KEY,
}


@dataclass(frozen=True)
class Delivery:
    provider: str
    body: bytes
    headers: dict[str, str]


SIGNATURE_HEADERS = {
    "stripe-signature",
    "x-paystack-signature",
    "x-razorpay-signature",
    psp.SIGNATURE_HEADER,
}


def _sign(provider: str, body: bytes, client: httpx.AsyncClient) -> dict[str, str]:
    """The signature headers each provider sends for ``body`` (Cryptomus signs inside it)."""
    if provider == "stripe":
        return {"stripe-signature": stripe.sign(body, [STRIPE_WHSEC], int(time.time()))}
    if provider == "paystack":
        return {"x-paystack-signature": paystack.sign(body, PAYSTACK_KEY)}
    if provider == "razorpay":
        return {
            "x-razorpay-signature": razorpay.sign(RAZORPAY_WEBHOOK_SECRET, body),
            "x-razorpay-event-id": "KrBqNtJ0Ignored1",
        }
    assert provider == "sandbox", provider
    secret = psp.webhook_secret(client.app.state.settings)  # type: ignore[attr-defined]
    return {psp.SIGNATURE_HEADER: signing.sign(body, secret)}


def _encoded(provider: str, event: Any) -> bytes:
    """The body as the provider writes it (Stripe pretty-prints; Cryptomus adds ``sign``)."""
    if provider == "stripe":
        return json.dumps(event, indent=2).encode()
    if provider == "cryptomus":
        data = {k: v for k, v in event.items() if k != "sign"}
        sign = cryptomus.md5_sign(cryptomus.php_encode(data).encode(), CRYPTOMUS_KEY)
        return json.dumps({**data, "sign": sign}).encode()
    return json.dumps(event, separators=(",", ":")).encode()


def signed(provider: str, event: Any, client: httpx.AsyncClient) -> Delivery:
    body = _encoded(provider, event)
    headers = {} if provider == "cryptomus" else _sign(provider, body, client)
    return Delivery(provider, body, headers)


def forged(delivery: Delivery) -> Delivery:
    """The same delivery with a signature that does not verify (last hex digit changed)."""

    def flip(text: str) -> str:
        return text[:-1] + ("0" if text[-1] != "0" else "1")

    if delivery.provider == "cryptomus":
        data = json.loads(delivery.body)
        return Delivery(
            delivery.provider, json.dumps({**data, "sign": flip(data["sign"])}).encode(), {}
        )
    headers = dict(delivery.headers)
    name = next(k for k in headers if k in SIGNATURE_HEADERS)
    headers[name] = flip(headers[name])
    return Delivery(delivery.provider, delivery.body, headers)


def _stripe_event(type_: str, obj: Any) -> dict[str, Any]:
    event = copy.deepcopy(SAMPLES["stripe"]["event"])
    event["type"] = type_
    event["data"]["object"] = obj
    return event


def _with(sample: dict[str, Any], **changes: Any) -> dict[str, Any]:
    return {**copy.deepcopy(sample), **changes}


PS, RZ, CM = SAMPLES["paystack"], SAMPLES["razorpay"], SAMPLES["cryptomus"]

# case → (provider, event)
UNHANDLED: dict[str, tuple[str, Any]] = {
    "stripe plan.created": ("stripe", SAMPLES["stripe"]["event"]),
    "stripe payout.paid": ("stripe", _stripe_event("payout.paid", SAMPLES["stripe"]["payout"])),
    "paystack subscription.expiring_cards (data is a list)": (
        "paystack",
        PS["webhook_subscription.expiring_cards"],
    ),
    "paystack transfer.success": ("paystack", PS["webhook_transfer.success"]),
    "paystack charge.dispute.create": ("paystack", PS["webhook_charge.dispute.create"]),
    "paystack invoice.create": ("paystack", PS["webhook_invoice.create"]),
    "paystack charge.success of another integration": ("paystack", PS["webhook_charge.success"]),
    "razorpay refund.speed_changed": ("razorpay", RZ["webhook_refund.speed_changed"]),
    "razorpay payment.authorized": ("razorpay", RZ["webhook_payment.authorized_card"]),
    "cryptomus payout": ("cryptomus", CM["webhook_payout_paid"]),
    "sandbox unknown type": ("sandbox", {"id": "sbe_ignored1", "type": "account.updated"}),
}
UNEXPECTED_SHAPE: dict[str, tuple[str, Any]] = {
    "stripe data.object is a list": (
        "stripe",
        _stripe_event("checkout.session.completed", [SAMPLES["stripe"]["payout"]]),
    ),
    "stripe not an event object": ("stripe", [SAMPLES["stripe"]["event"]]),
    "paystack charge.success whose data is a list": (
        "paystack",
        _with(PS["webhook_charge.success"], data=[PS["webhook_charge.success"]["data"]]),
    ),
    "razorpay event that is a list": ("razorpay", [RZ["webhook_payment.captured_card"]]),
    "cryptomus payment whose uuid is a number": (
        "cryptomus",
        _with(CM["webhook_payment_paid"], uuid=12345),
    ),
    "sandbox event that is a list": ("sandbox", [{"id": "sbe_x", "type": "session.succeeded"}]),
}


@pytest.fixture
async def client(
    clean_db: None, make_client: ClientFactory, mail_dir: Path
) -> AsyncIterator[httpx.AsyncClient]:
    async with make_client(**SETTINGS) as c:
        yield c


async def _post(client: httpx.AsyncClient, delivery: Delivery) -> httpx.Response:
    return await client.post(
        f"/v1/webhooks/{delivery.provider}",
        content=delivery.body,
        headers={"content-type": "application/json", **delivery.headers},
    )


async def _stored(client: httpx.AsyncClient) -> list[WebhookEvent]:
    async with client.app.state.database.session() as session:  # type: ignore[attr-defined]
        return list((await session.execute(select(WebhookEvent))).scalars())


@pytest.mark.parametrize("case", list(UNHANDLED))
async def test_a_signed_event_tillpay_does_not_handle_is_acknowledged_and_stored_ignored(
    client: httpx.AsyncClient, case: str
) -> None:
    delivery = signed(*UNHANDLED[case], client)
    response = await _post(client, delivery)
    assert response.status_code == 200, response.text
    assert response.json() == {"received": True, "duplicate": False}
    (stored,) = await _stored(client)
    assert (stored.provider, stored.status, stored.last_error) == (
        delivery.provider,
        "ignored",
        "not_handled",
    )
    assert stored.payload.encode() == delivery.body
    assert stored.processed_at is not None


@pytest.mark.parametrize("case", list(UNEXPECTED_SHAPE))
async def test_a_signed_event_of_an_unexpected_shape_is_acknowledged_and_stored_ignored(
    client: httpx.AsyncClient, case: str
) -> None:
    delivery = signed(*UNEXPECTED_SHAPE[case], client)
    response = await _post(client, delivery)
    assert response.status_code == 200, response.text
    (stored,) = await _stored(client)
    assert (stored.provider, stored.status, stored.last_error) == (
        delivery.provider,
        "ignored",
        "unexpected_shape",
    )


async def test_a_redelivered_ignored_event_is_stored_once(client: httpx.AsyncClient) -> None:
    case = UNHANDLED["paystack subscription.expiring_cards (data is a list)"]
    first = await _post(client, signed(*case, client))
    again = await _post(client, signed(*case, client))
    assert (first.status_code, again.status_code) == (200, 200)
    assert again.json() == {"received": True, "duplicate": True}
    assert len(await _stored(client)) == 1


async def test_ignored_events_are_listed_for_admins_and_never_processed(
    client: httpx.AsyncClient, mail_dir: Path
) -> None:
    for case in (
        UNHANDLED["stripe plan.created"],
        UNEXPECTED_SHAPE["sandbox event that is a list"],
    ):
        assert (await _post(client, signed(*case, client))).status_code == 200
    runtime = client.app.state.payments  # type: ignore[attr-defined]
    assert await process_due_webhooks(runtime) == 0
    admin = await Accounts(client, mail_dir).admin()
    listed = await client.get(
        "/v1/admin/webhook-events", params={"status": "ignored"}, headers=admin.headers
    )
    assert listed.status_code == 200, listed.text
    assert sorted(e["event_type"] for e in listed.json()) == ["plan.created", "unknown"]
    assert {e["status"] for e in listed.json()} == {"ignored"}


NOT_JSON = {
    "truncated": b'{"event": "charge.success", "data": ',
    "not utf-8": b'{"event": "charge.success", "data": {"x": "\xff"}}',
    "utf-16": json.dumps({"event": "charge.success", "data": {}}).encode("utf-16"),
}


@pytest.mark.parametrize("body", list(NOT_JSON))
@pytest.mark.parametrize("provider", ["stripe", "paystack", "razorpay", "sandbox"])
async def test_a_signed_body_that_is_not_json_is_refused(
    client: httpx.AsyncClient, provider: str, body: str
) -> None:
    raw = NOT_JSON[body]
    response = await _post(client, Delivery(provider, raw, _sign(provider, raw, client)))
    # Stripe's SDK verifies the body as UTF-8 text, so bytes that are not never verify.
    refused = "invalid_signature" if provider == "stripe" and body != "truncated" else None
    assert assert_problem(response, 400)["code"] == (refused or "malformed_webhook")
    assert await _stored(client) == []


@pytest.mark.parametrize(
    "case",
    [
        "stripe plan.created",
        "paystack transfer.success",
        "razorpay refund.speed_changed",
        "cryptomus payout",
        "sandbox unknown type",
    ],
)
async def test_an_unhandled_event_with_a_bad_signature_is_refused(
    client: httpx.AsyncClient, case: str
) -> None:
    response = await _post(client, forged(signed(*UNHANDLED[case], client)))
    assert assert_problem(response, 400)["code"] == "invalid_signature"
    assert await _stored(client) == []
