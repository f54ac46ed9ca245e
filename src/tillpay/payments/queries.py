"""Reading payments, refunds and stored webhook events as a principal may see them."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from tillpay.accounts.permissions import Permission
from tillpay.accounts.principal import Principal
from tillpay.kit.errors import NotFound
from tillpay.orders import service as orders
from tillpay.orders.models import Order
from tillpay.payments.models import Payment, Refund, WebhookEvent


async def get_payment(session: AsyncSession, principal: Principal, payment_id: str) -> Payment:
    """A customer's own payment, any for ORDERS_READ_ANY; a machine credential only its
    own merchant's headless payments (404 for everything else)."""
    payment = await session.get(Payment, payment_id)
    if payment is not None and principal.is_machine:
        order = await session.get(Order, payment.order_id)
        if order is None or not orders.merchant_owns(principal, order):
            raise NotFound("No such payment.")
        return payment
    if payment is None or not (
        payment.customer_id == principal.user_id or principal.can(Permission.ORDERS_READ_ANY)
    ):
        raise NotFound("No such payment.")
    return payment


async def order_payments(
    session: AsyncSession, principal: Principal, order_id: str
) -> list[Payment]:
    await orders.get_order(session, principal, order_id)
    rows = await session.execute(
        select(Payment).where(Payment.order_id == order_id).order_by(Payment.created_at, Payment.id)
    )
    return list(rows.scalars())


async def list_refunds(
    session: AsyncSession, principal: Principal, payment_id: str
) -> list[Refund]:
    await get_payment(session, principal, payment_id)
    rows = await session.execute(
        select(Refund).where(Refund.payment_id == payment_id).order_by(Refund.created_at, Refund.id)
    )
    return list(rows.scalars())


async def admin_payments(
    session: AsyncSession, *, needs_review: bool | None, limit: int
) -> list[Payment]:
    """The newest payments, optionally only those (not) needing review (for operators)."""
    query = select(Payment).order_by(Payment.created_at.desc()).limit(limit)
    if needs_review:
        # Bare, as ix_payments_needs_review_created_at_id's predicate is written.
        query = query.where(Payment.needs_review.expression)
    elif needs_review is not None:
        query = query.where(Payment.needs_review.is_(False))
    return list((await session.execute(query)).scalars())


async def webhook_events(
    session: AsyncSession, *, status: str | None, limit: int
) -> list[WebhookEvent]:
    """The newest stored provider webhooks, optionally of one status (for operators)."""
    query = select(WebhookEvent).order_by(WebhookEvent.received_at.desc()).limit(limit)
    if status is not None:
        query = query.where(WebhookEvent.status == status)
    return list((await session.execute(query)).scalars())
