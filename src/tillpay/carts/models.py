"""Carts and cart lines. Prices are never trusted from here: checkout reads the catalog."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from tillpay.kit.db import Base, TimestampMixin, UTCDateTime, utcnow
from tillpay.kit.ids import ID_COLUMN_LENGTH, new_id

IdColumn = String(ID_COLUMN_LENGTH)


class Cart(TimestampMixin, Base):
    __tablename__ = "carts"

    id: Mapped[str] = mapped_column(IdColumn, primary_key=True, default=lambda: new_id("crt"))
    # One cart per customer: checkout empties it rather than creating another.
    customer_id: Mapped[str] = mapped_column(
        IdColumn, ForeignKey("users.id", ondelete="CASCADE"), nullable=False, unique=True
    )
    currency: Mapped[str | None] = mapped_column(String(3))

    lines: Mapped[list[CartLine]] = relationship(
        back_populates="cart",
        order_by="CartLine.created_at",
        lazy="selectin",
        cascade="all, delete-orphan",
    )


class CartLine(Base):
    __tablename__ = "cart_lines"
    __table_args__ = (
        UniqueConstraint("cart_id", "variant_id", name="uq_cart_lines_cart_id_variant_id"),
        CheckConstraint("quantity > 0", name="quantity_positive"),
    )

    id: Mapped[str] = mapped_column(IdColumn, primary_key=True, default=lambda: new_id("cln"))
    cart_id: Mapped[str] = mapped_column(
        IdColumn, ForeignKey("carts.id", ondelete="CASCADE"), nullable=False, index=True
    )
    variant_id: Mapped[str] = mapped_column(
        IdColumn, ForeignKey("variants.id", ondelete="CASCADE"), nullable=False
    )
    quantity: Mapped[int] = mapped_column(Integer, nullable=False)
    # The price seen when the line was added, to flag price changes (never charged).
    unit_price_seen: Mapped[int] = mapped_column(BigInteger, nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False)

    cart: Mapped[Cart] = relationship(back_populates="lines")
