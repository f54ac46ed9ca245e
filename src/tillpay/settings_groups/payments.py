"""Payment settings common to every provider, and the built-in sandbox provider."""

from __future__ import annotations

from pydantic import BaseModel, Field, SecretStr


class PaymentSettings(BaseModel):
    """Return URLs, refunds, provider timeouts, re-poll schedules, the sandbox."""

    payment_return_urls: list[str] = Field(
        default_factory=lambda: ["http://localhost:3000/", "http://127.0.0.1:3000/"],
        description="Allowed shop return URL prefixes (JSON list); anything else is refused.",
    )
    vendor_refunds_enabled: bool = Field(
        False, description="Let a vendor refund payments whose every line is theirs."
    )
    provider_timeout_seconds: float = Field(
        10.0, gt=0, le=60, description="Timeout of one call to a payment provider."
    )
    janitor_unknown_schedule: list[int] = Field(
        default_factory=lambda: [300, 3600, 86400],
        description="Seconds between re-polls of `unknown` attempts (last value repeats).",
    )
    janitor_pending_schedule: list[int] = Field(
        default_factory=lambda: [900, 3600, 86400],
        description="Seconds between re-polls of `requires_action`/`processing` attempts.",
    )
    sandbox_enabled: bool | None = Field(
        None,
        description="The built-in sandbox provider; default on except in production, where "
        "`true` is refused.",
    )
    sandbox_api_base: str | None = Field(
        None, description="Where the sandbox adapter reaches the sandbox; default public URL."
    )
    sandbox_secret_key: SecretStr | None = Field(
        None, description="Sandbox API key (derived from the secret key when unset)."
    )
    sandbox_webhook_secret: SecretStr | None = Field(
        None, description="Sandbox webhook signing secret (derived when unset)."
    )
    sandbox_settle_seconds: int = Field(
        60, ge=0, description="When the 'pending' test card settles as paid (seconds)."
    )
    sandbox_late_webhook_seconds: int = Field(
        5, ge=0, description="Delay of the 'late and twice' test card's webhooks (seconds)."
    )
