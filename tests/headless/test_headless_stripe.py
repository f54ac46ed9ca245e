"""A headless payment through the real Stripe adapter against the wire-level emulator:
hosted Checkout, signed webhook, refund, ledger and events."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import select

from tests.headless.helpers import ShopBackend, body
from tests.providers.test_stripe import Env as StripeEnv
from tests.providers.test_stripe import EnvFactory, make_env  # noqa: F401 - the fixture
from tillpay.events.models import OutboxEvent
from tillpay.ledger import service as ledger


@pytest.fixture
async def env(make_env: EnvFactory) -> AsyncIterator[StripeEnv]:  # noqa: F811
    async with make_env() as e:
        yield e


async def test_a_headless_stripe_payment_is_paid_and_refunded(env: StripeEnv) -> None:
    shop = await ShopBackend.make(env.client, await env.accounts.admin(), "acme")
    created = await shop.create(body("order-s1", amount=4200, provider="stripe"))
    assert created.status_code == 201, created.text
    payment = created.json()
    assert payment["next_action"]["type"] == "redirect"
    session = env.emulator.by_reference(f"{payment['id']}_1")
    assert payment["next_action"]["redirect_url"] == session["url"]

    await env.settle_payment(payment)
    paid = (await shop.get(payment["id"])).json()
    assert (paid["status"], paid["amount_captured"]) == ("succeeded", 4200), paid

    refund = await shop.refund(payment["id"], amount=1200)
    assert refund.status_code == 201, refund.text
    await env.settled()
    assert (await shop.get(payment["id"])).json()["amount_refunded"] == 1200
    async with env.database.session() as session_:
        assert await ledger.unbalanced_transactions(session_) == []
        capture = await ledger.posted(session_, kind="payment", reference_ids=[payment["id"]])
        assert {(line.account, line.amount) for line in capture} == {
            ("provider_clearing:stripe:USD", 4200),
            ("merchant_payable:acme:USD", -4200),
        }
        events = list(
            (
                await session_.execute(
                    select(OutboxEvent).where(OutboxEvent.type == "payment.succeeded")
                )
            ).scalars()
        )
    assert [e.payload["data"]["reference"] for e in events] == ["order-s1"]
