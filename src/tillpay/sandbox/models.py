"""The sandbox PSP's own state. It stands apart from tillpay's payments: tillpay's sandbox
adapter reaches it over HTTP like any provider, and it keeps only outcomes, never cards."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from tillpay.kit.db import Base, UTCDateTime, utcnow
from tillpay.kit.ids import ID_COLUMN_LENGTH, new_id


class SandboxSession(Base):
    __tablename__ = "sandbox_sessions"

    id: Mapped[str] = mapped_column(
        String(ID_COLUMN_LENGTH), primary_key=True, default=lambda: new_id("sbx")
    )
    reference: Mapped[str] = mapped_column(String(80), unique=True, nullable=False)
    amount: Mapped[int] = mapped_column(BigInteger, nullable=False)
    currency: Mapped[str] = mapped_column(String(3), nullable=False)
    # open → succeeded | failed | processing (→ succeeded at settle_at) | expired
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="open")
    decline_code: Mapped[str | None] = mapped_column(String(32))
    return_url: Mapped[str] = mapped_column(String(2048), nullable=False)
    card_last4: Mapped[str | None] = mapped_column(String(4))
    refunded_amount: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    settle_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class SandboxRefund(Base):
    __tablename__ = "sandbox_refunds"

    id: Mapped[str] = mapped_column(
        String(ID_COLUMN_LENGTH), primary_key=True, default=lambda: new_id("sbr")
    )
    session_id: Mapped[str] = mapped_column(String(ID_COLUMN_LENGTH), nullable=False, index=True)
    idempotency_key: Mapped[str] = mapped_column(String(128), unique=True, nullable=False)
    amount: Mapped[int] = mapped_column(BigInteger, nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="succeeded")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False)


class SandboxWebhook(Base):
    """A signed event the sandbox will deliver to tillpay's webhook endpoint."""

    __tablename__ = "sandbox_webhooks"
    __table_args__ = (Index("ix_sandbox_webhooks_pending", "delivered_at", "deliver_at"),)

    id: Mapped[str] = mapped_column(
        String(ID_COLUMN_LENGTH), primary_key=True, default=lambda: new_id("sbw")
    )
    event_id: Mapped[str] = mapped_column(String(ID_COLUMN_LENGTH), nullable=False)
    body: Mapped[str] = mapped_column(Text, nullable=False)
    deliver_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    last_status: Mapped[int | None] = mapped_column(Integer)
