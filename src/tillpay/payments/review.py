"""Clearing a payment's review flag: an operator looked at money tillpay could not apply
(a late success, a capture for an order already paid or no longer payable, a mismatch, an
unmatched provider refund) and says it is dealt with. The API route and the console both
call :func:`mark_reviewed`."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from tillpay.accounts.permissions import Permission
from tillpay.accounts.principal import Principal
from tillpay.audit.service import record
from tillpay.events.service import emit
from tillpay.kit.db import utcnow
from tillpay.kit.errors import Conflict, Forbidden, Unprocessable
from tillpay.kit.logging import get_logger
from tillpay.payments.apply import lock_payment, review_event_data
from tillpay.payments.models import Payment

log = get_logger(__name__)

#: The power it takes (the API's payment operations: an administrator with 2FA).
PERMISSION = Permission.PAYMENTS_OPERATE
NOTE_MAX = 500


async def mark_reviewed(
    session: AsyncSession, principal: Principal, payment_id: str, note: str
) -> Payment:
    """Clear ``needs_review`` under the payment's lock (order, then payment: the package's
    lock order, so a flag raised at the same time waits or is seen), keeping who, when
    and why; audited, and announced as ``payment.reviewed``. 403 without the power (asked
    before the payment is looked up), 404 for no such payment, 409 when it is not flagged
    (already reviewed, or never flagged)."""
    if not principal.can(PERMISSION):
        raise Forbidden("Only an administrator may mark a payment reviewed.")
    note = note.strip()
    if not note or len(note) > NOTE_MAX:
        raise Unprocessable(
            "Say what was done: a note of 1 to 500 characters.", code="invalid_note"
        )
    order, payment = await lock_payment(session, payment_id)
    if not payment.needs_review:
        raise Conflict("This payment does not need review.", code="payment_not_flagged")
    reason = payment.review_reason
    payment.needs_review = False
    payment.reviewed_at = utcnow()
    payment.reviewed_by = principal.user_id[:40]
    payment.review_note = note
    await record(
        session,
        principal.actor(),
        "payment.reviewed",
        target_type="payment",
        target_id=payment.id,
        details={"reason": reason, "note": note},
    )
    await emit(
        session,
        "payment.reviewed",
        subject_type="payment",
        subject_id=payment.id,
        data=review_event_data(payment, order, reason),
    )
    log.info("payments.reviewed", payment_id=payment.id, reason=reason)
    return payment
