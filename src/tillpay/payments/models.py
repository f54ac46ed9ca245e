"""Payments, attempts at providers, refunds, and stored provider webhook events."""

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
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from tillpay.kit.db import Base, TimestampMixin, UTCDateTime, utcnow
from tillpay.kit.ids import ID_COLUMN_LENGTH, new_id

IdColumn = String(ID_COLUMN_LENGTH)


def _enum(cls: type[enum.Enum], length: int = 24) -> Enum:
    return Enum(
        cls,
        native_enum=False,
        length=length,
        validate_strings=True,
        values_callable=lambda e: [m.value for m in e],
    )


class PaymentStatus(enum.StrEnum):
    """Stripe's vocabulary; ``unknown`` = outcome not learnt yet (never treated as failed)."""

    REQUIRES_ACTION = "requires_action"
    PROCESSING = "processing"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"
    EXPIRED = "expired"
    UNKNOWN = "unknown"


class RefundStatus(enum.StrEnum):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    UNKNOWN = "unknown"


class Payment(TimestampMixin, Base):
    """One payment effort for an order, with its running money totals."""

    __tablename__ = "payments"
    __table_args__ = (
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint(
            "amount_captured >= 0 AND amount_captured <= amount", name="captured_range"
        ),
        CheckConstraint(
            "amount_refund_reserved >= 0 AND amount_refund_reserved <= amount_captured",
            name="refund_reserved_range",
        ),
        CheckConstraint(
            "amount_refunded >= 0 AND amount_refunded <= amount_refund_reserved",
            name="refunded_range",
        ),
        # An order is paid by at most one applied payment, enforced by the database; a
        # capture the order could not take (cancelled, expired, paid by another payment)
        # stays succeeded but unapplied, held in the ledger's unapplied_payments.
        CheckConstraint("NOT applied OR status = 'succeeded'", name="applied_succeeded"),
        Index(
            "uq_payments_order_id_applied",
            "order_id",
            unique=True,
            postgresql_where=text("applied"),
            sqlite_where=text("applied"),
        ),
        Index("ix_payments_order_id", "order_id"),
        Index("ix_payments_customer_id_id", "customer_id", "id"),
        # Newest first (the console's list, the admin API).
        Index("ix_payments_created_at_id", "created_at", "id"),
        # The same order over flagged payments only (the console's needs-review filter,
        # ``GET /v1/admin/payments?needs_review=true``): few rows, and a page stays an
        # index scan however many payments were never flagged. Each predicate is what
        # SQLAlchemy writes for ``where(Payment.needs_review)`` on that backend, so the
        # planner matches it (SQLite matches a partial index's WHERE term literally).
        Index(
            "ix_payments_needs_review_created_at_id",
            "created_at",
            "id",
            postgresql_where=text("needs_review"),
            sqlite_where=text("needs_review = 1"),
        ),
    )

    id: Mapped[str] = mapped_column(IdColumn, primary_key=True, default=lambda: new_id("pay"))
    order_id: Mapped[str] = mapped_column(
        IdColumn, ForeignKey("orders.id", ondelete="RESTRICT"), nullable=False
    )
    # NULL for a headless payment (the shop's backend owns the payer, not tillpay).
    customer_id: Mapped[str | None] = mapped_column(IdColumn)
    provider: Mapped[str] = mapped_column(String(32), nullable=False)
    status: Mapped[PaymentStatus] = mapped_column(_enum(PaymentStatus), nullable=False)
    amount: Mapped[int] = mapped_column(BigInteger, nullable=False)
    currency: Mapped[str] = mapped_column(String(3), nullable=False)
    amount_captured: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    # Pending + unknown + succeeded refunds: what may no longer be refunded again.
    amount_refund_reserved: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    amount_refunded: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    # True once this payment's capture paid its order (see uq_payments_order_id_applied).
    applied: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    return_url: Mapped[str | None] = mapped_column(String(2048))
    needs_review: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    review_reason: Mapped[str | None] = mapped_column(String(64))
    #: The last time an operator cleared the flag (``payments/review.py``), who, and why.
    reviewed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    reviewed_by: Mapped[str | None] = mapped_column(IdColumn)
    review_note: Mapped[str | None] = mapped_column(String(500))
    attempt_count: Mapped[int] = mapped_column(Integer, nullable=False, default=0)

    attempts: Mapped[list[PaymentAttempt]] = relationship(
        back_populates="payment", order_by="PaymentAttempt.attempt_no", lazy="selectin"
    )

    @property
    def next_action(self) -> dict[str, Any]:
        """What the client does next (the shape of ``NextAction``): ``redirect`` the
        browser, open the provider's ``client_sdk``, or ``none``."""
        latest = self.attempts[-1] if self.attempts else None
        if latest is None or self.status is not PaymentStatus.REQUIRES_ACTION:
            return {"type": "none"}
        if latest.redirect_url:
            return {
                "type": "redirect",
                "redirect_url": latest.redirect_url,
                "client_data": dict(latest.client_data),
            }
        if latest.client_data:
            return {"type": "client_sdk", "client_data": dict(latest.client_data)}
        return {"type": "none"}


