"""The webhook processor drains what is due: a full batch is followed at once by the next,
one failing event does not hold the others back, and an event whose processor died is
taken again once its claim lapses."""

from __future__ import annotations

import httpx
from sqlalchemy import select, update

from tests.payments.helpers import GOOD_CARD, Checkout
from tillpay.kit.db import utcnow
from tillpay.payments.models import WebhookEvent
from tillpay.payments.webhooks import claim_due_webhooks, process_due_webhooks


async def paid_at_sandbox(checkout: Checkout, payments: int) -> None:
    """Orders paid at the sandbox whose webhooks tillpay has stored, not processed."""
    customer = await checkout.shop.customer()
    for _ in range(payments):
        order = await checkout.shop.order(customer)
        payment = (await checkout.pay(customer, order["id"])).json()
        assert (await checkout.submit_card(payment, GOOD_CARD)).status_code == 303
    assert await checkout.deliver_webhooks() == payments


async def statuses(checkout: Checkout) -> dict[str, tuple[str, int]]:
    """Each stored event's (status, attempts), by its payment reference."""
    async with checkout.app.state.database.session() as session:
        rows = await session.execute(
            select(WebhookEvent.reference, WebhookEvent.status, WebhookEvent.attempts)
        )
        return {ref: (status, attempts) for ref, status, attempts in rows}


class FailingReread(httpx.AsyncBaseTransport):
    """The provider answers 500 to the re-read of one reference (others pass through)."""

    def __init__(self, inner: httpx.AsyncBaseTransport, reference: str) -> None:
        self.inner, self.reference = inner, reference

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith(f"/sessions/by-reference/{self.reference}"):
            return httpx.Response(500, json={"error": "boom"})
        return await self.inner.handle_async_request(request)


async def test_a_full_batch_is_followed_at_once_by_the_next(checkout: Checkout) -> None:
    await paid_at_sandbox(checkout, 5)

    assert await process_due_webhooks(checkout.runtime, limit=2) == 5

    assert {status for status, _ in (await statuses(checkout)).values()} == {"processed"}


async def test_a_failing_event_does_not_hold_back_the_rest_of_its_batch(
    checkout: Checkout,
) -> None:
    await paid_at_sandbox(checkout, 4)
    failing = sorted(await statuses(checkout))[1]
    routing = checkout.app.state.provider_transport
    routing.default = FailingReread(routing.default, failing)

    assert await process_due_webhooks(checkout.runtime, limit=4) == 4

    seen = await statuses(checkout)
    assert seen.pop(failing) == ("pending", 1)
    assert set(seen.values()) == {("processed", 0)}


async def test_an_event_claimed_by_a_processor_that_died_is_taken_once_its_claim_lapses(
    checkout: Checkout,
) -> None:
    await paid_at_sandbox(checkout, 1)
    assert len(await claim_due_webhooks(checkout.runtime, limit=1)) == 1  # then it died

    assert await process_due_webhooks(checkout.runtime) == 0

    async with checkout.app.state.database.session() as session, session.begin():
        await session.execute(update(WebhookEvent).values(next_attempt_at=utcnow()))
    assert await process_due_webhooks(checkout.runtime) == 1
    assert set((await statuses(checkout)).values()) == {("processed", 0)}
