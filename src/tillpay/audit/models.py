"""The audit trail: one immutable row per security-relevant event."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from tillpay.kit.db import Base, UTCDateTime, utcnow
from tillpay.kit.ids import ID_COLUMN_LENGTH, new_id


class AuditEvent(Base):
    """Who did what to which object, when, from where, and whether it worked.

    Rows are only ever inserted; the service exposes no update or delete. ``details``
    never holds secret values (callers pass identifiers and outcomes only).
    """

    __tablename__ = "audit_events"
    __table_args__ = (
        Index("ix_audit_events_actor_occurred", "actor_id", "occurred_at"),
        Index("ix_audit_events_target", "target_type", "target_id"),
        Index("ix_audit_events_action_occurred", "action", "occurred_at"),
    )

    id: Mapped[str] = mapped_column(
        String(ID_COLUMN_LENGTH), primary_key=True, default=lambda: new_id("aud")
    )
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False)
    action: Mapped[str] = mapped_column(String(64), nullable=False)
    outcome: Mapped[str] = mapped_column(String(16), nullable=False, default="success")
    actor_id: Mapped[str | None] = mapped_column(String(ID_COLUMN_LENGTH))
    actor_role: Mapped[str | None] = mapped_column(String(16))
    target_type: Mapped[str | None] = mapped_column(String(32))
    target_id: Mapped[str | None] = mapped_column(String(ID_COLUMN_LENGTH))
    ip: Mapped[str | None] = mapped_column(String(64))
    request_id: Mapped[str | None] = mapped_column(String(128))
    details: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False, default=dict)