class PaymentAttempt(TimestampMixin, Base):
    """One call to a provider. ``reference`` (``{payment_id}_{n}``) is what the provider
    knows us by, so every provider object maps back to exactly one attempt."""

    __tablename__ = "payment_attempts"
    __table_args__ = (
        UniqueConstraint("payment_id", "attempt_no", name="uq_payment_attempts_payment_no"),
        UniqueConstraint("provider", "reference", name="uq_payment_attempts_provider_reference"),
        Index("ix_payment_attempts_status_next_check", "status", "next_check_at"),
        Index("ix_payment_attempts_provider_object", "provider", "provider_object_id"),
    )

    id: Mapped[str] = mapped_column(IdColumn, primary_key=True, default=lambda: new_id("pat"))
    payment_id: Mapped[str] = mapped_column(
        IdColumn, ForeignKey("payments.id", ondelete="CASCADE"), nullable=False
    )
    attempt_no: Mapped[int] = mapped_column(Integer, nullable=False)
    provider: Mapped[str] = mapped_column(String(32), nullable=False)
    reference: Mapped[str] = mapped_column(String(80), nullable=False)
    provider_object_id: Mapped[str | None] = mapped_column(String(128))
    status: Mapped[PaymentStatus] = mapped_column(_enum(PaymentStatus), nullable=False)
    provider_status: Mapped[str | None] = mapped_column(String(64))
    redirect_url: Mapped[str | None] = mapped_column(String(2048))
    client_data: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False, default=dict)
    error_code: Mapped[str | None] = mapped_column(String(64))
    # A short, secret-free summary of the provider's answers (for support and audit).
    summary: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False, default=dict)
    next_check_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    check_count: Mapped[int] = mapped_column(Integer, nullable=False, default=0)

    payment: Mapped[Payment] = relationship(back_populates="attempts")


class Refund(TimestampMixin, Base):
    __tablename__ = "refunds"
    __table_args__ = (
        CheckConstraint("amount > 0", name="amount_positive"),
        Index("ix_refunds_payment_id", "payment_id"),
        Index("ix_refunds_status_next_check", "status", "next_check_at"),
    )

    id: Mapped[str] = mapped_column(IdColumn, primary_key=True, default=lambda: new_id("rfd"))
    payment_id: Mapped[str] = mapped_column(
        IdColumn, ForeignKey("payments.id", ondelete="RESTRICT"), nullable=False
    )
    attempt_id: Mapped[str] = mapped_column(
        IdColumn, ForeignKey("payment_attempts.id", ondelete="RESTRICT"), nullable=False
    )
    amount: Mapped[int] = mapped_column(BigInteger, nullable=False)
    currency: Mapped[str] = mapped_column(String(3), nullable=False)
    status: Mapped[RefundStatus] = mapped_column(_enum(RefundStatus), nullable=False)
    reason: Mapped[str] = mapped_column(String(64), nullable=False)
    provider_refund_id: Mapped[str | None] = mapped_column(String(128))
    error_code: Mapped[str | None] = mapped_column(String(64))
    # None for a refund made outside tillpay (``external``: the provider's dashboard).
    created_by: Mapped[str | None] = mapped_column(IdColumn)
    external: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    next_check_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    check_count: Mapped[int] = mapped_column(Integer, nullable=False, default=0)


class WebhookEventStatus(enum.StrEnum):
    """pending → processed | dead (after the retries ran out; replayable by admins);
    ``ignored``: verified but not acted on (see :mod:`tillpay.payments.ignored_events`)."""

    PENDING = "pending"
    PROCESSED = "processed"
    DEAD = "dead"
    IGNORED = "ignored"


class WebhookEvent(Base):
    """A verified provider webhook, stored before it is answered; processed by the worker."""

    __tablename__ = "webhook_events"
    __table_args__ = (
        UniqueConstraint("provider", "dedupe_key", name="uq_webhook_events_provider_dedupe_key"),
        Index("ix_webhook_events_status_next_attempt", "status", "next_attempt_at"),
        Index("ix_webhook_events_provider_reference", "provider", "reference"),
        CheckConstraint(
            "status IN ('pending', 'processed', 'dead', 'ignored')", name="status_known"
        ),
    )

    id: Mapped[str] = mapped_column(IdColumn, primary_key=True, default=lambda: new_id("whe"))
    provider: Mapped[str] = mapped_column(String(32), nullable=False)
    dedupe_key: Mapped[str] = mapped_column(String(255), nullable=False)
    event_type: Mapped[str] = mapped_column(String(64), nullable=False)
    reference: Mapped[str | None] = mapped_column(String(128))
    payload: Mapped[str] = mapped_column(Text, nullable=False)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False)
    status: Mapped[WebhookEventStatus] = mapped_column(
        _enum(WebhookEventStatus, 16), nullable=False, default=WebhookEventStatus.PENDING
    )
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False)
    last_error: Mapped[str | None] = mapped_column(String(255))
    processed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
