"""The audit trail: one immutable row per security-relevant event, hash-chained."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, CheckConstraint, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from tillpay.kit.db import Base, UTCDateTime, utcnow
from tillpay.kit.ids import ID_COLUMN_LENGTH, new_id

HASH_LENGTH = 64
"""A SHA-256 digest in lower-case hex."""


class AuditEvent(Base):
    """Who did what to which object, when, from where, and whether it worked.

    Rows are only ever inserted (on PostgreSQL a trigger refuses UPDATE and DELETE).
    ``seq``, ``prev_hash`` and ``hash`` chain each row to the one before it
    (``audit/chain.py``). ``details`` never holds secret values (callers pass
    identifiers and outcomes only).
    """

    __tablename__ = "audit_events"
    __table_args__ = (
        Index("ix_audit_events_actor_occurred", "actor_id", "occurred_at"),
        Index("ix_audit_events_target", "target_type", "target_id"),
        Index("ix_audit_events_action_occurred", "action", "occurred_at"),
        Index("ix_audit_events_occurred", "occurred_at"),
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
    # Position in the chain, 1, 2, 3 … without gaps: a missing number is a deleted row.
    seq: Mapped[int] = mapped_column(BigInteger, nullable=False, unique=True)
    prev_hash: Mapped[str] = mapped_column(String(HASH_LENGTH), nullable=False)
    hash: Mapped[str] = mapped_column(String(HASH_LENGTH), nullable=False)


class AuditChainHead(Base):
    """The chain's last ``seq`` and ``hash`` (one row, ``id`` 1).

    Appends lock this row, which serialises them into one linear chain; it also names
    the end of the chain, so rows deleted from the end are missed against it.
    """

    __tablename__ = "audit_chain_head"
    __table_args__ = (CheckConstraint("id = 1", name="single_row"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    seq: Mapped[int] = mapped_column(BigInteger, nullable=False)
    hash: Mapped[str] = mapped_column(String(HASH_LENGTH), nullable=False)
