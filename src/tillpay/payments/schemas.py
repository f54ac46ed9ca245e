"""Payment, refund, webhook and ledger bodies; the response schemas build themselves from
the models (``from_attributes``)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from tillpay.kit.money import PositiveAmountMinor
from tillpay.payments.models import PaymentStatus, RefundStatus


class PaymentCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"provider": "sandbox", "return_url": "http://localhost:3000/thanks"}]
        },
    )
    provider: Annotated[str, Field(min_length=2, max_length=32, pattern=r"^[a-z]+$")]
    return_url: Annotated[str, Field(max_length=2048)] | None = Field(
        None, description="Where the browser goes afterwards; must match the allow-list."
    )


class AttemptOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    attempt_no: int
    status: PaymentStatus
    provider_status: str | None
    error_code: str | None
    created_at: datetime


class NextAction(BaseModel):
    # redirect: send the browser to `redirect_url`; client_sdk: open the provider's
    # client-side SDK (e.g. Razorpay Checkout) with `client_data`.
    type: Literal["redirect", "client_sdk", "none"]
    redirect_url: str | None = None
    client_data: dict[str, Any] = Field(default_factory=dict)


class PaymentOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)  # next_action: Payment.next_action

    id: str
    order_id: str
    provider: str
    status: PaymentStatus
    amount: int
    currency: str
    amount_captured: int
    amount_refunded: int
    amount_refund_reserved: int
    applied: bool = Field(
        description="Whether this payment paid its order; a capture the order could not "
        "take (cancelled, expired, already paid) is held unapplied, flagged and refundable."
    )
    needs_review: bool
    next_action: NextAction
    attempts: list[AttemptOut]
    created_at: datetime
    updated_at: datetime


class PaymentReview(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"note": "Refunded in full: the order had been paid by another card."}]
        },
    )
    note: Annotated[
        str,
        StringConstraints(strip_whitespace=True, min_length=1, max_length=500),
        Field(description="What was done about it (kept with the payment and audited)."),
    ]


class ReviewedPaymentOut(PaymentOut):
    """A payment as an operator sees it after clearing its review flag."""

    review_reason: str | None = Field(description="Why it had been flagged.")
    reviewed_at: datetime | None
    reviewed_by: str | None = Field(description="The operator's user id.")
    review_note: str | None


class RefundCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"amount": 1500, "reason": "requested_by_customer"},
                {"reason": "duplicate"},
            ]
        },
    )
    amount: PositiveAmountMinor | None = Field(
        None, description="Minor units; omit for everything still refundable."
    )
    reason: Annotated[
        Literal["requested_by_customer", "duplicate", "fraudulent", "other"],
        Field(description="Why the money goes back."),
    ]


class RefundOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    payment_id: str
    amount: int
    currency: str
    status: RefundStatus
    reason: str
    error_code: str | None
    external: bool = Field(description="Made outside tillpay (in the provider's dashboard).")
    created_at: datetime


class ProviderInfo(BaseModel):
    name: str
    currencies: list[str]


class WebhookAck(BaseModel):
    received: bool
    duplicate: bool = False


class WebhookEventOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    provider: str
    event_type: str
    status: str
    attempts: int
    last_error: str | None
    received_at: datetime
    processed_at: datetime | None


class LedgerBalanceOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    account: str = Field(validation_alias="code")  # the ledger's account code
    kind: str
    owner_id: str | None
    currency: str
    balance: int = Field(description="Debits minus credits, in minor units.")
