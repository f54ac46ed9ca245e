"""The JSON body of an event as tillpay sends it (merchant webhooks, the RabbitMQ hub):
``{id, type, created, data}``, where ``data.object`` is the subject's **current** state,
as the API returns it. A late retry therefore never carries a stale status;
``data.details`` keeps what the event itself recorded (e.g. an order's ``from`` and
``to`` status)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import joinedload

from tillpay.accounts.models import User
from tillpay.accounts.schemas import UserOut
from tillpay.events.models import OutboxEvent
from tillpay.orders.models import Order
from tillpay.orders.schemas import OrderOut
from tillpay.payments.models import Payment, Refund
from tillpay.payments.schemas import PaymentOut, RefundOut


async def current_object(
    session: AsyncSession, subject_type: str, subject_id: str
) -> dict[str, Any] | None:
    """The subject as ``GET /v1/<subjects>/{id}`` shows it now (None: gone or unknown)."""
    if subject_type == "order":
        order = (
            (
                await session.execute(
                    select(Order).options(joinedload(Order.lines)).where(Order.id == subject_id)
                )
            )
            .unique()
            .scalar_one_or_none()
        )
        return None if order is None else OrderOut.model_validate(order).model_dump(mode="json")
    if subject_type == "payment":
        payment = await session.get(Payment, subject_id)
        return (
            None if payment is None else PaymentOut.model_validate(payment).model_dump(mode="json")
        )
    if subject_type == "refund":
        refund = await session.get(Refund, subject_id)
        return None if refund is None else RefundOut.model_validate(refund).model_dump(mode="json")
    if subject_type == "user":
        # The public user of GET /v1/me: no password hash, TOTP secret or token.
        user = await session.get(User, subject_id)
        return None if user is None else UserOut.model_validate(user).model_dump(mode="json")
    return None


async def payload(session: AsyncSession, event: OutboxEvent) -> dict[str, Any]:
    """The body of ``event``, its subject read now."""
    return body(event, await current_object(session, event.subject_type, event.subject_id))


def body(event: OutboxEvent, current: dict[str, Any] | None) -> dict[str, Any]:
    """The body of ``event`` around ``current``, its subject as :func:`current_object`
    shows it (for a caller that read it already)."""
    details = event.payload.get("data", {}) if isinstance(event.payload, dict) else {}
    return {
        "id": event.id,
        "type": event.type,
        "created": event.created_at.isoformat().replace("+00:00", "Z"),
        "data": {"object": current, "details": details},
    }
