"""Configuration that kit consumes, as plain values, and the error for a bad configuration.

kit knows no application settings: the application builds these values from its own
settings (``tillpay.settings``) and hands them in.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

SslMode = Literal["disable", "require", "verify-ca", "verify-full"]


class ConfigurationError(ValueError):
    """Raised when the configuration is unsafe or inconsistent; names the settings at fault.
    ``problems`` lists each one on its own (``tillpay check-config`` prints them)."""

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems = problems if problems is not None else [message]


@dataclass(frozen=True, kw_only=True)
class DatabaseConfig:
    """What the engine of :mod:`tillpay.kit.db` is built from."""

    # The URL may carry a password: it stays out of repr().
    url: str = field(repr=False)
    pool_size: int = 10
    max_overflow: int = 10
    pool_timeout: float = 10.0
    #: PostgreSQL ``statement_timeout`` per connection; 0 sets none.
    statement_timeout_ms: int = 0
    ssl_mode: SslMode = "disable"
    ssl_root_cert: Path | None = None
    ssl_cert: Path | None = None
    ssl_key: Path | None = None
    ssl_key_password: str | None = field(default=None, repr=False)

    @property
    def is_sqlite(self) -> bool:
        return self.url.startswith("sqlite")


class HasDatabaseConfig(Protocol):
    """Anything that can describe its database, such as the application's settings."""

    @property
    def database_config(self) -> DatabaseConfig: ...


def database_config(source: DatabaseConfig | HasDatabaseConfig) -> DatabaseConfig:
    """``source`` itself, or the database configuration it describes."""
    return source if isinstance(source, DatabaseConfig) else source.database_config
