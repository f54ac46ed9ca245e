"""Orders, their line snapshots and their state history."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    Enum,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from tillpay.kit.db import Base, TimestampMixin, UTCDateTime, utcnow
from tillpay.kit.ids import ID_COLUMN_LENGTH, new_id

IdColumn = String(ID_COLUMN_LENGTH)


class OrderStatus(enum.StrEnum):
    PENDING_PAYMENT = "pending_payment"
    PAID = "paid"
    FULFILLED = "fulfilled"
    CANCELLED = "cancelled"
    EXPIRED = "expired"
    PARTIALLY_REFUNDED = "partially_refunded"
    REFUNDED = "refunded"


class OrderKind(enum.StrEnum):
    SHOP = "shop"  # checkout of tillpay's own catalog, owned by a customer
    HEADLESS = "headless"  # a shop backend's own order, paid through POST /v1/payments


class Order(TimestampMixin, Base):
    __tablename__ = "orders"
    __table_args__ = (
        CheckConstraint("subtotal_amount >= 0", name="subtotal_not_negative"),
        CheckConstraint("total_amount >= 0", name="total_not_negative"),
        Index("ix_orders_customer_id_id", "customer_id", "id"),
        Index("ix_orders_status_expires_at", "status", "expires_at"),
        # A shop's own order reference names one headless payment (two concurrent creates
        # of one reference yield one row; shop orders have NULL merchant and reference).
        UniqueConstraint("merchant", "reference", name="uq_orders_merchant_reference"),
        Index("ix_orders_merchant_id", "merchant", "id"),
        CheckConstraint(
            "(kind = 'shop' AND customer_id IS NOT NULL AND merchant IS NULL) OR "
            "(kind = 'headless' AND customer_id IS NULL AND merchant IS NOT NULL "
            "AND reference IS NOT NULL)",
            name="kind_owner",
        ),
    )

    id: Mapped[str] = mapped_column(IdColumn, primary_key=True, default=lambda: new_id("ord"))
    kind: Mapped[OrderKind] = mapped_column(
        Enum(
            OrderKind,
            native_enum=False,
            length=16,
            validate_strings=True,
            values_callable=lambda e: [m.value for m in e],
        ),
        nullable=False,
        default=OrderKind.SHOP,
        server_default=OrderKind.SHOP.value,
    )
    # NULL for a headless order: tillpay has no customer, the shop's backend owns it.
    customer_id: Mapped[str | None] = mapped_column(
        IdColumn, ForeignKey("users.id", ondelete="RESTRICT")
    )
    # Headless only: the shop (the credential's merchant), its order reference, its payer.
    merchant: Mapped[str | None] = mapped_column(String(64))
    reference: Mapped[str | None] = mapped_column(String(128))
    customer_email: Mapped[str | None] = mapped_column(String(320))
    customer_external_id: Mapped[str | None] = mapped_column(String(128))
    description: Mapped[str | None] = mapped_column(String(500))
    metadata_: Mapped[dict[str, str] | None] = mapped_column("metadata", JSON)
    status: Mapped[OrderStatus] = mapped_column(
        Enum(
            OrderStatus,
            native_enum=False,
            length=24,
            validate_strings=True,
            values_callable=lambda e: [m.value for m in e],
        ),
        nullable=False,
        default=OrderStatus.PENDING_PAYMENT,
    )
    currency: Mapped[str] = mapped_column(String(3), nullable=False)
    subtotal_amount: Mapped[int] = mapped_column(BigInteger, nullable=False)
    total_amount: Mapped[int] = mapped_column(BigInteger, nullable=False)
    refunded_amount: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    # Payment must complete before this instant, else the order expires and stock returns.
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    paid_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    lines: Mapped[list[OrderLine]] = relationship(
        back_populates="order", order_by="OrderLine.id", lazy="selectin"
    )


class OrderLine(Base):
    """A snapshot of what was bought: later catalog edits never change it."""

    __tablename__ = "order_lines"
    __table_args__ = (
        CheckConstraint("quantity > 0", name="quantity_positive"),
        CheckConstraint("unit_price_amount >= 0", name="unit_price_not_negative"),
        Index("ix_order_lines_vendor_id_order_id", "vendor_id", "order_id"),
    )

    id: Mapped[str] = mapped_column(IdColumn, primary_key=True, default=lambda: new_id("oln"))
    order_id: Mapped[str] = mapped_column(
        IdColumn, ForeignKey("orders.id", ondelete="CASCADE"), nullable=False, index=True
    )
    product_id: Mapped[str] = mapped_column(IdColumn, nullable=False)
    variant_id: Mapped[str] = mapped_column(IdColumn, nullable=False)
    vendor_id: Mapped[str | None] = mapped_column(IdColumn)
    title: Mapped[str] = mapped_column(String(420), nullable=False)
    sku: Mapped[str] = mapped_column(String(64), nullable=False)
    unit_price_amount: Mapped[int] = mapped_column(BigInteger, nullable=False)
    quantity: Mapped[int] = mapped_column(Integer, nullable=False)
    line_total_amount: Mapped[int] = mapped_column(BigInteger, nullable=False)

    order: Mapped[Order] = relationship(back_populates="lines")


class OrderEvent(Base):
    """One state transition of an order: from, to, who, why, when."""

    __tablename__ = "order_events"

    id: Mapped[str] = mapped_column(IdColumn, primary_key=True, default=lambda: new_id("oev"))
    order_id: Mapped[str] = mapped_column(
        IdColumn, ForeignKey("orders.id", ondelete="CASCADE"), nullable=False, index=True
    )
    from_status: Mapped[str | None] = mapped_column(String(24))
    to_status: Mapped[str] = mapped_column(String(24), nullable=False)
    actor_id: Mapped[str | None] = mapped_column(IdColumn)
    reason: Mapped[str | None] = mapped_column(String(64))
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False)
