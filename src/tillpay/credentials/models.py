"""API keys (stored hashed) and the service-token ids already used (replay guard)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, CheckConstraint, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from tillpay.kit.db import Base, UTCDateTime, utcnow
from tillpay.kit.ids import ID_COLUMN_LENGTH, new_id


class ApiKey(Base):
    """A machine credential. Only the SHA-256 of the secret is kept: the secret carries
    256 random bits, so a slow password hash would add cost per request and no safety."""

    __tablename__ = "api_keys"
    __table_args__ = (
        CheckConstraint("environment IN ('live', 'test')", name="environment_known"),
        Index("ix_api_keys_merchant", "merchant"),
    )

    id: Mapped[str] = mapped_column(
        String(ID_COLUMN_LENGTH), primary_key=True, default=lambda: new_id("key")
    )
    name: Mapped[str] = mapped_column(String(100), nullable=False)
    #: The shop it acts for: its headless payments are visible to this merchant's keys only.
    merchant: Mapped[str] = mapped_column(String(64), nullable=False)
    environment: Mapped[str] = mapped_column(String(4), nullable=False)
    secret_hash: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    #: The secret's last characters, to tell keys apart in a listing.
    hint: Mapped[str] = mapped_column(String(8), nullable=False)
    scopes: Mapped[list[str]] = mapped_column(JSON, nullable=False)
    #: Addresses or networks (CIDR) it may be used from; None: anywhere.
    allowed_ips: Mapped[list[str] | None] = mapped_column(JSON)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False)
    created_by: Mapped[str | None] = mapped_column(String(ID_COLUMN_LENGTH))
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class UsedServiceToken(Base):
    """A service token's ``jti`` seen within its lifetime: the same one again is a replay.
    Keyed by SHA-256 of issuer and jti (both unbounded strings); pruned after expiry."""

    __tablename__ = "used_service_tokens"
    __table_args__ = (Index("ix_used_service_tokens_expires_at", "expires_at"),)

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
