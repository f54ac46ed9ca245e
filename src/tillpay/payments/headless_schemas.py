"""Bodies of the headless payments API (a shop backend's own order, paid through tillpay)."""

from __future__ import annotations

import json
import re
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, EmailStr, Field, field_validator

from tillpay.kit.money import AnyCurrencyCode, PositiveAmountMinor
from tillpay.orders.models import Order, OrderStatus
from tillpay.payments.models import Payment
from tillpay.payments.schemas import PaymentOut

METADATA_MAX_KEYS = 20
METADATA_KEY = re.compile(r"^[a-zA-Z0-9_.\-]{1,40}$")
METADATA_VALUE_MAX = 500
METADATA_MAX_BYTES = 4096

Reference = Annotated[
    str,
    Field(
        min_length=1,
        max_length=128,
        pattern=r"^[A-Za-z0-9_.:/\-]+$",
        description="The shop's own order reference; unique per merchant.",
    ),
]


class HeadlessCustomer(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: Annotated[EmailStr, Field(max_length=320)]
    external_id: Annotated[str, Field(min_length=1, max_length=128)] | None = Field(
        None, description="The shop's own id of its customer."
    )


class HeadlessPaymentCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "amount": 2599,
                    "currency": "USD",
                    "reference": "order-10042",
                    "description": "Order 10042 at Acme",
                    "customer": {"email": "ada@example.com", "external_id": "cus_881"},
                    "provider": "sandbox",
                    "return_url": "https://shop.example.com/orders/10042/paid",
                    "metadata": {"cart_id": "c_5521", "channel": "web"},
                }
            ]
        },
    )
    amount: PositiveAmountMinor
    currency: AnyCurrencyCode
    reference: Reference
    description: Annotated[str, Field(min_length=1, max_length=500)] | None = None
    customer: HeadlessCustomer
    provider: Annotated[str, Field(min_length=2, max_length=32, pattern=r"^[a-z]+$")]
    return_url: Annotated[str, Field(max_length=2048)] | None = Field(
        None,
        description="Where the payer's browser goes afterwards: https (http only on "
        "localhost outside production).",
    )
    metadata: dict[str, str] = Field(
        default_factory=dict,
        description=f"At most {METADATA_MAX_KEYS} keys of [a-zA-Z0-9_.-] (≤ 40 chars), string "
        f"values ≤ {METADATA_VALUE_MAX} chars, ≤ {METADATA_MAX_BYTES} bytes as JSON.",
    )

    @field_validator("metadata")
    @classmethod
    def _bounded(cls, value: dict[str, str]) -> dict[str, str]:
        if len(value) > METADATA_MAX_KEYS:
            raise ValueError(f"metadata has more than {METADATA_MAX_KEYS} keys")
        for key, item in value.items():
            if not METADATA_KEY.fullmatch(key):
                raise ValueError("metadata keys are 1-40 characters of [a-zA-Z0-9_.-]")
            if len(item) > METADATA_VALUE_MAX:
                raise ValueError(f"metadata values are at most {METADATA_VALUE_MAX} characters")
        if len(json.dumps(value, ensure_ascii=False).encode()) > METADATA_MAX_BYTES:
            raise ValueError(f"metadata is larger than {METADATA_MAX_BYTES} bytes")
        return value


class HeadlessCustomerOut(BaseModel):
    email: str | None
    external_id: str | None


class HeadlessPaymentOut(PaymentOut):
    kind: str = "headless"
    merchant: str
    reference: str
    order_status: OrderStatus
    description: str | None
    customer: HeadlessCustomerOut
    metadata: dict[str, Any]

    @classmethod
    def of(cls, order: Order, payment: Payment) -> HeadlessPaymentOut:
        base = PaymentOut.model_validate(payment).model_dump()
        return cls(
            **base,
            merchant=order.merchant or "",
            reference=order.reference or "",
            order_status=order.status,
            description=order.description,
            customer=HeadlessCustomerOut(
                email=order.customer_email, external_id=order.customer_external_id
            ),
            metadata=dict(order.metadata_ or {}),
        )


class HeadlessPaymentPage(BaseModel):
    items: list[HeadlessPaymentOut]
    next_cursor: str | None
