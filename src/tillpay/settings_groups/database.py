"""Database settings: the SQLAlchemy URL, the PostgreSQL pool and TLS to PostgreSQL."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr, field_validator

from tillpay.kit.config import DatabaseConfig
from tillpay.settings_groups.urls import check_url_scheme


class DatabaseSettings(BaseModel):
    """Where the database is and how tillpay connects to it."""

    database_url: SecretStr = Field(
        SecretStr(""),
        description="SQLAlchemy URL: `sqlite+aiosqlite:///…` or `postgresql+asyncpg://…`; "
        "default `sqlite+aiosqlite:///<DATA_DIR>/tillpay.db`.",
    )
    database_pool_size: int = Field(
        20,
        ge=1,
        le=200,
        description="PostgreSQL connections kept open per process (size it to the "
        "concurrent requests: connections beyond it are opened and closed per use).",
    )
    database_max_overflow: int = Field(
        10, ge=0, le=200, description="Extra connections opened under bursts, closed after."
    )
    database_pool_timeout: float = Field(
        10.0, gt=0, description="Seconds to wait for a pooled connection."
    )
    database_statement_timeout_ms: int = Field(
        15000, ge=0, description="PostgreSQL `statement_timeout` per connection (0 = none)."
    )
    database_ssl_mode: Literal["disable", "require", "verify-ca", "verify-full"] = Field(
        "disable",
        description="TLS to PostgreSQL: `disable`, `require`, `verify-ca`, `verify-full`.",
    )
    database_ssl_root_cert: Path | None = Field(
        None, description="CA bundle for verifying the PostgreSQL server certificate."
    )
    database_ssl_cert: Path | None = Field(None, description="Client certificate (PEM).")
    database_ssl_key: Path | None = Field(None, description="Client private key (PEM).")
    database_ssl_key_password: SecretStr | None = Field(
        None, description="Password of the client key. Has a `_FILE` variant."
    )

    @field_validator("database_url")
    @classmethod
    def _check_database_url_scheme(cls, value: SecretStr) -> SecretStr | None:
        return check_url_scheme(value, ("sqlite+aiosqlite", "postgresql+asyncpg"))

    @cached_property
    def database_dsn(self) -> str:
        return self.database_url.get_secret_value()

    @property
    def is_sqlite(self) -> bool:
        return self.database_dsn.startswith("sqlite")

    @property
    def database_config(self) -> DatabaseConfig:
        """What :mod:`tillpay.kit.db` builds the engine from."""
        password = self.database_ssl_key_password
        return DatabaseConfig(
            url=self.database_dsn,
            pool_size=self.database_pool_size,
            max_overflow=self.database_max_overflow,
            pool_timeout=self.database_pool_timeout,
            statement_timeout_ms=self.database_statement_timeout_ms,
            ssl_mode=self.database_ssl_mode,
            ssl_root_cert=self.database_ssl_root_cert,
            ssl_cert=self.database_ssl_cert,
            ssl_key=self.database_ssl_key,
            ssl_key_password=password.get_secret_value() if password is not None else None,
        )
