"""Cart bodies. Quantities are strict positive integers; prices are never accepted."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from tillpay.kit.money import Quantity


class LineIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"variant_id": "var_01JD3XK5Q6R7S8T9V0W1X2Y3Z4", "quantity": 2}]
        },
    )
    variant_id: Annotated[str, Field(min_length=1, max_length=40)]
    quantity: Quantity


class QuantityIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"quantity": 3}]})
    quantity: Quantity


class CartLineOut(BaseModel):
    # Built from tillpay.carts.summary.LineView (a docstring would enter the OpenAPI).
    model_config = ConfigDict(from_attributes=True)

    id: str
    product_id: str
    variant_id: str
    title: str
    sku: str
    quantity: int
    unit_price_amount: int = Field(description="Current catalog price (minor units).")
    line_total_amount: int | None = Field(
        description="Quantity x current price; null when above the largest amount (2^53-1)."
    )
    price_changed: bool = Field(description="The price differs from when the line was added.")
    available: bool = Field(description="False when the product or variant was deactivated.")
    in_stock: bool


class CartOut(BaseModel):
    # Built from tillpay.carts.summary.CartView.
    model_config = ConfigDict(from_attributes=True)

    id: str
    currency: str | None
    lines: list[CartLineOut]
    subtotal_amount: int | None = Field(
        description="Sum of the line totals; null when above the largest amount (2^53-1)."
    )
    checkout_ready: bool = Field(description="Checkout would accept the cart as it is now.")
    not_ready_reasons: list[Literal["empty", "unavailable", "out_of_stock", "total_too_large"]] = (
        Field(description="Why checkout would refuse the cart; empty when it is ready.")
    )
