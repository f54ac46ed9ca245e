"""Order bodies. Nothing here is settable by clients except through explicit actions."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict

from tillpay.kit.pagination import next_cursor
from tillpay.orders.models import Order, OrderStatus

if TYPE_CHECKING:
    from tillpay.orders.service import VendorOrder


class CheckoutIn(BaseModel):
    """Checkout takes the server-side cart; the body is empty. Prices, totals, currency or
    status sent by a client are refused (422)."""

    model_config = ConfigDict(extra="forbid")


class OrderLineOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

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
    # Built from an Order with its lines (a docstring would enter the OpenAPI).
    model_config = ConfigDict(from_attributes=True)

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

    @classmethod
    def of(cls, orders: list[Order], limit: int) -> OrderPage:
        """A page from ``limit + 1`` rows (the extra one says another page follows)."""
        return cls(
            items=[OrderOut.model_validate(o) for o in orders[:limit]],
            next_cursor=next_cursor(orders, limit),
        )


class VendorOrderOut(BaseModel):
    """What a vendor sees: the order's status and only their own lines (no customer data)."""

    # Built from tillpay.orders.service.VendorOrder.
    model_config = ConfigDict(from_attributes=True)

    id: str
    status: OrderStatus
    currency: str
    created_at: datetime
    lines: list[OrderLineOut]


class VendorOrderPage(BaseModel):
    items: list[VendorOrderOut]
    next_cursor: str | None

    @classmethod
    def of(cls, orders: list[VendorOrder], limit: int) -> VendorOrderPage:
        """A page from ``limit + 1`` rows (the extra one says another page follows)."""
        return cls(
            items=[VendorOrderOut.model_validate(o) for o in orders[:limit]],
            next_cursor=next_cursor(orders, limit),
        )


class OrderEventOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    from_status: str | None
    to_status: str
    actor_id: str | None
    reason: str | None
    occurred_at: datetime
