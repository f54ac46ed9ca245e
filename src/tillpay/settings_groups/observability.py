"""Observability settings: logs, API docs, Prometheus metrics, tracing and error tracking."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, SecretStr, field_validator

from tillpay.settings_groups.urls import check_url_scheme


class ObservabilitySettings(BaseModel):
    """What the service tells its operators."""

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="Log level (`DEBUG` is refused in production)."
    )
    log_json: bool | None = Field(
        None, description="JSON log lines; default on except in development."
    )
    docs_enabled: bool | None = Field(
        None, description="Serve `/docs` and `/openapi.json`; default on except in production."
    )
    metrics_enabled: bool = Field(True, description="Serve Prometheus metrics at `/metrics`.")
    metrics_token: SecretStr | None = Field(
        None, description="Bearer token required on `/metrics` (required in production)."
    )
    otel_exporter_otlp_endpoint: str | None = Field(
        None,
        description="OpenTelemetry tracing: the collector's OTLP/HTTP base URL (`/v1/traces` "
        "is appended), e.g. `http://127.0.0.1:4318`. Unset: no tracing.",
    )
    otel_service_name: str = Field("tillpay", description="`service.name` of the traces.")
    otel_sample_ratio: float = Field(
        1.0, ge=0.0, le=1.0, description="Share of new traces recorded (a caller's choice wins)."
    )
    sentry_dsn: SecretStr | None = Field(
        None, description="Sentry error tracking: the project's DSN. Unset: no error tracking."
    )
    sentry_environment: str | None = Field(
        None, description="Sentry's environment tag; default `TILLPAY_ENVIRONMENT`."
    )
    sentry_traces_sample_rate: float = Field(
        0.0, ge=0.0, le=1.0, description="Share of requests sent to Sentry as performance traces."
    )

    @field_validator("otel_exporter_otlp_endpoint")
    @classmethod
    def _check_otlp_endpoint(cls, value: str | None) -> str | None:
        if not value:
            return None
        check_url_scheme(SecretStr(value), ("http", "https"))
        return value.rstrip("/")

    @field_validator("sentry_dsn")
    @classmethod
    def _check_sentry_dsn(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value():
            return None
        return check_url_scheme(value, ("http", "https"))
