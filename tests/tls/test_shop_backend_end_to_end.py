"""What docs/integration.md promises, end to end: a shop's backend, with a short-lived
service token over mutual TLS to a real TLS server, creates a payment for its own order,
the customer pays on the provider's page (the sandbox), the backend receives the result
as a signed webhook, refunds over the same channel, and hears the refund signed too."""

from __future__ import annotations

import json
import ssl
from pathlib import Path
from typing import Any

import httpx
from standardwebhooks.webhooks import Webhook

from tests.accounts.helpers import Accounts
from tests.credentials.service_token_helpers import AUDIENCE, ISSUER, SigningKey, bearer, mint
from tests.harness.servers import free_port
from tests.payments.helpers import GOOD_CARD, Checkout
from tests.tls.conftest import Pki, serving
from tests.tls.test_mutual_tls import CLIENT_SUBJECT
from tests.webhooks.conftest import Hooks, webhook_settings
from tests.webhooks.receiver import Receiver

KEY = SigningKey.new("shop-2026-12")
SCOPES = "payments:write payments:read refunds:write"


def _signed(receiver: Receiver, secret: str, event_type: str) -> dict[str, Any]:
    [delivery] = [r for r in receiver.received if f'"{event_type}"'.encode() in r.body]
    verified: dict[str, Any] = Webhook(secret).verify(delivery.body, delivery.headers)
    return verified


async def test_a_shop_backend_takes_and_refunds_a_payment_over_mutual_tls(
    make_client: Any, clean_db: None, pki: Pki, receiver: Receiver, mail_dir: Path
) -> None:
    port = free_port()
    async with make_client(
        **webhook_settings(receiver),
        host="127.0.0.1",
        port=port,
        tls_cert_file=pki.path("server.pem"),
        tls_key_file=pki.path("server-key.pem"),
        tls_client_ca_file=pki.path("ca.pem"),
        service_token_issuers=[
            {
                "issuer": ISSUER,
                "audience": AUDIENCE,
                "public_key_pem": KEY.public_pem(),
                "algorithms": ["ES256"],
                "merchant": "default",
                "client_cert_subject": CLIENT_SUBJECT,
            }
        ],
    ) as local:
        app = local.app
        # The operator: an admin registers the shop's webhook endpoint.
        hooks = Hooks(local, mail_dir)
        await Accounts(local, mail_dir).admin()
        endpoint = await hooks.endpoint(receiver.url, ["payment.succeeded", "refund.succeeded"])
        # The same app served as `tillpay serve` serves it: TLS, client certificates required.
        async with serving(app, app.state.settings, lifespan="off") as base:
            await _shop_backend(base, local, pki, hooks, receiver, endpoint["secret"])
    assert json.loads(receiver.received[0].body)["type"] == "payment.succeeded"


async def _shop_backend(
    base: str,
    local: httpx.AsyncClient,
    pki: Pki,
    hooks: Hooks,
    receiver: Receiver,
    secret: str,
) -> None:
    """The shop's backend (over mutual TLS) and its customer (on the provider's page)."""
    tls = ssl.create_default_context(cafile=pki.path("ca.pem"))
    tls.load_cert_chain(pki.path("client.pem"), pki.path("client-key.pem"))
    async with httpx.AsyncClient(base_url=base, verify=tls, timeout=15) as backend:
        created = await backend.post(
            "/v1/payments",
            headers={**bearer(mint(KEY, scope=SCOPES)), "Idempotency-Key": "pay-10042-1"},
            json={
                "amount": 2599,
                "currency": "USD",
                "reference": "order-10042",
                "customer": {"email": "ada@example.com", "external_id": "cus_881"},
                "provider": "sandbox",
                "return_url": "https://shop.example/orders/10042",
            },
        )
        assert created.status_code == 201, created.text
        payment = created.json()
        assert payment["next_action"]["type"] == "redirect"

        # The customer pays on the provider's page; the provider's webhook lands.
        customer_side = Checkout.__new__(Checkout)
        customer_side.client = local
        await customer_side.submit_card(payment, GOOD_CARD)
        assert await customer_side.deliver_webhooks() == 1
        assert await customer_side.process_webhooks() == 1
        await hooks.relay()
        await hooks.deliver()
        paid = _signed(receiver, secret, "payment.succeeded")
        assert paid["data"]["object"]["id"] == payment["id"]
        assert paid["data"]["object"]["amount_captured"] == 2599
        assert paid["data"]["details"]["reference"] == "order-10042"

        refund = await backend.post(
            f"/v1/payments/{payment['id']}/refunds",
            headers={**bearer(mint(KEY, scope=SCOPES)), "Idempotency-Key": "refund-1"},
            json={"amount": 1000, "reason": "requested_by_customer"},
        )
        assert refund.status_code == 201, refund.text
        assert refund.json()["status"] == "succeeded"
        await hooks.relay()
        await hooks.deliver()
        refunded = _signed(receiver, secret, "refund.succeeded")
        assert refunded["data"]["object"]["id"] == refund.json()["id"]

        state = await backend.get(
            "/v1/payments",
            params={"reference": "order-10042"},
            headers=bearer(mint(KEY, scope=SCOPES)),
        )
        assert state.status_code == 200, state.text
        [listed] = state.json()["items"]
        assert (listed["id"], listed["amount_refunded"]) == (payment["id"], 1000)

        # A token is good for one request: the same one again is a replay.
        token = mint(KEY, scope=SCOPES)
        first = await backend.get(f"/v1/payments/{payment['id']}", headers=bearer(token))
        assert first.status_code == 200, first.text
        again = await backend.get(f"/v1/payments/{payment['id']}", headers=bearer(token))
        assert again.status_code == 401
