"""Merchant webhook settings: how tillpay delivers signed events to shops' endpoints."""

from __future__ import annotations

from pydantic import BaseModel, Field

#: Standard back-off (seconds after the previous attempt): at once, 5 s, 5 min, 30 min,
#: 2 h, 5 h, 10 h, 10 h; then the delivery is failed (admins may redeliver or recover it).
DEFAULT_RETRY_SCHEDULE = [0, 5, 300, 1800, 7200, 18000, 36000, 36000]


class MerchantWebhookSettings(BaseModel):
    """Outbound webhooks to the shop's backend (docs/webhooks.md)."""

    webhooks_retry_schedule: list[int] = Field(
        default_factory=lambda: list(DEFAULT_RETRY_SCHEDULE),
        min_length=1,
        max_length=20,
        description=(
            "Seconds before each delivery attempt, counted from the previous one (JSON list; "
            "the first is usually 0). After the last, a delivery is `failed`."
        ),
    )
    webhooks_timeout_seconds: float = Field(
        10.0, gt=0, le=30, description="Time a receiver has to answer one delivery."
    )
    webhooks_endpoint_concurrency: int = Field(
        2,
        ge=1,
        le=16,
        description=(
            "Deliveries in flight to one endpoint at once, across every worker process and "
            "host; one endpoint's backlog takes at most this many places of a batch."
        ),
    )
    webhooks_secret_overlap_hours: float = Field(
        24.0,
        ge=0,
        le=24 * 30,
        description="After a secret rotation, how long the old secret still signs too.",
    )
    webhooks_allowed_ports: list[int] = Field(
        default_factory=lambda: [443, 80],
        min_length=1,
        description="Ports an endpoint URL may name (JSON list).",
    )
    webhooks_allow_private_targets: bool = Field(
        False,
        description=(
            "Deliver to loopback and private addresses (development and tests only; "
            "refused in production)."
        ),
    )
    webhooks_disable_after_hours: float = Field(
        120.0,
        gt=0,
        description=(
            "An endpoint whose deliveries all failed for this long is disabled and the "
            "admins are told (5 days)."
        ),
    )
    webhooks_max_endpoints: int = Field(
        50, ge=1, le=1000, description="Endpoints one installation may register."
    )
