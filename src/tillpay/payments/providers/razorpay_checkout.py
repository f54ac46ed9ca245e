"""Confirming a Razorpay Checkout callback: check its signature, then sync the payment.

The signature only proves the browser saw a Razorpay payment; the payment's state is then
read from Razorpay's API, exactly as the janitor would, so the callback can never mark
anything paid by itself.
"""

from __future__ import annotations

from tillpay.kit.errors import BadRequest, NotFound
from tillpay.kit.logging import get_logger
from tillpay.payments import sync
from tillpay.payments.models import Payment
from tillpay.payments.providers.razorpay import RazorpayAdapter
from tillpay.payments.runtime import PaymentsRuntime

security_log = get_logger("tillpay.security")


async def confirm_checkout(
    rt: PaymentsRuntime,
    payment_id: str,
    *,
    razorpay_order_id: str,
    razorpay_payment_id: str,
    signature: str,
) -> Payment:
    """The payment, synced with Razorpay, once the callback's signature verifies against
    the order id tillpay saved for the payment's latest attempt."""
    adapter = rt.providers.get("razorpay")
    if not isinstance(adapter, RazorpayAdapter):
        raise NotFound("No such payment.")
    async with rt.database.session() as session:
        payment = await session.get(Payment, payment_id)
        if payment is None or payment.provider != "razorpay":
            raise NotFound("No such payment.")
        latest = payment.attempts[-1] if payment.attempts else None
        saved_order_id = latest.provider_object_id if latest is not None else None
    if (
        saved_order_id is None
        or razorpay_order_id != saved_order_id
        or not adapter.verify_checkout_signature(
            order_id=saved_order_id, payment_id=razorpay_payment_id, signature=signature
        )
    ):
        security_log.warning("razorpay.callback_signature_invalid", payment_id=payment_id)
        raise BadRequest("Invalid Razorpay signature.", code="invalid_signature")
    synced = await sync.sync_payment(rt, payment_id, source="callback")
    if synced is None:
        raise NotFound("No such payment.")
    return synced
