"""Checkout and order rules.

Lock order (one place, to stay deadlock-free): cart → variants in ascending id → order.
Stock is taken, held and returned by :mod:`tillpay.catalog.inventory`, exactly once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Exists, bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import joinedload

from tillpay.accounts.permissions import Permission
from tillpay.accounts.principal import Principal
from tillpay.audit.service import Actor, record
from tillpay.carts import service as carts
from tillpay.catalog import inventory, pricing
from tillpay.catalog.models import Product, Variant
from tillpay.events.service import emit
from tillpay.kit.db import utcnow
from tillpay.kit.errors import Conflict, NotFound
from tillpay.kit.money import Money
from tillpay.orders.models import Order, OrderEvent, OrderKind, OrderLine, OrderStatus
from tillpay.orders.schemas import OrderLineOut, OrderOut
from tillpay.orders.state import check_transition
from tillpay.settings import Settings


class EmptyCart(Conflict):
    code, title = "empty_cart", "The cart is empty"


class CartNeedsAttention(Conflict):
    code, title = "cart_needs_attention", "Some cart lines cannot be bought"


@dataclass(frozen=True)
class PricedLine:
    variant: Variant
    product: Product
    quantity: int

    @property
    def unit_price(self) -> Money:
        return Money(self.variant.price_amount, self.product.currency)

    @property
    def total(self) -> Money:
        return pricing.line_total(self.variant.price_amount, self.quantity, self.product.currency)


def order_total(lines: list[PricedLine], currency: str) -> Money:
    """Sum of line totals from catalog prices (client-sent amounts never enter); raises
    :class:`~tillpay.catalog.pricing.TotalTooLarge` above the largest amount."""
    return pricing.total((line.total for line in lines), currency)


async def checkout(session: AsyncSession, settings: Settings, principal: Principal) -> Order:
    """Turn the cart into a ``pending_payment`` order: snapshot lines and prices, reserve
    stock until ``expires_at``, empty the cart. All or nothing."""
    cart = await carts.get_cart(session, principal, lock=True)
    if not cart.lines:
        raise EmptyCart("Add items to the cart before checking out.")
    quantities = {line.variant_id: line.quantity for line in cart.lines}
    rows = await inventory.lock_variants(session, quantities)
    priced = [PricedLine(variant, product, quantities[variant.id]) for variant, product in rows]
    problems = [
        {"variant_id": p.variant.id, "reason": "unavailable"}
        for p in priced
        if not (p.variant.active and p.product.active)
    ]
    currencies = {p.product.currency for p in priced}
    if problems or len(priced) != len(quantities) or len(currencies) != 1:
        raise CartNeedsAttention(
            "Remove unavailable items from the cart and try again.", extra={"lines": problems}
        )
    currency = currencies.pop()
    total = order_total(priced, currency)
    now = utcnow()
    expires_at = now + timedelta(seconds=settings.reservation_ttl_seconds)
    for line in priced:
        await inventory.take_stock(session, line.variant.id, line.quantity)
    order = Order(
        customer_id=principal.user_id,
        status=OrderStatus.PENDING_PAYMENT,
        currency=currency,
        subtotal_amount=total.amount,
        total_amount=total.amount,
        expires_at=expires_at,
    )
    session.add(order)
    await session.flush()
    for line in priced:
        title = line.product.title + (f" — {line.variant.title}" if line.variant.title else "")
        session.add(
            OrderLine(
                order_id=order.id,
                product_id=line.product.id,
                variant_id=line.variant.id,
                vendor_id=line.product.vendor_id,
                title=title[:420],
                sku=line.variant.sku,
                unit_price_amount=line.variant.price_amount,
                quantity=line.quantity,
                line_total_amount=line.total.amount,
            )
        )
        inventory.reserve(
            session,
            order_id=order.id,
            variant_id=line.variant.id,
            quantity=line.quantity,
            expires_at=expires_at,
            now=now,
        )
    session.add(
        OrderEvent(
            order_id=order.id,
            from_status=None,
            to_status=OrderStatus.PENDING_PAYMENT.value,
            actor_id=principal.user_id,
            reason="checkout",
        )
    )
    await carts.clear(session, cart)
    await record(
        session,
        principal.actor(),
        "order.created",
        target_type="order",
        target_id=order.id,
        details={"total_amount": total.amount, "currency": currency},
    )
    await session.flush()
    await session.refresh(order, ["lines"])
    return order


async def lock_order(session: AsyncSession, order_id: str) -> Order | None:
    return (
        await session.execute(
            select(Order)
            .where(Order.id == order_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
    ).scalar_one_or_none()


async def transition(
    session: AsyncSession,
    order: Order,
    target: OrderStatus,
    *,
    actor: Actor,
    reason: str,
    data: dict[str, Any] | None = None,
) -> None:
    """Move a locked order along the state table, recording the event, an audit row and
    the ``order.<status>`` outbox event (``data`` adds to its payload). The one place
    that emits ``order.*`` events."""
    check_transition(order.status, target)
    previous = order.status
    order.status = target
    if target is OrderStatus.PAID:
        order.paid_at = utcnow()
    session.add(
        OrderEvent(
            order_id=order.id,
            from_status=previous.value,
            to_status=target.value,
            actor_id=actor.id,
            reason=reason,
        )
    )
    await record(
        session,
        actor,
        "order.status_changed",
        target_type="order",
        target_id=order.id,
        details={"from": previous.value, "to": target.value, "reason": reason},
    )
    await emit(
        session,
        f"order.{target.value}",
        subject_type="order",
        subject_id=order.id,
        data={
            "order_id": order.id,
            "from": previous.value,
            "to": target.value,
            "reason": reason,
            **headless_details(order),
            **(data or {}),
        },
    )


def headless_details(order: Order) -> dict[str, Any]:
    """What the events of a headless order carry: kind, merchant and the shop's reference."""
    if order.kind is not OrderKind.HEADLESS:
        return {}
    return {"kind": "headless", "merchant": order.merchant, "reference": order.reference}


