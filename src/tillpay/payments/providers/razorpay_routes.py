"""The Razorpay Checkout callback: the browser reports a payment, tillpay checks and syncs.

Razorpay Checkout hands the page ``razorpay_order_id``, ``razorpay_payment_id`` and
``razorpay_signature`` (HMAC-SHA256 of ``order_id|payment_id`` with the key secret). The
page posts them here as JSON; :mod:`.razorpay_checkout` checks and syncs.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request
from pydantic import BaseModel, ConfigDict, Field

from tillpay.kit.http.ratelimit import RateLimit
from tillpay.kit.logging import get_logger
from tillpay.payments.models import PaymentStatus
from tillpay.payments.providers.razorpay_checkout import confirm_checkout
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
    model_config = ConfigDict(from_attributes=True)

    payment_id: str = Field(validation_alias="id")
    order_id: str
    status: PaymentStatus


async def _runtime(request: Request) -> PaymentsRuntime:
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
    payment = await confirm_checkout(
        rt,
        payment_id,
        razorpay_order_id=body.razorpay_order_id,
        razorpay_payment_id=body.razorpay_payment_id,
        signature=body.razorpay_signature,
    )
    return RazorpayCallbackOut.model_validate(payment)
