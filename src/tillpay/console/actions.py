"""What the console's buttons do, each through the service the API route calls."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from tillpay.accounts.principal import Principal
from tillpay.console.payments import visible_payment
from tillpay.kit.errors import BadRequest
from tillpay.kit.idempotency import Answer, IdempotentRequest
from tillpay.kit.money import MoneyError, to_minor
from tillpay.payments import refunds
from tillpay.payments.runtime import PaymentsRuntime

REFUND_REASONS = {
    "requested_by_customer": "Requested by the customer",
    "duplicate": "Duplicate payment",
    "fraudulent": "Fraudulent",
    "other": "Other",
}


async def refund(
    rt: PaymentsRuntime,
    principal: Principal,
    *,
    payment_id: str,
    amount: str,
    reason: str,
    key: str,
) -> Answer:
    """``payments.refunds.create_refund`` with the API route's own idempotency request
    (same scope, operation and payload), keyed by the key the form was rendered with: a
    second post of the same form replays the first answer instead of refunding again."""
    if reason not in REFUND_REASONS:
        raise BadRequest("Choose a reason for the refund.")
    async with rt.database.read_session() as session:
        payment = await visible_payment(session, principal, payment_id)
    minor: int | None = None
    if amount.strip():
        try:
            minor = to_minor(Decimal(amount.strip()), payment.currency)
        except (InvalidOperation, MoneyError, ValueError):
            raise BadRequest(f"{amount!r} is not an amount in {payment.currency}.") from None
        if minor <= 0:
            raise BadRequest("The amount must be above zero.")
    request = IdempotentRequest(
        principal.user_id,
        key,
        f"POST /v1/payments/{payment_id}/refunds",
        {"amount": minor, "reason": reason},
    )
    return await refunds.create_refund(
        rt, principal, request, payment_id=payment_id, amount=minor, reason=reason
    )
