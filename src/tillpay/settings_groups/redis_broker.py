"""Redis (shared rate limits and lockouts) and the RabbitMQ broker."""

from __future__ import annotations

from pydantic import BaseModel, Field, SecretStr, ValidationInfo, field_validator

from tillpay.settings_groups.urls import check_url_scheme

_URL_SCHEMES = {
    "redis_url": ("redis", "rediss", "unix"),
    "broker_url": ("amqp", "amqps"),
}


class RedisBrokerSettings(BaseModel):
    """Redis and the message broker; both optional."""

    redis_url: SecretStr | None = Field(
        None,
        description="Redis URL; rate limits and lockouts are shared across processes when set.",
    )
    redis_key_prefix: str = Field(
        "tillpay",
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9_.-]+$",
        description="Prefix of every Redis key tillpay writes (several deployments or test "
        "runs can share one Redis).",
    )
    redis_pool_size: int = Field(
        50,
        ge=1,
        le=10_000,
        description="Most Redis connections per pool and process (rate limits, lockouts); "
        "requests beyond it wait for a free connection.",
    )
    redis_pool_timeout_seconds: float = Field(
        2.0,
        gt=0,
        le=60,
        description="Seconds a request waits for a free Redis connection; after that the "
        "rate limit treats Redis as busy (per `TILLPAY_RATELIMIT_FAIL_OPEN` for that "
        "request only), not as down.",
    )
    broker_url: SecretStr | None = Field(
        None,
        description="AMQP URL of RabbitMQ. When set, every event is published to the "
        "hub and tillpay's own consumers (webhooks, email, realtime) take their events "
        "from their queues on it; checked by `/readyz`.",
    )
    broker_exchange: str = Field(
        "tillpay.events",
        min_length=1,
        max_length=200,
        pattern=r"^[A-Za-z0-9_.:-]+$",
        description="The hub's topic exchange; tillpay's queues are named after it "
        "(`<exchange>.webhooks`, `<exchange>.dlq`, …), so several deployments can share "
        "one broker.",
    )
    broker_max_attempts: int = Field(
        5,
        ge=1,
        le=100,
        description="Deliveries of one message to one of tillpay's consumer queues before "
        "RabbitMQ dead-letters it to `<exchange>.dlq` (a message the consumer cannot "
        "handle; a database outage is waited out instead).",
    )

    @field_validator("redis_url", "broker_url")
    @classmethod
    def _check_url_scheme(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        return check_url_scheme(value, _URL_SCHEMES[str(info.field_name)])
