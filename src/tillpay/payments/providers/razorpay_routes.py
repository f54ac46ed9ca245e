"""The Razorpay Checkout callback: the browser reports a payment, tillpay checks and syncs.

Razorpay Checkout hands the page ``razorpay_order_id``, ``razorpay_payment_id`` and
``razorpay_signature`` (HMAC-SHA256 of ``order_id|payment_id`` with the key secret). The
page posts them here as JSON. The signature only proves the browser saw a Razorpay
payment; the payment's state is then read from Razorpay's API, exactly as the janitor
would, so the callback can never mark anything paid by itself.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request
from pydantic import BaseModel, ConfigDict, Field

from tillpay.kit.errors import BadRequest, NotFound
from tillpay.kit.http.ratelimit import RateLimit
from tillpay.kit.logging import get_logger
from tillpay.payments import sync
from tillpay.payments.models import Payment, PaymentStatus
from tillpay.payments.providers.razorpay import RazorpayAdapter
from tillpay.payments.runtime import PaymentsRuntime

security_log = get_logger("tillpay.security")

router = APIRouter(tags=["payments"])

_RAZORPAY_ID = r"^[A-Za-z0-9_]{1,64}$"


class RazorpayCallback(BaseModel):
    """What Razorpay Checkout's ``handler`` receives on success."""

    model_config = ConfigDict(extra="forbid")

    razorpay_order_id: str = Field(pattern=_RAZORPAY_ID)
    razorpay_payment_id: str = Field(pattern=_RAZORPAY_ID)
    razorpay_signature: str = Field(min_length=1, max_length=128)


class RazorpayCallbackOut(BaseModel):
    payment_id: str
    order_id: str
    status: PaymentStatus


def _runtime(request: Request) -> PaymentsRuntime:
    rt: PaymentsRuntime = request.app.state.payments
    return rt


@router.post(
    "/v1/payments/{payment_id}/razorpay/callback",
    response_model=RazorpayCallbackOut,
    dependencies=[Depends(RateLimit("payments"))],
    summary="Razorpay Checkout callback",
    responses={400: {"description": "The Checkout signature does not verify"}},
)
async def razorpay_callback(
    payment_id: Annotated[str, Path(max_length=40)],
    body: RazorpayCallback,
    rt: Annotated[PaymentsRuntime, Depends(_runtime)],
) -> RazorpayCallbackOut:
    """Public on purpose (it carries its own proof). The signature is checked against the
    order id tillpay saved for the payment's latest attempt, then the payment is synced
    with Razorpay's API; the answer is the synced status."""
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
        or body.razorpay_order_id != saved_order_id
        or not adapter.verify_checkout_signature(
            order_id=saved_order_id,
            payment_id=body.razorpay_payment_id,
            signature=body.razorpay_signature,
        )
    ):
        security_log.warning("razorpay.callback_signature_invalid", payment_id=payment_id)
        raise BadRequest("Invalid Razorpay signature.", code="invalid_signature")
    synced = await sync.sync_payment(rt, payment_id, source="callback")
    if synced is None:
        raise NotFound("No such payment.")
    return RazorpayCallbackOut(payment_id=synced.id, order_id=synced.order_id, status=synced.status)
