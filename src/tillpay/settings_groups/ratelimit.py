"""Rate-limit settings: the global per-IP limit and the named per-route policies."""

from __future__ import annotations

from pydantic import BaseModel, Field, field_validator

from tillpay.kit.ratelimit import RatePolicy

#: The per-route rate-limit policies the routes use, and their defaults.
RATELIMIT_POLICY_DEFAULTS = {
    "auth": "10/minute;50/hour",
    "payments": "30/minute",
    "webhooks": "1200/minute",
    # Per email address: verification and password-reset mails.
    "account_mail": "3/hour;10/day",
}


class RateLimitSettings(BaseModel):
    """How many requests tillpay lets through, and what it does when Redis fails."""

    ratelimit_enabled: bool = Field(
        True,
        description="Turn rate limiting on or off (login lockout stays on). Off is refused in "
        "production unless `I_UNDERSTAND_RATELIMIT_DISABLED`.",
    )
    ratelimit_global: str = Field(
        "600/minute", description="Per-IP limit on every request (`limits` notation)."
    )
    ratelimit_policies: dict[str, str] = Field(
        default_factory=lambda: dict(RATELIMIT_POLICY_DEFAULTS),
        description="Named policies (JSON object of name → `limits` notation): `auth`, "
        "`payments`, `webhooks` per client IP; `account_mail` per email address "
        "(verification and reset mails). Names left out keep their defaults.",
    )
    ratelimit_redis_timeout_seconds: float = Field(
        2.0,
        gt=0,
        le=10,
        description="Redis timeout for rate-limit checks; after a failure Redis is skipped for 1 s.",
    )
    ratelimit_fail_open: bool = Field(
        False,
        description="When Redis is unreachable: `true` lets requests through (and skips "
        "lockouts), `false` answers 429. `true` is refused in production.",
    )

    @field_validator("ratelimit_global")
    @classmethod
    def _check_ratelimit_global(cls, value: str) -> str:
        RatePolicy.parse("global", value)
        return value

    @field_validator("ratelimit_policies")
    @classmethod
    def _check_ratelimit_policies(cls, value: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(value) - set(RATELIMIT_POLICY_DEFAULTS))
        if unknown:
            known = ", ".join(RATELIMIT_POLICY_DEFAULTS)
            raise ValueError(f"unknown policies {', '.join(unknown)} (policies: {known})")
        merged = {**RATELIMIT_POLICY_DEFAULTS, **value}
        for name, spec in merged.items():
            RatePolicy.parse(name, spec)
        return merged
