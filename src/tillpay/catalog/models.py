"""Products and variants. Every product has at least one variant; price, SKU and stock
live on the variant (a simple product has exactly one)."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Enum,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from tillpay.kit.db import Base, TimestampMixin, UTCDateTime
from tillpay.kit.ids import ID_COLUMN_LENGTH, new_id

IdColumn = String(ID_COLUMN_LENGTH)


class Product(TimestampMixin, Base):
    __tablename__ = "products"
    __table_args__ = (
        Index("ix_products_active_id", "active", "id"),
        Index("ix_products_vendor_id", "vendor_id", "id"),
    )

    id: Mapped[str] = mapped_column(IdColumn, primary_key=True, default=lambda: new_id("prd"))
    # The owning vendor (a user with the VENDOR role); NULL for platform-owned products.
    vendor_id: Mapped[str | None] = mapped_column(
        IdColumn, ForeignKey("users.id", ondelete="RESTRICT")
    )
    title: Mapped[str] = mapped_column(String(200), nullable=False)
    description: Mapped[str] = mapped_column(Text, nullable=False, default="")
    currency: Mapped[str] = mapped_column(String(3), nullable=False)
    active: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    image_urls: Mapped[list[str]] = mapped_column(JSON, nullable=False, default=list)
    attributes: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False, default=dict)

    variants: Mapped[list[Variant]] = relationship(
        back_populates="product", order_by="Variant.id", lazy="selectin"
    )


class Variant(TimestampMixin, Base):
    __tablename__ = "variants"
    __table_args__ = (
        # SKUs are unique per vendor; the platform is its own "vendor" ("" key).
        UniqueConstraint("vendor_key", "sku", name="uq_variants_vendor_key_sku"),
        CheckConstraint("stock >= 0", name="stock_not_negative"),
        CheckConstraint("price_amount >= 0", name="price_not_negative"),
    )

    id: Mapped[str] = mapped_column(IdColumn, primary_key=True, default=lambda: new_id("var"))
    product_id: Mapped[str] = mapped_column(
        IdColumn, ForeignKey("products.id", ondelete="CASCADE"), nullable=False, index=True
    )
    vendor_key: Mapped[str] = mapped_column(String(ID_COLUMN_LENGTH), nullable=False)
    sku: Mapped[str] = mapped_column(String(64), nullable=False)
    title: Mapped[str | None] = mapped_column(String(200))
    attributes: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False, default=dict)
    price_amount: Mapped[int] = mapped_column(BigInteger, nullable=False)
    # Units available to new reservations (reserved units are already subtracted).
    stock: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    active: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)

    product: Mapped[Product] = relationship(back_populates="variants")


class ReservationStatus(enum.StrEnum):
    ACTIVE = "active"  # units held for an unpaid order
    COMMITTED = "committed"  # the order was paid: the units are sold
    RELEASED = "released"  # cancelled or expired: the units went back to stock


class StockReservation(Base):
    """Units held for an order until it is paid (committed), cancelled or expired
    (released). The status moves once, by a conditional update, so stock is returned
    exactly once."""

    __tablename__ = "stock_reservations"
    __table_args__ = (
        CheckConstraint("quantity > 0", name="quantity_positive"),
        CheckConstraint(
            "status IN ({})".format(", ".join(f"'{s.value}'" for s in ReservationStatus)),
            name="status_known",
        ),
        Index("ix_stock_reservations_status_expires", "status", "expires_at"),
    )

    id: Mapped[str] = mapped_column(IdColumn, primary_key=True, default=lambda: new_id("res"))
    order_id: Mapped[str] = mapped_column(
        IdColumn, ForeignKey("orders.id", ondelete="CASCADE"), nullable=False, index=True
    )
    variant_id: Mapped[str] = mapped_column(
        IdColumn, ForeignKey("variants.id", ondelete="RESTRICT"), nullable=False
    )
    quantity: Mapped[int] = mapped_column(Integer, nullable=False)
    status: Mapped[ReservationStatus] = mapped_column(
        Enum(
            ReservationStatus,
            native_enum=False,
            length=16,
            validate_strings=True,
            values_callable=lambda e: [m.value for m in e],
        ),
        nullable=False,
        default=ReservationStatus.ACTIVE,
    )
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    settled_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
