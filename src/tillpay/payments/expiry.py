"""Order expiry as payments sees it: an unpaid order past its window expires unless one
of its payments is still open (its outcome may yet be a capture)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Exists, select
from sqlalchemy.ext.asyncio import AsyncSession

from tillpay.orders import service as orders
from tillpay.orders.models import Order
from tillpay.payments.models import Payment, PaymentStatus

OPEN = (PaymentStatus.REQUIRES_ACTION, PaymentStatus.PROCESSING, PaymentStatus.UNKNOWN)


def payment_open() -> Exists:
    """True for an order (correlated on ``orders.id``) with a payment still open."""
    return select(Payment.id).where(Payment.order_id == Order.id, Payment.status.in_(OPEN)).exists()


async def expire_unpaid_orders(
    session: AsyncSession, *, now: datetime | None = None, batch: int = 100
) -> int:
    """Expire due orders that no open payment holds; returns how many expired."""
    return await orders.expire_due(session, awaiting_payment=payment_open(), now=now, batch=batch)
