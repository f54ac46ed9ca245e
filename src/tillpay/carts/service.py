"""Cart rules. A cart holds one currency; prices shown are the catalog's current ones and
lines are flagged when the price changed, or the item became inactive or short of stock."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from tillpay.accounts.principal import Principal
from tillpay.carts.models import Cart, CartLine
from tillpay.catalog import pricing
from tillpay.catalog.models import Product, Variant
from tillpay.kit.errors import Conflict, NotFound, Unprocessable
from tillpay.kit.money import CurrencyMismatchError
from tillpay.settings import Settings


@dataclass(frozen=True)
class LineView:
    line: CartLine
    variant: Variant
    product: Product

    @property
    def unit_price(self) -> int:
        return self.variant.price_amount

    @property
    def available(self) -> bool:
        return self.product.active and self.variant.active

    @property
    def in_stock(self) -> bool:
        return self.variant.stock >= self.line.quantity

    @property
    def total(self) -> int | None:
        """The line total, or None when it exceeds the largest amount."""
        try:
            return pricing.line_total(
                self.unit_price, self.line.quantity, self.product.currency
            ).amount
        except pricing.TotalTooLarge:
            return None


@dataclass(frozen=True)
class Summary:
    """What checkout would make of the cart right now, by checkout's own money rules."""

    subtotal: int | None
    not_ready_reasons: list[str]

    @property
    def checkout_ready(self) -> bool:
        return not self.not_ready_reasons


def summarize(cart: Cart, views: list[LineView]) -> Summary:
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
                    pricing.line_total(v.unit_price, v.line.quantity, v.product.currency)
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
    return Summary(subtotal=subtotal, not_ready_reasons=reasons)


async def get_cart(session: AsyncSession, principal: Principal, *, lock: bool = False) -> Cart:
    """The customer's cart, created on first use (a concurrent creation is tolerated)."""
    query = select(Cart).where(Cart.customer_id == principal.user_id)
    if lock:
        query = query.with_for_update()
    cart = (await session.execute(query)).scalar_one_or_none()
    if cart is not None:
        return cart
    try:
        async with session.begin_nested():
            cart = Cart(customer_id=principal.user_id)
            session.add(cart)
            await session.flush()
    except IntegrityError:
        cart = (await session.execute(query)).scalar_one()
    await session.refresh(cart, ["lines"])
    return cart


async def view(session: AsyncSession, cart: Cart) -> list[LineView]:
    if not cart.lines:
        return []
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
    return views


async def _sellable_variant(session: AsyncSession, variant_id: str) -> tuple[Variant, Product]:
    row = (
        await session.execute(
            select(Variant, Product)
            .join(Product, Product.id == Variant.product_id)
            .where(Variant.id == variant_id)
        )
    ).one_or_none()
    if row is None or not (row[0].active and row[1].active):
        raise NotFound("No such product variant.")
    return row[0], row[1]


def _check_quantity(settings: Settings, quantity: int) -> None:
    if quantity > settings.cart_line_max_quantity:
        raise Unprocessable(
            f"At most {settings.cart_line_max_quantity} of one item per order.",
            code="quantity_too_large",
        )


async def add_line(
    session: AsyncSession,
    settings: Settings,
    principal: Principal,
    *,
    variant_id: str,
    quantity: int,
) -> Cart:
    cart = await get_cart(session, principal, lock=True)
    variant, product = await _sellable_variant(session, variant_id)
    if cart.lines and cart.currency and cart.currency != product.currency:
        raise Conflict(
            f"This cart is in {cart.currency}; the item is priced in {product.currency}.",
            code="currency_mismatch",
        )
    existing = next((line for line in cart.lines if line.variant_id == variant.id), None)
    total = quantity + (existing.quantity if existing else 0)
    _check_quantity(settings, total)
    if existing is not None:
        existing.quantity = total
        existing.unit_price_seen = variant.price_amount
    else:
        cart.lines.append(
            CartLine(variant_id=variant.id, quantity=quantity, unit_price_seen=variant.price_amount)
        )
    cart.currency = product.currency
    await session.flush()
    return cart


def _line(cart: Cart, line_id: str) -> CartLine:
    line = next((line for line in cart.lines if line.id == line_id), None)
    if line is None:
        raise NotFound("No such cart line.")
    return line


async def set_quantity(
    session: AsyncSession, settings: Settings, principal: Principal, line_id: str, quantity: int
) -> Cart:
    cart = await get_cart(session, principal, lock=True)
    line = _line(cart, line_id)
    _check_quantity(settings, quantity)
    line.quantity = quantity
    await session.flush()
    return cart


async def remove_line(session: AsyncSession, principal: Principal, line_id: str) -> Cart:
    cart = await get_cart(session, principal, lock=True)
    cart.lines.remove(_line(cart, line_id))
    if not cart.lines:
        cart.currency = None
    await session.flush()
    return cart


async def clear(session: AsyncSession, cart: Cart) -> None:
    cart.lines.clear()
    cart.currency = None
    await session.flush()
