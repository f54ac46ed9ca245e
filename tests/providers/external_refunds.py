"""What every provider's test of a refund made outside tillpay (the provider's dashboard)
checks once the provider's signed refund event has been processed."""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy import select

from tests.accounts.helpers import Account
from tillpay.events.models import OutboxEvent
from tillpay.ledger import service as ledger
from tillpay.payments.models import Refund, WebhookEvent


async def assert_booked_as_external_once(
    client: httpx.AsyncClient,
    database: Any,
    *,
    admin: Account,
    customer: Account,
    payment_id: str,
    order_id: str,
    amount: int,
    order_status: str = "partially_refunded",
) -> None:
    """One external refund of ``amount``, succeeded; the order refunded by it; the ledger
    balanced; one ``refund.succeeded`` in the outbox; no stored event left to retry."""
    listed = await client.get(f"/v1/payments/{payment_id}/refunds", headers=admin.headers)
    assert listed.status_code == 200, listed.text
    assert [(r["external"], r["status"], r["amount"]) for r in listed.json()] == [
        (True, "succeeded", amount)
    ]
    order = (await client.get(f"/v1/orders/{order_id}", headers=customer.headers)).json()
    assert (order["status"], order["refunded_amount"]) == (order_status, amount)
    async with database.session() as db:
        assert await ledger.unbalanced_transactions(db) == []
        refunds = (await db.execute(select(Refund))).scalars().all()
        assert [(r.external, r.amount, r.created_by) for r in refunds] == [(True, amount, None)]
        outbox = (
            (await db.execute(select(OutboxEvent).where(OutboxEvent.type == "refund.succeeded")))
            .scalars()
            .all()
        )
        assert [o.payload["data"]["amount"] for o in outbox] == [amount]
        events = (await db.execute(select(WebhookEvent))).scalars().all()
        assert {e.status for e in events} <= {"processed", "ignored"}, [
            (e.event_type, e.status, e.last_error) for e in events
        ]