def merchant_owns(principal: Principal, order: Order) -> bool:
    """Whether ``principal`` is a machine credential of the merchant whose headless order
    this is (a shop backend sees and acts on its own headless payments only)."""
    return (
        principal.is_machine
        and order.kind is OrderKind.HEADLESS
        and order.merchant is not None
        and order.merchant == principal.merchant
    )


def _visible(principal: Principal, order: Order) -> bool:
    return _may_see(principal, order.customer_id, order.merchant)


def _may_see(principal: Principal, customer_id: str | None, merchant: str | None) -> bool:
    """Own orders, or any with ORDERS_READ_ANY (an admin without 2FA: 403 for others').
    A machine credential's ``orders:read`` covers the shop's orders and its own merchant's
    headless ones, never another merchant's."""
    if principal.is_machine and merchant is not None and merchant != principal.merchant:
        return False
    own = customer_id is not None and customer_id == principal.user_id
    return own or principal.can(Permission.ORDERS_READ_ANY)


# The order and its lines in one statement (one round trip, one snapshot), built once.
_ORDER_WITH_LINES = (
    select(Order).options(joinedload(Order.lines)).where(Order.id == bindparam("order_id"))
)


async def get_order(session: AsyncSession, principal: Principal, order_id: str) -> Order:
    """The customer's own order (admins: any). Anything else is 404."""
    order = (
        (await session.execute(_ORDER_WITH_LINES, {"order_id": order_id}))
        .unique()
        .scalar_one_or_none()
    )
    if order is None or not _visible(principal, order):
        raise NotFound("No such order.")
    return order


_ORDER_COLUMNS = tuple(Order.__table__.c[name] for name in OrderOut.model_fields if name != "lines")
_LINE_COLUMNS = tuple(OrderLine.__table__.c[name] for name in OrderLineOut.model_fields)
# The order and its lines as rows (one per line, the order's columns repeated), built
# once: the hot read of an order needs no ORM objects, only what the API shows.
_ORDER_VIEW = (
    select(
        Order.__table__.c.customer_id,
        Order.__table__.c.merchant,
        *_ORDER_COLUMNS,
        *(column.label(f"line_{column.name}") for column in _LINE_COLUMNS),
    )
    .select_from(Order.__table__.outerjoin(OrderLine.__table__))
    .where(Order.__table__.c.id == bindparam("order_id"))
    .order_by(OrderLine.__table__.c.id)
)


async def order_view(session: AsyncSession, principal: Principal, order_id: str) -> OrderOut:
    """``GET /v1/orders/{id}``: :func:`get_order`'s rule (own order, or any with
    ORDERS_READ_ANY; else 404), read as rows rather than ORM objects."""
    connection = await session.connection()  # Core: no ORM execution layer for rows
    rows = (await connection.execute(_ORDER_VIEW, {"order_id": order_id})).all()
    if not rows:
        raise NotFound("No such order.")
    first = rows[0]._mapping
    if not _may_see(principal, first["customer_id"], first["merchant"]):
        raise NotFound("No such order.")
    order: dict[str, object] = {c.name: first[c.name] for c in _ORDER_COLUMNS}
    order["lines"] = [
        {c.name: row._mapping[f"line_{c.name}"] for c in _LINE_COLUMNS}
        for row in rows
        if row._mapping["line_id"] is not None
    ]
    return OrderOut.model_validate(order)


async def cancel(session: AsyncSession, principal: Principal, order_id: str) -> Order:
    order = await lock_order(session, order_id)
    if order is None or not _visible(principal, order):
        raise NotFound("No such order.")
    await transition(
        session, order, OrderStatus.CANCELLED, actor=principal.actor(), reason="cancelled"
    )
    await inventory.release_reservations(session, order.id)
    return order


