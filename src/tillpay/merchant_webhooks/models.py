"""Registered endpoints and the log of every delivery attempt made to them."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Boolean, ForeignKey, Index, Integer, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from tillpay.kit.db import Base, TimestampMixin, UTCDateTime, utcnow
from tillpay.kit.ids import ID_COLUMN_LENGTH, new_id


class WebhookEndpoint(TimestampMixin, Base):
    """A shop's receiver. Its signing secret is sealed at rest (bound to the row) and shown
    in clear only once, when created or rotated."""

    __tablename__ = "webhook_endpoints"

    id: Mapped[str] = mapped_column(
        String(ID_COLUMN_LENGTH), primary_key=True, default=lambda: new_id("whe")
    )
    url: Mapped[str] = mapped_column(String(2048), nullable=False)
    description: Mapped[str] = mapped_column(String(200), nullable=False, default="")
    #: Event type names, or ``["*"]`` for every type.
    event_types: Mapped[list[str]] = mapped_column(JSON, nullable=False)
    enabled: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    secret_sealed: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    #: The secret before the last rotation: it signs too until ``previous_expires_at``.
    previous_secret_sealed: Mapped[bytes | None] = mapped_column(LargeBinary)
    previous_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    #: Since when every delivery failed (None after a success); too long disables it.
    failing_since: Mapped[datetime | None] = mapped_column(UTCDateTime())
    #: Why tillpay disabled it (``failing``), or None when an admin did or it is on.
    disabled_reason: Mapped[str | None] = mapped_column(String(32))


class WebhookAttempt(Base):
    """One HTTP attempt of one delivery (the admin's delivery log)."""

    __tablename__ = "webhook_attempts"
    __table_args__ = (
        Index("ix_webhook_attempts_endpoint_at", "endpoint_id", "attempted_at"),
        Index("ix_webhook_attempts_delivery", "delivery_id"),
    )

    id: Mapped[str] = mapped_column(
        String(ID_COLUMN_LENGTH), primary_key=True, default=lambda: new_id("wha")
    )
    delivery_id: Mapped[str] = mapped_column(
        String(ID_COLUMN_LENGTH),
        ForeignKey("event_deliveries.id", ondelete="CASCADE"),
        nullable=False,
    )
    endpoint_id: Mapped[str] = mapped_column(
        String(ID_COLUMN_LENGTH),
        ForeignKey("webhook_endpoints.id", ondelete="CASCADE"),
        nullable=False,
    )
    event_id: Mapped[str] = mapped_column(String(ID_COLUMN_LENGTH), nullable=False)
    event_type: Mapped[str] = mapped_column(String(64), nullable=False)
    attempted_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False)
    status_code: Mapped[int | None] = mapped_column(Integer)
    latency_ms: Mapped[int] = mapped_column(Integer, nullable=False)
    #: The first 1 KiB of the receiver's answer (decoded leniently).
    response_excerpt: Mapped[str] = mapped_column(String(1024), nullable=False, default="")
    error: Mapped[str | None] = mapped_column(String(200))
