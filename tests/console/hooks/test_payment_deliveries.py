"""A payment's console page lists the merchant webhook deliveries its own events caused:
those about the payment and those about its refunds, and no other payment's."""

from __future__ import annotations

import uuid

import httpx
from sqlalchemy import select

from tests.webhooks.conftest import Hooks
from tests.webhooks.receiver import Receiver
from tillpay.events.models import OutboxEvent


def _deliveries_section(html: str) -> str:
    start = html.index('id="h-deliveries"')
    return html[start : html.index("</section>", start)]


async def _event_ids(hooks: Hooks, subject_id: str) -> set[str]:
    async with hooks.checkout.app.state.database.session() as session:
        rows = await session.execute(
            select(OutboxEvent.id).where(OutboxEvent.subject_id == subject_id)
        )
        return set(rows.scalars())


async def test_the_payment_page_lists_the_deliveries_its_payment_and_refund_events_caused(
    hooks: Hooks, web: httpx.AsyncClient, receiver: Receiver
) -> None:
    endpoint = await hooks.endpoint(receiver.url, ["payment.succeeded", "refund.succeeded"])
    checkout = hooks.checkout
    customer = await checkout.shop.customer()
    _, payment = await checkout.paid_order(customer, price=4000)
    _, other = await checkout.paid_order(customer, price=1500)
    admin = await hooks.admin()
    refunded = await checkout.client.post(
        f"/v1/payments/{payment['id']}/refunds",
        json={"amount": 1000, "reason": "requested_by_customer"},
        headers={**admin.headers, "Idempotency-Key": str(uuid.uuid4())},
    )
    assert refunded.status_code == 201, refunded.text
    assert refunded.json()["status"] == "succeeded"
    await hooks.flush()

    page = await web.get(f"/console/payments/{payment['id']}")
    assert page.status_code == 200
    section = _deliveries_section(page.text)
    assert "<code>payment.succeeded</code>" in section
    assert "<code>refund.succeeded</code>" in section  # the refund's event: subject refund
    assert f'href="/console/webhooks/{endpoint["id"]}"' in section
    assert receiver.url in section
    assert "delivered" in section
    assert ">200<" in section  # the receiver's answer
    for event_id in await _event_ids(hooks, payment["id"]):
        assert event_id in section
    for event_id in await _event_ids(hooks, refunded.json()["id"]):
        assert event_id in section
    for event_id in await _event_ids(hooks, other["id"]):
        assert event_id not in section  # another payment's deliveries stay on its page

    theirs = _deliveries_section((await web.get(f"/console/payments/{other['id']}")).text)
    assert "<code>payment.succeeded</code>" in theirs
    assert "refund.succeeded" not in theirs


async def test_a_payment_without_deliveries_says_so(hooks: Hooks, web: httpx.AsyncClient) -> None:
    _, payment = await hooks.checkout.paid_order(await hooks.checkout.shop.customer())
    await hooks.flush()
    page = await web.get(f"/console/payments/{payment['id']}")
    assert "No merchant webhook deliveries." in _deliveries_section(page.text)
