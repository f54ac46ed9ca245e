"""Admin API shapes of merchant webhooks."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

EventTypeName = Annotated[
    str, Field(min_length=1, max_length=64, pattern=r"^(\*|[a-z_]+\.[a-z0-9_]+)$")
]
Url = Annotated[str, Field(min_length=8, max_length=2048)]


class EndpointCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "url": "https://shop.example/hooks/tillpay",
                    "event_types": ["order.paid", "refund.succeeded"],
                    "description": "Order fulfilment",
                }
            ]
        },
    )
    url: Url = Field(description="https in production; every resolved address must be public.")
    event_types: list[EventTypeName] = Field(
        min_length=1, max_length=50, description='Event types to receive, or ["*"] for all.'
    )
    description: str = Field("", max_length=200)


class EndpointUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: Url | None = None
    event_types: list[EventTypeName] | None = Field(None, min_length=1, max_length=50)
    description: str | None = Field(None, max_length=200)
    enabled: bool | None = None


class EndpointOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    url: str
    description: str
    event_types: list[str]
    enabled: bool
    disabled_reason: str | None = Field(
        description="`failing` when tillpay disabled it after failing too long; else null."
    )
    failing_since: datetime | None = Field(
        description="Since when every delivery failed (null after a success)."
    )
    previous_expires_at: datetime | None = Field(
        description="Until when the secret before the last rotation still signs too."
    )
    created_at: datetime
    updated_at: datetime


class EndpointWithSecret(EndpointOut):
    secret: str = Field(description="The signing secret (`whsec_…`), shown only this once.")


class AttemptOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    delivery_id: str
    event_id: str
    event_type: str
    attempted_at: datetime
    status_code: int | None
    latency_ms: int
    response_excerpt: str = Field(description="The first 1 KiB of the receiver's answer.")
    error: str | None


class AttemptPage(BaseModel):
    items: list[AttemptOut]
    next_cursor: str | None


class DeliveryOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    event_id: str
    consumer: str
    status: str
    attempts: int
    next_attempt_at: datetime | None
    last_error: str | None
    delivered_at: datetime | None


class RecoverIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    since: datetime = Field(description="Redeliver failed deliveries created from this time.")


class RecoverOut(BaseModel):
    redelivered: int


class EventTypeOut(BaseModel):
    name: str
    subject: str
    description: str
    details: dict[str, str] = Field(
        description="The fields of `data.details` and what each means (empty: undocumented)."
    )
    example: dict[str, Any] = Field(description="An example of `data.details`.")
