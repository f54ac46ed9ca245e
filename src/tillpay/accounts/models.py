"""Users, sessions (one per login = one refresh-token family), refresh tokens, single-use
account tokens (email verification, password reset), TOTP recovery codes and JWT
signing keys."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Enum,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
)
from sqlalchemy.orm import Mapped, mapped_column

from tillpay.kit.db import Base, TimestampMixin, UTCDateTime, utcnow
from tillpay.kit.ids import ID_COLUMN_LENGTH, new_id

IdColumn = String(ID_COLUMN_LENGTH)


class Role(enum.StrEnum):
    CUSTOMER = "CUSTOMER"
    VENDOR = "VENDOR"
    ADMIN = "ADMIN"


class TokenPurpose(enum.StrEnum):
    VERIFY_EMAIL = "verify_email"
    RESET_PASSWORD = "reset_password"  # noqa: S105 - a purpose name, not a secret


class User(TimestampMixin, Base):
    __tablename__ = "users"

    id: Mapped[str] = mapped_column(IdColumn, primary_key=True, default=lambda: new_id("usr"))
    email: Mapped[str] = mapped_column(String(320), unique=True, nullable=False)
    email_verified_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    password_hash: Mapped[str] = mapped_column(String(255), nullable=False)
    role: Mapped[Role] = mapped_column(
        Enum(Role, native_enum=False, length=16, validate_strings=True),
        nullable=False,
        default=Role.CUSTOMER,
    )
    display_name: Mapped[str | None] = mapped_column(String(100))
    is_active: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    # TOTP secret, encrypted with a key derived from the server secret. A pending secret
    # lives here until the first code confirms enrolment.
    totp_secret_encrypted: Mapped[bytes | None] = mapped_column(LargeBinary)
    totp_enabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    totp_last_step: Mapped[int | None] = mapped_column(Integer)
    # Access tokens issued before this instant are refused (password reset, deactivation).
    tokens_valid_after: Mapped[datetime] = mapped_column(
        UTCDateTime(), nullable=False, default=utcnow
    )
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    @property
    def totp_enabled(self) -> bool:
        return self.totp_enabled_at is not None

    @property
    def email_verified(self) -> bool:
        return self.email_verified_at is not None


class AuthSession(Base):
    """One login. Its refresh tokens form one rotation family; revoking it ends them all."""

    __tablename__ = "auth_sessions"
    __table_args__ = (Index("ix_auth_sessions_user_revoked", "user_id", "revoked_at"),)

    id: Mapped[str] = mapped_column(IdColumn, primary_key=True, default=lambda: new_id("ses"))
    user_id: Mapped[str] = mapped_column(
        IdColumn, ForeignKey("users.id", ondelete="CASCADE"), nullable=False
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False)
    last_used_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False)
    absolute_expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    # Last strong authentication (password or TOTP): step-up checks read it.
    auth_time: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False)
    mfa: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    ip: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(String(256))
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    revoked_reason: Mapped[str | None] = mapped_column(String(32))


class RefreshToken(Base):
    """An opaque refresh token, stored only as its SHA-256. ``used_at`` is set by an atomic
    compare-and-set; presenting a used token again is reuse and revokes the session."""

    __tablename__ = "refresh_tokens"

    id: Mapped[str] = mapped_column(IdColumn, primary_key=True, default=lambda: new_id("rtk"))
    session_id: Mapped[str] = mapped_column(
        IdColumn, ForeignKey("auth_sessions.id", ondelete="CASCADE"), nullable=False, index=True
    )
    token_hash: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class AccountToken(Base):
    """Single-use, expiring, hashed tokens mailed to users (verification, reset)."""

    __tablename__ = "account_tokens"
    __table_args__ = (Index("ix_account_tokens_user_purpose", "user_id", "purpose"),)

    id: Mapped[str] = mapped_column(IdColumn, primary_key=True, default=lambda: new_id("atk"))
    user_id: Mapped[str] = mapped_column(
        IdColumn, ForeignKey("users.id", ondelete="CASCADE"), nullable=False
    )
    purpose: Mapped[TokenPurpose] = mapped_column(
        Enum(TokenPurpose, native_enum=False, length=32, validate_strings=True), nullable=False
    )
    token_hash: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    # For email verification: the address the token proves (the email may change later).
    email: Mapped[str] = mapped_column(String(320), nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class RecoveryCode(Base):
    __tablename__ = "recovery_codes"

    id: Mapped[str] = mapped_column(IdColumn, primary_key=True, default=lambda: new_id("rcv"))
    user_id: Mapped[str] = mapped_column(
        IdColumn, ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True
    )
    code_hash: Mapped[str] = mapped_column(String(100), nullable=False, unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class JwtSigningKey(Base):
    """Ed25519 signing keys. The private half is encrypted with the server secret; retired
    keys keep verifying until every token they signed has expired."""

    __tablename__ = "jwt_signing_keys"
    __table_args__ = (CheckConstraint("length(kid) > 0", name="kid_not_empty"),)

    kid: Mapped[str] = mapped_column(String(64), primary_key=True)
    algorithm: Mapped[str] = mapped_column(String(16), nullable=False, default="EdDSA")
    public_key: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    private_key_encrypted: Mapped[bytes | None] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False)
    retired_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
