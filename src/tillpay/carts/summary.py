"""What the cart costs at today's catalog prices and whether checkout would take it, by
checkout's own money rules. Read-only: prices shown here are never charged."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from tillpay.carts.models import Cart, CartLine
from tillpay.catalog import pricing
from tillpay.catalog.models import Product, Variant
from tillpay.kit.money import CurrencyMismatchError


@dataclass(frozen=True)
class LineView:
    """A cart line at the current price, flagged when the price changed, or the item
    became inactive or short of stock."""

    line: CartLine
    variant: Variant
    product: Product

    @property
    def id(self) -> str:
        return self.line.id

    @property
    def product_id(self) -> str:
        return self.product.id

    @property
    def variant_id(self) -> str:
        return self.variant.id

    @property
    def title(self) -> str:
        return self.product.title + (f" — {self.variant.title}" if self.variant.title else "")

    @property
    def sku(self) -> str:
        return self.variant.sku

    @property
    def quantity(self) -> int:
        return self.line.quantity

    @property
    def unit_price_amount(self) -> int:
        return self.variant.price_amount

    @property
    def price_changed(self) -> bool:
        return self.unit_price_amount != self.line.unit_price_seen

    @property
    def available(self) -> bool:
        return self.product.active and self.variant.active

    @property
    def in_stock(self) -> bool:
        return self.variant.stock >= self.line.quantity

    @property
    def line_total_amount(self) -> int | None:
        """The line total, or None when it exceeds the largest amount."""
        try:
            return pricing.line_total(
                self.unit_price_amount, self.line.quantity, self.product.currency
            ).amount
        except pricing.TotalTooLarge:
            return None


@dataclass(frozen=True)
class CartView:
    """The cart as shown: its lines, their subtotal and why checkout would refuse it."""

    id: str
    currency: str | None
    lines: list[LineView]
    subtotal_amount: int | None
    not_ready_reasons: list[str]

    @property
    def checkout_ready(self) -> bool:
        return not self.not_ready_reasons


def summarize(cart: Cart, views: list[LineView]) -> CartView:
    reasons = []
    if not views:
        reasons.append("empty")
    if not all(v.available for v in views):
        reasons.append("unavailable")
    if not all(v.in_stock for v in views):
        reasons.append("out_of_stock")
    subtotal: int | None = 0
    if views:
        currency = cart.currency or views[0].product.currency
        try:
            subtotal = pricing.total(
                (
                    pricing.line_total(v.unit_price_amount, v.line.quantity, v.product.currency)
                    for v in views
                ),
                currency,
            ).amount
        except pricing.TotalTooLarge:
            subtotal = None
            reasons.append(pricing.TotalTooLarge.code)
        except CurrencyMismatchError:
            # Checkout refuses such a cart as needing attention (cart_needs_attention).
            subtotal = None
            reasons.append("unavailable")
    return CartView(
        id=cart.id,
        currency=cart.currency,
        lines=views,
        subtotal_amount=subtotal,
        not_ready_reasons=reasons,
    )


async def view(session: AsyncSession, cart: Cart) -> CartView:
    """The cart at today's catalog prices."""
    if not cart.lines:
        return summarize(cart, [])
    variant_ids = [line.variant_id for line in cart.lines]
    rows = (
        await session.execute(
            select(Variant, Product)
            .join(Product, Product.id == Variant.product_id)
            .where(Variant.id.in_(variant_ids))
        )
    ).all()
    by_id = {variant.id: (variant, product) for variant, product in rows}
    views = []
    for line in cart.lines:
        variant, product = by_id[line.variant_id]
        views.append(LineView(line, variant, product))
    return summarize(cart, views)
