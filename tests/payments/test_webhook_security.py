"""The webhook endpoint trusts nothing but a fresh signature over the raw bytes (W1-W5, W12)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from tests.accounts.helpers import Accounts
from tests.commerce.helpers import Shop
from tests.conftest import ClientFactory
from tests.http.test_errors import assert_problem
from tests.payments.helpers import GOOD_CARD, Checkout
from tillpay.kit import signing
from tillpay.orders.models import Order
from tillpay.payments.models import Payment, WebhookEvent
from tillpay.sandbox import psp
from tillpay.sandbox.models import SandboxWebhook

HEADER = psp.SIGNATURE_HEADER


def secret_of(checkout: Checkout) -> bytes:
    return psp.webhook_secret(checkout.app.state.settings)


async def queued_event(checkout: Checkout) -> tuple[dict[str, Any], bytes]:
    """A real payment whose card was accepted: (payment, the sandbox's undelivered event)."""
    customer = await checkout.shop.customer()
    order = await checkout.shop.order(customer)
    payment = (await checkout.pay(customer, order["id"])).json()
    await checkout.submit_card(payment, GOOD_CARD)
    async with checkout.app.state.database.session() as session:
        body = (await session.execute(select(SandboxWebhook.body))).scalar_one()
    return payment, body.encode()


async def post_webhook(
    checkout: Checkout,
    body: bytes,
    signature: str | None,
    *,
    provider: str = "sandbox",
    content_type: str = "application/json",
) -> httpx.Response:
    headers = {"content-type": content_type}
    if signature is not None:
        headers[HEADER] = signature
    return await checkout.client.post(f"/v1/webhooks/{provider}", content=body, headers=headers)


async def stored_events(checkout: Checkout) -> int:
    async with checkout.app.state.database.session() as session:
        count = (await session.execute(select(func.count()).select_from(WebhookEvent))).scalar()
    return int(count or 0)


async def unchanged(checkout: Checkout, payment: dict[str, Any]) -> bool:
    """The payment still awaits the customer and its order is still unpaid."""
    async with checkout.app.state.database.session() as session:
        stored = await session.get(Payment, payment["id"])
        order = await session.get(Order, payment["order_id"])
    assert stored is not None
    assert order is not None
    return (stored.status, order.status) == ("requires_action", "pending_payment")


def _tamper_one_byte(body: bytes) -> bytes:
    at = body.index(b'"amount":') + len(b'"amount":')
    digit = b"2" if body[at : at + 1] != b"2" else b"3"
    return body[:at] + digit + body[at + 1 :]


def _reserialized(body: bytes) -> bytes:
    return json.dumps(json.loads(body), indent=1, sort_keys=True).encode()


NOW = int(time.time())
Forge = Callable[[bytes, bytes, bytes], tuple[bytes, str | None]]
BAD_DELIVERIES: dict[str, Forge] = {
    "no signature header": lambda body, secret, wrong: (body, None),
    "garbage header": lambda body, secret, wrong: (body, "this is not a signature"),
    "one byte changed": lambda body, secret, wrong: (
        _tamper_one_byte(body),
        signing.sign(body, secret, timestamp=NOW),
    ),
    "body re-serialized": lambda body, secret, wrong: (
        _reserialized(body),
        signing.sign(body, secret, timestamp=NOW),
    ),
    "wrong secret": lambda body, secret, wrong: (body, signing.sign(body, wrong, timestamp=NOW)),
    "timestamp 301 s old": lambda body, secret, wrong: (
        body,
        signing.sign(body, secret, timestamp=NOW - 301),
    ),
    "timestamp 301 s ahead": lambda body, secret, wrong: (
        body,
        signing.sign(body, secret, timestamp=NOW + 301),
    ),
}


@pytest.fixture
def frozen_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """The verifier's clock stands still at NOW, so the ±300 s edges are exact."""
    monkeypatch.setattr(signing, "time", SimpleNamespace(time=lambda: float(NOW)))


@pytest.mark.parametrize("case", list(BAD_DELIVERIES))
async def test_badly_signed_delivery_is_rejected_and_leaves_no_trace(
    checkout: Checkout, frozen_clock: None, case: str
) -> None:
    payment, body = await queued_event(checkout)
    # The sandbox's API key is the realistic wrong secret (key confusion, W3).
    wrong = psp.api_key(checkout.app.state.settings).encode()
    content, signature = BAD_DELIVERIES[case](body, secret_of(checkout), wrong)
    response = await post_webhook(checkout, content, signature)
    assert assert_problem(response, 400)["code"] == "invalid_signature"
    assert await stored_events(checkout) == 0
    assert await checkout.process_webhooks() == 0
    assert await unchanged(checkout, payment)


async def test_the_edge_of_the_tolerance_is_still_accepted(
    checkout: Checkout, frozen_clock: None
) -> None:
    _, body = await queued_event(checkout)
    response = await post_webhook(
        checkout, body, signing.sign(body, secret_of(checkout), timestamp=NOW - 300)
    )
    assert response.status_code == 200, response.text
    assert await stored_events(checkout) == 1


async def test_one_right_signature_among_several_is_accepted_for_secret_rotation(
    checkout: Checkout,
) -> None:
    _, body = await queued_event(checkout)
    ts = int(time.time())
    old = signing.sign(body, b"the-retired-webhook-secret", timestamp=ts).split("v1=")[1]
    current = signing.sign(body, secret_of(checkout), timestamp=ts).split("v1=")[1]
    response = await post_webhook(checkout, body, f"t={ts},v1={old},v1={current}")
    assert response.status_code == 200, response.text
    assert response.json() == {"received": True, "duplicate": False}
    assert await stored_events(checkout) == 1


async def test_rejection_is_logged_without_the_body(
    capsys: pytest.CaptureFixture[str],
    make_client: ClientFactory,
    clean_db: None,
    mail_dir: Path,
) -> None:
    # The app is built inside the test so that its log stream is the captured stdout.
    async with make_client() as client:
        checkout = Checkout(Shop(Accounts(client, mail_dir)))
        _, body = await queued_event(checkout)
        capsys.readouterr()
        await post_webhook(checkout, body, signing.sign(body, b"wrong-secret"))
        output = capsys.readouterr().out
    lines = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    rejected = [line for line in lines if line.get("event") == "webhook.signature_invalid"]
    assert len(rejected) == 1
    assert rejected[0]["provider"] == "sandbox"
    assert rejected[0]["size"] == len(body)
    assert json.loads(body)["id"] not in output
    assert body.decode() not in output


async def test_unknown_provider_endpoint_is_not_found(checkout: Checkout) -> None:
    _, body = await queued_event(checkout)
    response = await post_webhook(
        checkout, body, signing.sign(body, secret_of(checkout)), provider="acmepay"
    )
    assert_problem(response, 404)
    assert await stored_events(checkout) == 0


async def test_oversized_body_is_refused_before_verification(checkout: Checkout) -> None:
    settings = checkout.app.state.settings
    path = "/v1/webhooks/sandbox"
    limits = sorted(settings.body_limits.items(), key=lambda item: -len(item[0]))
    limit = next((v for p, v in limits if path.startswith(p)), settings.body_limit_bytes)
    body = json.dumps({"id": "sbe_big", "type": "session.succeeded", "pad": "x" * limit}).encode()
    response = await post_webhook(checkout, body, signing.sign(body, secret_of(checkout)))
    assert_problem(response, 413)
    assert await stored_events(checkout) == 0


async def test_non_json_content_type_is_refused(checkout: Checkout) -> None:
    _, body = await queued_event(checkout)
    response = await post_webhook(
        checkout, body, signing.sign(body, secret_of(checkout)), content_type="text/plain"
    )
    assert_problem(response, 415)
    assert await stored_events(checkout) == 0


async def test_a_redelivered_event_is_stored_once(checkout: Checkout) -> None:
    _, body = await queued_event(checkout)
    secret = secret_of(checkout)
    first = await post_webhook(checkout, body, signing.sign(body, secret))
    assert first.json() == {"received": True, "duplicate": False}
    # Providers re-sign each delivery; the event id, not the signature, identifies it.
    again = await post_webhook(
        checkout, body, signing.sign(body, secret, timestamp=int(time.time()) - 10)
    )
    assert again.status_code == 200
    assert again.json() == {"received": True, "duplicate": True}
    assert await stored_events(checkout) == 1
