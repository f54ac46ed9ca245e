"""kit builds the engine from plain values; the settings describe them."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import text

from tillpay.kit.config import DatabaseConfig
from tillpay.kit.db import Database, build_ssl_context
from tillpay.settings import Settings

URL = "postgresql+asyncpg://tillpay:hunter2@db.internal/tillpay"


def test_the_settings_describe_their_database_as_plain_values() -> None:
    settings = Settings(
        environment="test",
        database_url=URL,
        database_pool_size=7,
        database_max_overflow=3,
        database_pool_timeout=4.5,
        database_statement_timeout_ms=1234,
        database_ssl_mode="verify-ca",
        database_ssl_root_cert=Path("/etc/ca.pem"),
        database_ssl_key_password="pass",
    )
    assert settings.database_config == DatabaseConfig(
        url=URL,
        pool_size=7,
        max_overflow=3,
        pool_timeout=4.5,
        statement_timeout_ms=1234,
        ssl_mode="verify-ca",
        ssl_root_cert=Path("/etc/ca.pem"),
        ssl_key_password="pass",
    )


def test_the_url_and_key_password_stay_out_of_the_repr() -> None:
    config = DatabaseConfig(url=URL, ssl_key_password="pass")
    assert "hunter2" not in repr(config)
    assert "pass'" not in repr(config)


def test_tls_follows_the_config() -> None:
    assert build_ssl_context(DatabaseConfig(url=URL)) is None
    context = build_ssl_context(DatabaseConfig(url=URL, ssl_mode="verify-full"))
    assert context is not None
    assert context.check_hostname


async def test_a_database_from_a_plain_config(tmp_path: Path) -> None:
    database = Database.from_settings(
        DatabaseConfig(url=f"sqlite+aiosqlite:///{tmp_path / 'plain.db'}")
    )
    try:
        async with database.session() as session:
            assert (await session.execute(text("SELECT 1"))).scalar_one() == 1
    finally:
        await database.dispose()
