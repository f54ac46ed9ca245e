"""Order bodies. Nothing here is settable by clients except through explicit actions."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict

from tillpay.orders.models import OrderStatus


class CheckoutIn(BaseModel):
    """Checkout takes the server-side cart; the body is empty. Prices, totals, currency or
    status sent by a client are refused (422)."""

    model_config = ConfigDict(extra="forbid")


class OrderLineOut(BaseModel):
    id: str
    product_id: str
    variant_id: str
    vendor_id: str | None
    title: str
    sku: str
    unit_price_amount: int
    quantity: int
    line_total_amount: int


class OrderOut(BaseModel):
    id: str
    status: OrderStatus
    currency: str
    subtotal_amount: int
    total_amount: int
    refunded_amount: int
    expires_at: datetime
    paid_at: datetime | None
    created_at: datetime
    lines: list[OrderLineOut]


class OrderPage(BaseModel):
    items: list[OrderOut]
    next_cursor: str | None


class VendorOrderOut(BaseModel):
    """What a vendor sees: the order's status and only their own lines (no customer data)."""

    id: str
    status: OrderStatus
    currency: str
    created_at: datetime
    lines: list[OrderLineOut]


class VendorOrderPage(BaseModel):
    items: list[VendorOrderOut]
    next_cursor: str | None


class OrderEventOut(BaseModel):
    from_status: str | None
    to_status: str
    actor_id: str | None
    reason: str | None
    occurred_at: datetime
