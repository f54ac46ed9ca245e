"""Observability settings: logs, API docs and Prometheus metrics."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, SecretStr


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