async def fulfil(session: AsyncSession, principal: Principal, order_id: str) -> Order:
    order = await lock_order(session, order_id)
    if order is None:
        raise NotFound("No such order.")
    await transition(
        session, order, OrderStatus.FULFILLED, actor=principal.actor(), reason="fulfilled"
    )
    return order


async def events(session: AsyncSession, principal: Principal, order_id: str) -> list[OrderEvent]:
    await get_order(session, principal, order_id)
    rows = await session.execute(
        select(OrderEvent)
        .where(OrderEvent.order_id == order_id)
        .order_by(OrderEvent.occurred_at, OrderEvent.id)
    )
    return list(rows.scalars())


async def list_orders(
    session: AsyncSession,
    *,
    customer_id: str | None,
    status: OrderStatus | None,
    after: str | None,
    limit: int,
    since: str | None = None,
) -> list[Order]:
    """Shop orders, newest first, ``limit + 1`` of them. ``after`` (exclusive) and
    ``since`` (inclusive) bound the ids, which sort by creation time (``kit.ids.lowest_id``
    turns a date into one)."""
    # Headless payments' orders belong to a shop backend: listed under /v1/payments only.
    query = (
        select(Order).where(Order.kind == OrderKind.SHOP).order_by(Order.id.desc()).limit(limit + 1)
    )
    if customer_id is not None:
        query = query.where(Order.customer_id == customer_id)
    if status is not None:
        query = query.where(Order.status == status)
    if after is not None:
        query = query.where(Order.id < after)
    if since is not None:
        query = query.where(Order.id >= since)
    return list((await session.execute(query)).scalars())


@dataclass(frozen=True)
class VendorOrder:
    """An order as its vendor sees it: only the vendor's own lines."""

    order: Order
    lines: list[OrderLine]

    @property
    def id(self) -> str:
        return self.order.id

    @property
    def status(self) -> OrderStatus:
        return self.order.status

    @property
    def currency(self) -> str:
        return self.order.currency

    @property
    def created_at(self) -> datetime:
        return self.order.created_at


async def vendor_orders(
    session: AsyncSession, principal: Principal, *, after: str | None, limit: int
) -> list[VendorOrder]:
    """Orders containing the vendor's products, each with only that vendor's lines."""
    order_ids = (
        select(OrderLine.order_id).where(OrderLine.vendor_id == principal.user_id).distinct()
    )
    query = select(Order).where(Order.id.in_(order_ids)).order_by(Order.id.desc()).limit(limit + 1)
    if after is not None:
        query = query.where(Order.id < after)
    orders = list((await session.execute(query)).scalars())
    return [
        VendorOrder(o, [line for line in o.lines if line.vendor_id == principal.user_id])
        for o in orders
    ]


async def vendor_order(session: AsyncSession, principal: Principal, order_id: str) -> VendorOrder:
    """One order as :func:`vendor_orders` shows it: only the vendor's own lines; an order
    without any of them is 404, as if absent."""
    order = (
        (await session.execute(_ORDER_WITH_LINES, {"order_id": order_id}))
        .unique()
        .scalar_one_or_none()
    )
    lines = [] if order is None else [ln for ln in order.lines if ln.vendor_id == principal.user_id]
    if order is None or not lines:
        raise NotFound("No such order.")
    return VendorOrder(order, lines)


async def expire_due(
    session: AsyncSession,
    *,
    awaiting_payment: Exists,
    now: datetime | None = None,
    batch: int = 100,
) -> int:
    """Expire pending orders whose payment window passed and return their stock, once:
    the order row is locked and its status re-checked. An order for which
    ``awaiting_payment`` (a clause correlated on ``orders.id``, given by payments) holds
    waits for that payment's outcome (money may be moving)."""
    moment = now or utcnow()
    due = (
        (
            await session.execute(
                select(Order.id)
                .where(
                    Order.status == OrderStatus.PENDING_PAYMENT,
                    Order.expires_at <= moment,
                    ~awaiting_payment,
                )
                .order_by(Order.expires_at)
                .limit(batch)
            )
        )
        .scalars()
        .all()
    )
    expired = 0
    for order_id in due:
        order = await lock_order(session, order_id)
        if order is None or order.status is not OrderStatus.PENDING_PAYMENT:
            continue
        # Re-checked under the order lock: a payment may have started meanwhile.
        if (await session.execute(select(awaiting_payment).where(Order.id == order.id))).scalar():
            continue
        await transition(
            session,
            order,
            OrderStatus.EXPIRED,
            actor=Actor.system(),
            reason="payment_window_passed",
        )
        await inventory.release_reservations(session, order.id)
        expired += 1
    return expired
