"""Stock: taking it for an order, holding it in reservations, returning or selling it.

Lock order (callers keep it, to stay deadlock-free): cart → variants in ascending id →
order. Stock moves only through conditional updates (``stock >= :q``) backed by a CHECK
constraint, and a reservation's status changes once (``WHERE status = 'active'``), so
stock is taken and returned exactly once whatever the concurrency.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from tillpay.catalog.models import Product, ReservationStatus, Variant
from tillpay.catalog.models import StockReservation as Reservation
from tillpay.kit.db import utcnow
from tillpay.kit.errors import Conflict


class OutOfStock(Conflict):
    code, title = "out_of_stock", "Not enough stock"


async def lock_variants(
    session: AsyncSession, variant_ids: Iterable[str]
) -> list[tuple[Variant, Product]]:
    """The variants with their products, variant rows locked in ascending id."""
    rows = (
        await session.execute(
            select(Variant, Product)
            .join(Product, Product.id == Variant.product_id)
            .where(Variant.id.in_(sorted(variant_ids)))
            .order_by(Variant.id)
            .with_for_update(of=Variant)
        )
    ).all()
    return [(variant, product) for variant, product in rows]


async def take_stock(session: AsyncSession, variant_id: str, quantity: int) -> None:
    """Subtract ``quantity`` from the variant's stock, or raise :class:`OutOfStock`."""
    result = await session.execute(
        update(Variant)
        .where(Variant.id == variant_id, Variant.stock >= quantity)
        .values(stock=Variant.stock - quantity)
        .returning(Variant.id)
    )
    if result.scalar_one_or_none() is None:
        raise OutOfStock(
            "Not enough stock for an item in the cart.", extra={"variant_id": variant_id}
        )


def reserve(
    session: AsyncSession,
    *,
    order_id: str,
    variant_id: str,
    quantity: int,
    expires_at: datetime,
    now: datetime,
) -> None:
    """Record that ``quantity`` units (already taken) are held for the order."""
    session.add(
        Reservation(
            order_id=order_id,
            variant_id=variant_id,
            quantity=quantity,
            status=ReservationStatus.ACTIVE,
            expires_at=expires_at,
            created_at=now,
        )
    )


async def release_reservations(session: AsyncSession, order_id: str) -> int:
    """Return the order's held stock, once: only active reservations are released."""
    released = (
        await session.execute(
            update(Reservation)
            .where(Reservation.order_id == order_id, Reservation.status == ReservationStatus.ACTIVE)
            .values(status=ReservationStatus.RELEASED, settled_at=utcnow())
            .returning(Reservation.variant_id, Reservation.quantity)
        )
    ).all()
    for variant_id, quantity in sorted(released):
        await session.execute(
            update(Variant).where(Variant.id == variant_id).values(stock=Variant.stock + quantity)
        )
    return len(released)


async def commit_reservations(session: AsyncSession, order_id: str) -> int:
    """The order was paid: its held stock is sold for good."""
    result = await session.execute(
        update(Reservation)
        .where(Reservation.order_id == order_id, Reservation.status == ReservationStatus.ACTIVE)
        .values(status=ReservationStatus.COMMITTED, settled_at=utcnow())
        .returning(Reservation.id)
    )
    return len(result.all())
