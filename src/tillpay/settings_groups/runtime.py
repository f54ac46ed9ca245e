"""Runtime settings: environment, bind address, public URL, server secret, data directory."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr, field_validator

#: Development-only secret. Production refuses to start while it (or any other
#: placeholder) is configured.
DEV_SECRET_KEY = "dev-only-insecure-secret-key-change-me-0000000000"  # noqa: S105


class RuntimeSettings(BaseModel):
    """How and where this process runs."""

    environment: Literal["development", "test", "production"] = Field(
        "development", description="`development`, `test` or `production` (strict checks)."
    )
    host: str = Field("127.0.0.1", description="Address `tillpay serve` binds to.")
    port: int = Field(8000, ge=1, le=65535, description="Port `tillpay serve` listens on.")
    public_base_url: str = Field(
        "",
        description="Public URL of this service for links (emails, provider return URLs); "
        "default `http://HOST:PORT`.",
    )
    secret_key: SecretStr = Field(
        SecretStr(DEV_SECRET_KEY),
        description="Server secret (≥ 32 chars) for HMAC-derived values. Has a `_FILE` variant.",
    )
    data_dir: Path = Field(
        Path("var"), description="Directory for the default SQLite database and mail."
    )
    demo_data: bool = Field(
        False, description="Load demo data at start (`tillpay dev` turns it on)."
    )
    worker_in_process: bool = Field(
        True, description="Run the background worker inside the API process."
    )
    worker_concurrency: int = Field(
        16,
        ge=1,
        le=64,
        description="Webhook events (and sandbox deliveries) one worker process handles at "
        "once on PostgreSQL, at most half `DATABASE_POOL_SIZE`; one at a time on SQLite.",
    )

    @field_validator("public_base_url")
    @classmethod
    def _strip_trailing_slash(cls, value: str) -> str:
        if not value:
            return value
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")

    @property
    def is_production(self) -> bool:
        return self.environment == "production"
