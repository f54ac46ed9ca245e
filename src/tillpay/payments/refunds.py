"""Refunds tillpay makes: reserve under the payment lock, call the provider, finalise;
and the janitor's re-read of an open refund."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from tillpay.accounts.permissions import Permission
from tillpay.accounts.principal import Principal
from tillpay.audit.service import record
from tillpay.kit import idempotency
from tillpay.kit.db import utcnow
from tillpay.kit.errors import Conflict, Forbidden, NotFound
from tillpay.kit.idempotency import Answer, IdempotentRequest
from tillpay.kit.outbound import ProviderError, ProviderUnavailable
from tillpay.orders import service as orders
from tillpay.orders.models import Order, OrderKind
from tillpay.payments.apply import apply_refund_state, lock_payment, lock_refund, reserve_refund_row
from tillpay.payments.errors import RefundExceedsCaptured
from tillpay.payments.models import PaymentAttempt, PaymentStatus, Refund, RefundStatus
from tillpay.payments.providers.base import RefundState
from tillpay.payments.runtime import PaymentsRuntime
from tillpay.payments.schemas import RefundOut
from tillpay.settings import Settings


def _may_refund(principal: Principal, settings: Settings, order: Order) -> bool:
    if principal.is_machine:
        # A shop credential: its own merchant's headless payments, with refunds:write.
        return Permission.REFUNDS_WRITE in principal.permissions and orders.merchant_owns(
            principal, order
        )
    if order.kind is OrderKind.HEADLESS:
        # A person refunding a shop backend's payment: the headless refund power (an
        # administrator with 2FA; without 2FA, 403 admin_2fa_required).
        return principal.can(Permission.REFUNDS_WRITE)
    own_lines = (
        settings.vendor_refunds_enabled
        and Permission.ORDERS_READ_VENDOR in principal.permissions
        and bool(order.lines)
        and all(line.vendor_id == principal.user_id for line in order.lines)
    )
    # The admin power last: an admin without 2FA is refused (403) only where it is needed.
    return own_lines or principal.can(Permission.REFUNDS_CREATE)


@dataclass
class _RefundCall:
    """A refund committed (reserved) before its provider call."""

    record_id: str
    refund_id: str
    payment_id: str
    provider: str
    object_id: str
    reference: str
    amount: int
    currency: str
    reason: str
    provider_refund_id: str | None = None
    resumed: bool = False


def _answer(refund: Refund) -> Answer:
    status_code = {RefundStatus.FAILED: 502, RefundStatus.UNKNOWN: 503}.get(refund.status, 201)
    return Answer(status_code, RefundOut.model_validate(refund).model_dump(mode="json"))


async def create_refund(
    rt: PaymentsRuntime,
    principal: Principal,
    request: IdempotentRequest,
    *,
    payment_id: str,
    amount: int | None,
    reason: str,
) -> Answer:
    """Reserve under the payment lock, call the provider, finalise. The sum of pending and
    succeeded refunds can never exceed the captured amount (lock + CHECK constraint).

    A retry whose first try died during the provider call (a stale claim) resumes the
    same Refund: the provider sees the same idempotency key (the Refund id) again."""
    async with rt.database.transaction() as session:
        claim = await idempotency.begin(session, request, stale_after=idempotency.STALE_CLAIM)
        if claim.answer is not None:
            return claim.answer
        if claim.resumed:
            call = await _resume_refund(session, claim)
        else:
            call = await _reserve_refund(
                session, rt.settings, principal, claim, payment_id, amount, reason
            )
        if isinstance(call, Answer):
            return call

    adapter = rt.adapter(call.provider)
    refund_state: RefundState | None = None
    failure: str | None = None
    try:
        if call.provider_refund_id is None:
            # On a resume this replays the create: same key, so the provider returns the
            # refund it already made instead of making another.
            refund_state = await adapter.refund(
                refund_id=call.refund_id,
                provider_object_id=call.object_id,
                reference=call.reference,
                amount=call.amount,
                currency=call.currency,
                reason=call.reason,
            )
        else:
            refund_state = await adapter.retrieve_refund(
                refund_id=call.refund_id,
                provider_refund_id=call.provider_refund_id,
                provider_object_id=call.object_id,
            )
    except ProviderError as exc:
        # A resumed refund may have happened on the first try: only a fresh create's
        # refusal proves nothing moved (the janitor reads it later otherwise).
        failure = None if call.resumed else exc.code
    except ProviderUnavailable:
        pass

    async with rt.database.transaction() as session:
        order, payment = await lock_payment(session, call.payment_id)
        refund = await lock_refund(session, call.refund_id)
        if refund_state is not None:
            await apply_refund_state(session, order, payment, refund, refund_state, source="create")
        elif failure is not None:
            await apply_refund_state(
                session,
                order,
                payment,
                refund,
                RefundState(RefundStatus.FAILED, None, call.amount, "error", failure_code=failure),
                source="create",
            )
        elif refund.status is RefundStatus.PENDING:
            # Outcome unknown; never over a state the janitor settled meanwhile.
            refund.status = RefundStatus.UNKNOWN
        return await idempotency.finish_by_id(session, call.record_id, _answer(refund))


async def _reserve_refund(
    session: AsyncSession,
    settings: Settings,
    principal: Principal,
    claim: idempotency.Claim,
    payment_id: str,
    amount: int | None,
    reason: str,
) -> _RefundCall:
    order, payment = await lock_payment(session, payment_id)
    if not _may_refund(principal, settings, order):
        if (
            payment.customer_id == principal.user_id
            or Permission.ORDERS_READ_VENDOR in principal.permissions
        ):
            raise Forbidden("You may not refund this payment.")
        raise NotFound("No such payment.")
    if payment.status is not PaymentStatus.SUCCEEDED:
        raise Conflict("Only succeeded payments can be refunded.", code="payment_not_refundable")
    refundable = payment.amount_captured - payment.amount_refund_reserved
    value = refundable if amount is None else amount
    if value <= 0 or value > refundable:
        raise RefundExceedsCaptured(
            f"At most {refundable} can still be refunded.", extra={"refundable": refundable}
        )
    captured = next(a for a in payment.attempts if a.status is PaymentStatus.SUCCEEDED)
    refund = await reserve_refund_row(
        session, payment, captured.id, value, reason=reason, created_by=principal.user_id
    )
    # A retry after a crash resumes this Refund instead of reserving a second one.
    idempotency.remember(claim, "refund", refund.id)
    await record(
        session,
        principal.actor(),
        "refund.created",
        target_type="refund",
        target_id=refund.id,
        details={"payment_id": payment.id, "amount": value},
    )
    return _RefundCall(
        record_id=claim.record.id,
        refund_id=refund.id,
        payment_id=payment.id,
        provider=payment.provider,
        object_id=captured.provider_object_id or "",
        reference=captured.reference,
        amount=value,
        currency=payment.currency,
        reason=reason,
    )


async def _resume_refund(session: AsyncSession, claim: idempotency.Claim) -> _RefundCall | Answer:
    """The Refund a stale claim reserved: its final state when known (the janitor or a
    webhook got there first), else the same provider call again."""
    assert claim.resource_id is not None
    refund = await session.get(Refund, claim.resource_id)
    assert refund is not None
    _, payment = await lock_payment(session, refund.payment_id)
    refund = await lock_refund(session, refund.id)
    if refund.status in (RefundStatus.SUCCEEDED, RefundStatus.FAILED):
        return idempotency.finish(claim, _answer(refund))
    attempt = await session.get(PaymentAttempt, refund.attempt_id)
    assert attempt is not None
    return _RefundCall(
        record_id=claim.record.id,
        refund_id=refund.id,
        payment_id=payment.id,
        provider=payment.provider,
        object_id=attempt.provider_object_id or "",
        reference=attempt.reference,
        amount=refund.amount,
        currency=refund.currency,
        reason=refund.reason,
        provider_refund_id=refund.provider_refund_id,
        resumed=True,
    )


async def sync_refund(rt: PaymentsRuntime, refund_id: str) -> None:
    async with rt.database.session() as session:
        refund = await session.get(Refund, refund_id)
        if refund is None:
            return
        attempt = await session.get(PaymentAttempt, refund.attempt_id)
        assert attempt is not None
        provider, object_id = attempt.provider, attempt.provider_object_id or ""
        payment_id, provider_refund_id, amount = (
            refund.payment_id,
            refund.provider_refund_id,
            refund.amount,
        )
        reference, currency, reason = attempt.reference, refund.currency, refund.reason
    adapter = rt.providers.get(provider)
    if adapter is None:
        return
    state: RefundState | None = None
    try:
        if provider_refund_id is None:
            # Replaying the create with the same idempotency key returns the original.
            state = await adapter.refund(
                refund_id=refund_id,
                provider_object_id=object_id,
                reference=reference,
                amount=amount,
                currency=currency,
                reason=reason,
            )
        else:
            state = await adapter.retrieve_refund(
                refund_id=refund_id,
                provider_refund_id=provider_refund_id,
                provider_object_id=object_id,
            )
    except (ProviderError, ProviderUnavailable):
        state = None
    async with rt.database.transaction() as session:
        order, payment = await lock_payment(session, payment_id)
        refund = await lock_refund(session, refund_id)
        refund.check_count += 1
        if state is not None:
            await apply_refund_state(session, order, payment, refund, state, source="janitor")
        else:
            refund.next_check_at = utcnow() + timedelta(minutes=5 * refund.check_count)
