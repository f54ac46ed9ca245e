"""Authentication settings: tokens, sessions, account links, passwords, 2FA and lockout."""

from __future__ import annotations

from pydantic import BaseModel, Field


class AuthSettings(BaseModel):
    """How users prove who they are, and for how long it holds."""

    jwt_issuer: str | None = Field(
        None, description="`iss` of access tokens; defaults to the public base URL."
    )
    jwt_audience: str = Field("tillpay-api", description="`aud` of access tokens.")
    access_token_ttl_seconds: int = Field(
        900, ge=60, le=3600, description="Access-token lifetime (seconds)."
    )
    mfa_token_ttl_seconds: int = Field(
        300, ge=60, le=900, description="Lifetime of the 2FA-pending login token (seconds)."
    )
    session_absolute_ttl_seconds: int = Field(
        7 * 86400, ge=3600, description="Absolute lifetime of a login session (seconds)."
    )
    session_idle_timeout_seconds: int = Field(
        86400, ge=300, description="A session unused for this long cannot refresh (seconds)."
    )
    refresh_cookie_enabled: bool = Field(
        False, description="Also deliver refresh tokens in a `__Host-` cookie for browsers."
    )
    email_verification_ttl_seconds: int = Field(
        86400, ge=600, description="Lifetime of email verification links (seconds)."
    )
    password_reset_ttl_seconds: int = Field(
        1800, ge=300, le=7200, description="Lifetime of password reset links (seconds)."
    )
    password_min_length: int = Field(
        12, ge=8, le=64, description="Minimum password length (never below 8)."
    )
    step_up_max_age_seconds: int = Field(
        600, ge=60, le=3600, description="How recent authentication must be for sensitive actions."
    )
    admin_require_2fa: bool = Field(
        True,
        description="Admin-only permissions (on any route) need an account with 2FA and a "
        "2FA login (always in production).",
    )
    login_lockout_threshold: int = Field(
        5, ge=1, le=100, description="Failed logins per account before back-off lockout starts."
    )
    login_lockout_base_seconds: int = Field(
        30, ge=1, description="First lockout; doubles with every further failure."
    )
    login_lockout_max_seconds: int = Field(3600, ge=1, description="Longest lockout.")
    password_hash_memory_kib: int = Field(
        19456,
        ge=8,
        description="Argon2id memory cost (KiB); OWASP minimum 19456 (lower only when "
        "`TILLPAY_ENVIRONMENT=test`).",
    )
    password_hash_iterations: int = Field(
        2, ge=1, description="Argon2id time cost; at least 2 except in tests."
    )
    password_hash_concurrency: int | None = Field(
        None,
        ge=1,
        le=64,
        description="Argon2id hashes computed at once per process (default: half the CPU "
        "cores, at least 1), so a login storm leaves the event loop a core.",
    )
