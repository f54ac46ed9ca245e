"""Applying provider outcomes to payments and refunds: the functions that change their
state, each under the caller's session and row locks (order → payment → attempt → refund).
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from tillpay.audit.service import Actor, record
from tillpay.catalog import inventory
from tillpay.events.service import emit
from tillpay.kit.db import lock_row, utcnow
from tillpay.kit.errors import NotFound
from tillpay.kit.logging import get_logger
from tillpay.ledger import service as ledger
from tillpay.orders import service as orders
from tillpay.orders.models import Order, OrderKind, OrderStatus
from tillpay.payments import state as fsm
from tillpay.payments.models import Payment, PaymentAttempt, PaymentStatus, Refund, RefundStatus
from tillpay.payments.providers.base import ProviderState, RefundState
from tillpay.settings import Settings

log = get_logger(__name__)


def schedule_next_check(settings: Settings, attempt: PaymentAttempt, now: datetime) -> None:
    """Set when the janitor looks at an open attempt again (the last delay repeats)."""
    if attempt.status not in fsm.OPEN:
        attempt.next_check_at = None
        return
    plan = (
        settings.janitor_unknown_schedule
        if attempt.status is PaymentStatus.UNKNOWN
        else settings.janitor_pending_schedule
    )
    delay = plan[min(attempt.check_count, len(plan) - 1)] if plan else 3600
    attempt.next_check_at = now + timedelta(seconds=delay)


async def lock_payment(session: AsyncSession, payment_id: str) -> tuple[Order, Payment]:
    """Lock the order, then the payment (the package's one lock order)."""
    order_id = (
        await session.execute(select(Payment.order_id).where(Payment.id == payment_id))
    ).scalar_one_or_none()
    if order_id is None:
        raise NotFound("No such payment.")
    order = await orders.lock_order(session, order_id)
    payment = await lock_row(session, Payment, payment_id)
    assert order is not None
    return order, payment


async def lock_attempt(session: AsyncSession, attempt_id: str) -> PaymentAttempt:
    return await lock_row(session, PaymentAttempt, attempt_id)


def event_details(order: Order) -> dict[str, Any]:
    """What every ``payment.*`` / ``refund.*`` event of a headless payment adds to its
    details: kind, merchant and the shop's own reference (nothing for shop orders)."""
    return orders.headless_details(order)


def review_event_data(payment: Payment, order: Order, reason: str | None) -> dict[str, Any]:
    """The data of ``payment.needs_review`` and ``payment.reviewed``."""
    return {
        "payment_id": payment.id,
        "order_id": payment.order_id,
        "reason": reason,
        **event_details(order),
    }


def _capture_lines(order: Order, payment: Payment) -> list[ledger.Line]:
    """A capture that paid its order: provider clearing against the merchant's payable
    (headless) or the vendors' payables / platform revenue (shop orders)."""
    debit = ledger.clearing(payment.provider, payment.currency, payment.amount)
    if order.kind is OrderKind.HEADLESS:
        assert order.merchant is not None  # the kind_owner check constraint
        return [debit, ledger.merchant_payable(order.merchant, payment.currency, -payment.amount)]
    return [
        debit,
        *[
            ledger.vendor_payable(vendor, payment.currency, -amount)
            for vendor, amount in sorted(_vendor_shares(order).items(), key=lambda kv: kv[0] or "")
        ],
    ]


def _vendor_shares(order: Order) -> dict[str | None, int]:
    shares: dict[str | None, int] = defaultdict(int)
    for line in order.lines:
        shares[line.vendor_id] += line.line_total_amount
    return dict(shares)


async def apply_provider_state(
    session: AsyncSession,
    settings: Settings,
    order: Order,
    payment: Payment,
    attempt: PaymentAttempt,
    state: ProviderState,
    *,
    confirmed: bool,
    source: str,
) -> None:
    """Move an attempt (and its payment and order) to what the provider reports.

    ``confirmed`` means the state was read from the provider's API (not only claimed by a
    webhook or a browser). Terminal states never regress; a late success is accepted only
    when confirmed, and is flagged for review. A success whose amount, currency or
    reference does not match is never applied: the payment is flagged and audited. A state
    the adapter marks ``needs_review`` flags the payment too, and is never applied as a success.
    """
    now = utcnow()
    attempt.summary = {**attempt.summary, source: dict(state.summary)}
    if state.provider_object_id and not attempt.provider_object_id:
        attempt.provider_object_id = state.provider_object_id
    # What the payer needs next (an attempt resolved by the janitor learns it late).
    if state.redirect_url:
        attempt.redirect_url = state.redirect_url
    if state.client_data:
        attempt.client_data = dict(state.client_data)
    attempt.provider_status = state.provider_status
    if state.needs_review is not None:
        await flag_for_review(session, payment, state.needs_review, source=source)
        if state.status is PaymentStatus.SUCCEEDED:
            # Money moved, but not as asked (e.g. overpaid): a person decides, so the
            # attempt stays open and nothing is fulfilled; the janitor keeps watching.
            schedule_next_check(settings, attempt, now)
            return
    target = state.status
    current = attempt.status
    if target is current:
        schedule_next_check(settings, attempt, now)
        return
    if not fsm.can_move(current, target, confirmed_by_provider=confirmed):
        log.info(
            "payments.stale_state_ignored",
            attempt_id=attempt.id,
            current=current.value,
            reported=target.value,
            source=source,
        )
        return
    if target is PaymentStatus.SUCCEEDED:
        mismatch = _mismatch(payment, attempt, state)
        if mismatch is not None:
            await flag_for_review(session, payment, mismatch, source=source)
            schedule_next_check(settings, attempt, now)
            return
        if not confirmed:
            # A success we could not confirm with the provider: try again later.
            schedule_next_check(settings, attempt, now)
            return
    attempt.status = target
    attempt.error_code = state.decline_code if target is PaymentStatus.FAILED else None
    schedule_next_check(settings, attempt, now)
    await sync_payment_status(session, settings, order, payment, attempt, current, source=source)


def _mismatch(payment: Payment, attempt: PaymentAttempt, state: ProviderState) -> str | None:
    if state.amount != payment.amount:
        return "amount_mismatch"
    if (state.currency or "").upper() != payment.currency:
        return "currency_mismatch"
    if state.reference is not None and state.reference != attempt.reference:
        return "reference_mismatch"
    return None


async def flag_for_review(
    session: AsyncSession, payment: Payment, reason: str, *, source: str
) -> None:
    if payment.needs_review and payment.review_reason == reason:
        return
    payment.needs_review = True
    payment.review_reason = reason
    # The order is already in the session (every caller locked it with the payment).
    order = await session.get(Order, payment.order_id)
    assert order is not None
    await record(
        session,
        Actor.system(),
        "payment.review_flagged",
        outcome="flagged",
        target_type="payment",
        target_id=payment.id,
        details={"reason": reason, "source": source},
    )
    await emit(
        session,
        "payment.needs_review",
        subject_type="payment",
        subject_id=payment.id,
        data=review_event_data(payment, order, reason),
    )
    log.warning("payments.review_flagged", payment_id=payment.id, reason=reason, source=source)


async def sync_payment_status(
    session: AsyncSession,
    settings: Settings,
    order: Order,
    payment: Payment,
    attempt: PaymentAttempt,
    previous: PaymentStatus,
    *,
    source: str,
) -> None:
    """Carry the attempt's new status to the payment, order, ledger, outbox and audit."""
    before = payment.status
    payment.status = attempt.status
    data = {
        "payment_id": payment.id,
        "order_id": order.id,
        "status": payment.status.value,
        "amount": payment.amount,
        "currency": payment.currency,
        **event_details(order),
    }
    await record(
        session,
        Actor.system(),
        "payment.status_changed",
        target_type="payment",
        target_id=payment.id,
        details={"from": before.value, "to": payment.status.value, "source": source},
    )
    if payment.status is PaymentStatus.SUCCEEDED:
        payment.amount_captured = payment.amount
        if previous in fsm.FAILED_FINAL:
            await flag_for_review(session, payment, "late_success", source=source)
        await emit(
            session, "payment.succeeded", subject_type="payment", subject_id=payment.id, data=data
        )
        if order.status is OrderStatus.PENDING_PAYMENT:
            payment.applied = True
            await orders.transition(
                session,
                order,
                OrderStatus.PAID,
                actor=Actor.system(),
                reason="payment_succeeded",
                data={"payment_id": payment.id},
            )
            await inventory.commit_reservations(session, order.id)
            await ledger.post(
                session,
                kind="payment",
                reference_type="payment",
                reference_id=payment.id,
                lines=_capture_lines(order, payment),
            )
        else:
            # Money moved for an order that can no longer take it (expired, cancelled,
            # already paid by another payment): the payment stays captured but unapplied
            # (refundable), held in suspense for an operator.
            await ledger.post(
                session,
                kind="payment",
                reference_type="payment",
                reference_id=payment.id,
                lines=[
                    ledger.clearing(payment.provider, payment.currency, payment.amount),
                    ledger.unapplied(payment.currency, -payment.amount),
                ],
            )
            paid = order.status not in (OrderStatus.CANCELLED, OrderStatus.EXPIRED)
            reason = "order_already_paid" if paid else "order_not_payable"
            await flag_for_review(session, payment, reason, source=source)
    elif payment.status in fsm.FINAL:
        await emit(
            session,
            f"payment.{payment.status.value}",
            subject_type="payment",
            subject_id=payment.id,
            data={**data, "decline_code": attempt.error_code},
        )


async def reserve_refund_row(
    session: AsyncSession,
    payment: Payment,
    attempt_id: str,
    amount: int,
    *,
    reason: str,
    created_by: str | None,
    provider_refund_id: str | None = None,
    external: bool = False,
) -> Refund:
    """A pending Refund holding ``amount`` of the payment's refundable room (the caller
    holds the payment lock and has checked the room; the CHECK constraint backs it)."""
    refund = Refund(
        payment_id=payment.id,
        attempt_id=attempt_id,
        amount=amount,
        currency=payment.currency,
        status=RefundStatus.PENDING,
        reason=reason,
        provider_refund_id=provider_refund_id,
        external=external,
        created_by=created_by,
        next_check_at=utcnow() + timedelta(minutes=5),
    )
    session.add(refund)
    payment.amount_refund_reserved += amount
    await session.flush()
    return refund


async def lock_refund(session: AsyncSession, refund_id: str) -> Refund:
    return await lock_row(session, Refund, refund_id)


async def apply_refund_state(
    session: AsyncSession,
    order: Order,
    payment: Payment,
    refund: Refund,
    state: RefundState,
    *,
    source: str,
) -> None:
    """Apply a refund outcome once: success moves money (ledger, order status); failure
    releases the reservation. Final states never change again."""
    if state.provider_refund_id and not refund.provider_refund_id:
        refund.provider_refund_id = state.provider_refund_id
    if state.status is refund.status or not fsm.can_move_refund(refund.status, state.status):
        return
    refund.status = state.status
    data = {
        "refund_id": refund.id,
        "payment_id": payment.id,
        "amount": refund.amount,
        "currency": refund.currency,
        **event_details(order),
    }
    if state.status is RefundStatus.SUCCEEDED:
        refund.next_check_at = None
        payment.amount_refunded += refund.amount
        await ledger.post(
            session,
            kind="refund",
            reference_type="refund",
            reference_id=refund.id,
            lines=await _refund_lines(session, payment, refund.amount),
        )
        if payment.applied:
            # Only the payment that paid the order refunds it; an unapplied capture's
            # refund gives back money the order never received.
            order.refunded_amount = payment.amount_refunded
            target = (
                OrderStatus.REFUNDED
                if payment.amount_refunded >= payment.amount_captured
                else OrderStatus.PARTIALLY_REFUNDED
            )
            if order.status in (
                OrderStatus.PAID,
                OrderStatus.FULFILLED,
                OrderStatus.PARTIALLY_REFUNDED,
            ):
                await orders.transition(
                    session, order, target, actor=Actor.system(), reason="refund_succeeded"
                )
        await emit(
            session, "refund.succeeded", subject_type="refund", subject_id=refund.id, data=data
        )
    elif state.status is RefundStatus.FAILED:
        refund.next_check_at = None
        refund.error_code = state.failure_code
        payment.amount_refund_reserved -= refund.amount
        await emit(session, "refund.failed", subject_type="refund", subject_id=refund.id, data=data)
    else:
        refund.next_check_at = utcnow() + timedelta(minutes=5 * (refund.check_count + 1))
    await record(
        session,
        Actor.system(),
        "refund.status_changed",
        target_type="refund",
        target_id=refund.id,
        details={"to": refund.status.value, "source": source},
    )


async def _refund_lines(session: AsyncSession, payment: Payment, amount: int) -> list[ledger.Line]:
    """Reverse ``amount`` of what the payment's capture posted, account by account, over
    what the earlier refunds left: vendors (or ``unapplied_payments``) give back only what
    they still hold, and a full refund brings every account of the capture back to zero."""
    return await ledger.reversal_lines(
        session,
        original_kind="payment",
        original_id=payment.id,
        reversal_kind="refund",
        reversal_ids=select(Refund.id).where(Refund.payment_id == payment.id),
        amount=amount,
    )
