"""Who may see an event live, and what each of them sees.

Decided here, once, by the publisher; the hubs only route. The owner of an order,
payment or refund (its customer) gets the object as their own ``GET`` shows it; each vendor
with lines in an order gets the vendor view (status and only their own lines, no customer
data); the user an account event is about gets it; the ``admin`` channel gets every event
as merchant webhooks carry it (with ``data.details``). Anything else reaches admins only.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import joinedload

from tillpay import event_payloads
from tillpay.events.models import OutboxEvent
from tillpay.orders.models import Order
from tillpay.orders.schemas import OrderOut, VendorOrderOut
from tillpay.orders.service import VendorOrder
from tillpay.payments.models import Payment, Refund
from tillpay.payments.schemas import PaymentOut, RefundOut
from tillpay.realtime.hub import ADMIN_CHANNEL

Envelope = tuple[str, str]
"""``(audience, message text)``: audience ``user:<id>`` or ``admin``."""

Owners = tuple[list[Envelope], dict[str, Any] | None]
"""The owners' envelopes, and the subject as ``event_payloads.current_object`` shows it
(the owner's view is the API's: the admin channel's body reuses it, no second read)."""


def _text(event: OutboxEvent, obj: dict[str, Any] | None, details: Any = None) -> str:
    body: dict[str, Any] = {
        "id": event.id,
        "type": event.type,
        "created": event.created_at.isoformat().replace("+00:00", "Z"),
        "data": {"object": obj} if details is None else {"object": obj, "details": details},
    }
    return json.dumps({"type": "event", "event": body}, separators=(",", ":"))


async def _order(session: AsyncSession, event: OutboxEvent) -> Owners:
    order = (
        (
            await session.execute(
                select(Order).options(joinedload(Order.lines)).where(Order.id == event.subject_id)
            )
        )
        .unique()
        .scalar_one_or_none()
    )
    if order is None:
        return [], None
    current = OrderOut.model_validate(order).model_dump(mode="json")
    out = [(f"user:{order.customer_id}", _text(event, current))] if order.customer_id else []
    vendors = sorted({line.vendor_id for line in order.lines if line.vendor_id is not None})
    for vendor_id in vendors:
        view = VendorOrder(order, [line for line in order.lines if line.vendor_id == vendor_id])
        shown = VendorOrderOut.model_validate(view).model_dump(mode="json")
        out.append((f"user:{vendor_id}", _text(event, shown)))
    return out, current


async def _payment(session: AsyncSession, event: OutboxEvent) -> Owners:
    payment = await session.get(Payment, event.subject_id)
    if payment is None:
        return [], None
    shown = PaymentOut.model_validate(payment).model_dump(mode="json")
    if payment.customer_id is None:  # headless: no tillpay customer to tell
        return [], shown
    return [(f"user:{payment.customer_id}", _text(event, shown))], shown


async def _refund(session: AsyncSession, event: OutboxEvent) -> Owners:
    row = (
        await session.execute(
            select(Refund, Payment.customer_id)
            .join(Payment, Payment.id == Refund.payment_id)
            .where(Refund.id == event.subject_id)
        )
    ).one_or_none()
    if row is None:
        return [], None
    refund, customer_id = row
    shown = RefundOut.model_validate(refund).model_dump(mode="json")
    if customer_id is None:
        return [], shown
    return [(f"user:{customer_id}", _text(event, shown))], shown


async def _user(session: AsyncSession, event: OutboxEvent) -> Owners:
    shown = await event_payloads.current_object(session, event.subject_type, event.subject_id)
    if shown is None:
        return [], None
    return [(f"user:{event.subject_id}", _text(event, shown))], shown


_OWNERS = {"order": _order, "payment": _payment, "refund": _refund, "user": _user}


async def envelopes(session: AsyncSession, event: OutboxEvent) -> list[Envelope]:
    """Every ``(audience, text)`` ``event`` goes to: its owners, then the admin channel."""
    owners = _OWNERS.get(event.subject_type)
    if owners is None:
        out: list[Envelope] = []
        full = await event_payloads.payload(session, event)
    else:
        out, current = await owners(session, event)
        full = event_payloads.body(event, current)
    out.append((ADMIN_CHANNEL, json.dumps({"type": "event", "event": full}, separators=(",", ":"))))
    return out
