"""Acknowledged production risks (see docs/operations.md and :mod:`tillpay.settings_safety`).

Each flag accepts one risk that production otherwise refuses; it is logged at every start."""

from __future__ import annotations

from pydantic import BaseModel, Field


class AcceptedRiskSettings(BaseModel):
    """Explicit `I_UNDERSTAND_…` acknowledgements."""

    i_understand_database_without_tls: bool = Field(
        False,
        description="Production: accept `DATABASE_SSL_MODE=disable` to another host (TLS "
        "by a sidecar or the network). Logged as a warning at every start.",
    )
    i_understand_database_tls_unverified: bool = Field(
        False,
        description="Production: accept `DATABASE_SSL_MODE=require` to another host (TLS "
        "without checking the server certificate). Logged as a warning at every start.",
    )
    i_understand_redis_without_tls: bool = Field(
        False,
        description="Production: accept `redis://` to another host (TLS by a sidecar or the "
        "network). Logged as a warning at every start.",
    )
    i_understand_broker_without_tls: bool = Field(
        False,
        description="Production: accept `amqp://` to another host (TLS by a sidecar or the "
        "network). Logged as a warning at every start.",
    )
    i_understand_ratelimit_disabled: bool = Field(
        False,
        description="Production: accept `RATELIMIT_ENABLED=false` (a gateway enforces rate "
        "limits). Logged as a warning at every start.",
    )
    i_understand_telemetry_without_tls: bool = Field(
        False,
        description="Production: accept `http://` to another host for the OTLP endpoint or "
        "the Sentry DSN (TLS by a sidecar or the network). Logged as a warning at every start.",
    )
