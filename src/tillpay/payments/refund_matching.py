"""Matching a provider's refund to tillpay's own, or booking one made outside tillpay."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from tillpay.audit.service import Actor, record
from tillpay.kit.logging import get_logger
from tillpay.payments.apply import flag_for_review, reserve_refund_row
from tillpay.payments.errors import RetryLater
from tillpay.payments.models import Payment, Refund, RefundStatus
from tillpay.payments.providers.base import RefundState

log = get_logger(__name__)


async def match_refund(
    session: AsyncSession, payment: Payment, state: RefundState
) -> Refund | None:
    """The payment's refund this provider refund is: by provider refund id, else by the
    tillpay refund id the provider carries (our refund's answer may not be stored yet)."""
    if state.provider_refund_id:
        found = (
            (
                await session.execute(
                    select(Refund)
                    .where(
                        Refund.payment_id == payment.id,
                        Refund.provider_refund_id == state.provider_refund_id,
                    )
                    .order_by(Refund.created_at.desc(), Refund.id.desc())
                )
            )
            .scalars()
            .first()
        )
        if found is not None:
            return found
    if state.tillpay_refund_id:
        own = await session.get(Refund, state.tillpay_refund_id)
        if (
            own is not None
            and own.payment_id == payment.id
            and own.provider_refund_id in (None, state.provider_refund_id)
        ):
            return own
    return None


async def record_external_refund(
    session: AsyncSession, payment: Payment, attempt_id: str, state: RefundState
) -> Refund | None:
    """A refund made outside tillpay (the provider's dashboard), confirmed by the provider's
    API: reserve it under the payment lock like any refund, or flag what cannot be booked.
    None when there is nothing to apply."""
    if state.status is RefundStatus.FAILED:
        return None  # no money moved
    if state.tillpay_refund_id:
        # The provider says tillpay made it, but no refund of this payment is that one.
        await flag_for_review(session, payment, "refund_unmatched", source="webhook")
        return None
    unresolved = (
        await session.execute(
            select(Refund.id).where(
                Refund.payment_id == payment.id,
                Refund.status.in_((RefundStatus.PENDING, RefundStatus.UNKNOWN)),
                Refund.provider_refund_id.is_(None),
            )
        )
    ).first()
    if unresolved is not None:
        # One of our own refunds has no provider id yet: it may be this one.
        raise RetryLater("an own refund is still unresolved")
    amount = state.amount
    if amount is None or amount <= 0:
        await flag_for_review(session, payment, "refund_unmatched", source="webhook")
        return None
    if amount > payment.amount_captured - payment.amount_refund_reserved:
        if amount <= payment.amount_captured - payment.amount_refunded:
            raise RetryLater("own refunds still pending")  # they may fail and free room
        # More than was ever left to refund: a person decides; nothing is posted.
        await flag_for_review(
            session, payment, "external_refund_exceeds_refundable", source="webhook"
        )
        await record(
            session,
            Actor.system(),
            "refund.external_refused",
            outcome="flagged",
            target_type="payment",
            target_id=payment.id,
            details={
                "provider_refund_id": state.provider_refund_id,
                "amount": amount,
                "refundable": payment.amount_captured - payment.amount_refund_reserved,
            },
        )
        return None
    refund = await reserve_refund_row(
        session,
        payment,
        attempt_id,
        amount,
        reason="provider_initiated",
        created_by=None,
        provider_refund_id=state.provider_refund_id,
        external=True,
    )
    await record(
        session,
        Actor.system(),
        "refund.external_recorded",
        target_type="refund",
        target_id=refund.id,
        details={
            "payment_id": payment.id,
            "amount": amount,
            "provider_refund_id": state.provider_refund_id,
        },
    )
    log.warning("payments.external_refund", payment_id=payment.id, refund_id=refund.id)
    return refund
