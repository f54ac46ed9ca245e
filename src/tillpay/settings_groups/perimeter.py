"""HTTP perimeter settings: allowed hosts, CORS, trusted proxies, HSTS and body limits."""

from __future__ import annotations

from pydantic import BaseModel, Field, field_validator

from tillpay.settings_safety import trusted_proxy_problems


class PerimeterSettings(BaseModel):
    """What the HTTP edge of the service accepts."""

    allowed_hosts: list[str] = Field(
        default_factory=lambda: ["localhost", "127.0.0.1", "[::1]"],
        description="Host header allow-list (`a.example,b.example` or a JSON list). `*` is "
        "refused in production.",
    )
    cors_allow_origins: list[str] = Field(
        default_factory=list,
        description="Origins allowed by CORS (list of `https://shop.example`); `null` and "
        "`*` are refused in production.",
    )
    cors_allow_credentials: bool = Field(False, description="Allow credentialed CORS requests.")
    trusted_proxies: list[str] = Field(
        default_factory=list,
        description="IPs/CIDRs whose `X-Forwarded-For/Proto` and `X-Request-ID` are trusted; "
        "`*` (alone) trusts every peer and is refused in production.",
    )
    hsts_max_age: int = Field(
        63072000, ge=31536000, description="HSTS max-age in seconds (at least one year)."
    )
    body_limit_bytes: int = Field(
        102400, ge=1024, description="Maximum request body size for JSON routes (bytes)."
    )
    body_limits: dict[str, int] = Field(
        default_factory=lambda: {"/v1/webhooks/": 262144, "/sandbox/": 16384, "/account/": 16384},
        description='Per route-group limits by path prefix, e.g. `{"/v1/webhooks": 262144}`.',
    )

    @field_validator("trusted_proxies")
    @classmethod
    def _check_trusted_proxies(cls, value: list[str]) -> list[str]:
        entries = [entry.strip() for entry in value]
        problems = trusted_proxy_problems(entries)
        if problems:
            raise ValueError("; ".join(problems))
        return entries
