"""The sandbox PSP's own state. It stands apart from tillpay's payments: tillpay's sandbox
adapter reaches it over HTTP like any provider, and it keeps only outcomes, never cards."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, Enum, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from tillpay.kit.db import Base, UTCDateTime, utcnow
from tillpay.kit.ids import ID_COLUMN_LENGTH, new_id


class SessionStatus(enum.StrEnum):
    """open → succeeded | failed | processing (→ succeeded at settle_at); an open session
    past its expiry reads as expired."""

    OPEN = "open"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    PROCESSING = "processing"
    EXPIRED = "expired"


class SandboxRefundStatus(enum.StrEnum):
    """The sandbox refunds at once: a refund it accepted has succeeded."""

    SUCCEEDED = "succeeded"


def _status(cls: type[enum.StrEnum]) -> Enum:
    """A status column stored as its value (VARCHAR(16)); the CHECK is :func:`_known`."""
    return Enum(
        cls,
        native_enum=False,
        create_constraint=False,
        length=16,
        validate_strings=True,
        values_callable=lambda e: [m.value for m in e],
    )


def _known(cls: type[enum.StrEnum]) -> CheckConstraint:
    values = ", ".join(f"'{member.value}'" for member in cls)
    return CheckConstraint(f"status IN ({values})", name="status_known")


class SandboxSession(Base):
    __tablename__ = "sandbox_sessions"
    __table_args__ = (_known(SessionStatus),)

    id: Mapped[str] = mapped_column(
        String(ID_COLUMN_LENGTH), primary_key=True, default=lambda: new_id("sbx")
    )
    reference: Mapped[str] = mapped_column(String(80), unique=True, nullable=False)
    amount: Mapped[int] = mapped_column(BigInteger, nullable=False)
    currency: Mapped[str] = mapped_column(String(3), nullable=False)
    status: Mapped[SessionStatus] = mapped_column(
        _status(SessionStatus), nullable=False, default=SessionStatus.OPEN
    )
    decline_code: Mapped[str | None] = mapped_column(String(32))
    return_url: Mapped[str] = mapped_column(String(2048), nullable=False)
    card_last4: Mapped[str | None] = mapped_column(String(4))
    refunded_amount: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    settle_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class SandboxRefund(Base):
    __tablename__ = "sandbox_refunds"
    __table_args__ = (_known(SandboxRefundStatus),)

    id: Mapped[str] = mapped_column(
        String(ID_COLUMN_LENGTH), primary_key=True, default=lambda: new_id("sbr")
    )
    session_id: Mapped[str] = mapped_column(String(ID_COLUMN_LENGTH), nullable=False, index=True)
    idempotency_key: Mapped[str] = mapped_column(String(128), unique=True, nullable=False)
    amount: Mapped[int] = mapped_column(BigInteger, nullable=False)
    status: Mapped[SandboxRefundStatus] = mapped_column(
        _status(SandboxRefundStatus), nullable=False, default=SandboxRefundStatus.SUCCEEDED
    )
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
