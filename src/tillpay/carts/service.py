"""Cart rules. A cart holds one currency; quantities are bounded. What the cart shows
(current prices, subtotal, checkout readiness) is computed in :mod:`tillpay.carts.summary`."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from tillpay.accounts.principal import Principal
from tillpay.carts import summary
from tillpay.carts.models import Cart, CartLine
from tillpay.carts.summary import CartView
from tillpay.catalog.models import Product, Variant
from tillpay.kit.errors import Conflict, NotFound, Unprocessable
from tillpay.settings import Settings


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
) -> CartView:
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
    return await summary.view(session, cart)


def _line(cart: Cart, line_id: str) -> CartLine:
    line = next((line for line in cart.lines if line.id == line_id), None)
    if line is None:
        raise NotFound("No such cart line.")
    return line


async def set_quantity(
    session: AsyncSession, settings: Settings, principal: Principal, line_id: str, quantity: int
) -> CartView:
    cart = await get_cart(session, principal, lock=True)
    line = _line(cart, line_id)
    _check_quantity(settings, quantity)
    line.quantity = quantity
    await session.flush()
    return await summary.view(session, cart)


async def remove_line(session: AsyncSession, principal: Principal, line_id: str) -> CartView:
    cart = await get_cart(session, principal, lock=True)
    cart.lines.remove(_line(cart, line_id))
    if not cart.lines:
        cart.currency = None
    await session.flush()
    return await summary.view(session, cart)


async def clear(session: AsyncSession, cart: Cart) -> None:
    cart.lines.clear()
    cart.currency = None
    await session.flush()


async def view_cart(session: AsyncSession, principal: Principal) -> CartView:
    """The customer's cart as shown: current prices, subtotal, checkout readiness."""
    return await summary.view(session, await get_cart(session, principal))


async def empty_cart(session: AsyncSession, principal: Principal) -> CartView:
    cart = await get_cart(session, principal, lock=True)
    await clear(session, cart)
    return await summary.view(session, cart)
