"""Browser-facing settings: the operator console and the demo storefront (docs/console.md)."""

from __future__ import annotations

from pydantic import BaseModel, Field


class WebSettings(BaseModel):
    """Pages tillpay serves itself: `/console` for operators, `/shop` for a demo store."""

    console_enabled: bool = Field(
        True,
        description="Serve the operator console at `/console` (admins; vendors see their "
        "own slice). It signs in with its own `__Host-` cookie session.",
    )
    console_idle_timeout_seconds: int = Field(
        900,
        ge=60,
        le=86400,
        description="A console session unused this long is signed out (sliding; the "
        "session's absolute lifetime still applies).",
    )
    shop_enabled: bool | None = Field(
        None,
        description="Serve the demo storefront at `/shop`; default on except in "
        "production, where it needs an explicit `true`.",
    )
    shop_idle_timeout_seconds: int = Field(
        7200,
        ge=60,
        le=604800,
        description="A storefront session unused this long signs in again (long enough to spend a while on a provider's hosted page; sliding; the "
        "session's absolute lifetime still applies).",
    )
