"""Migration 0014 on a database that already holds audit rows (SQLite; the session's
PostgreSQL database is migrated through it by tests/conftest.py)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from alembic import command
from sqlalchemy import text

from tests.conftest import _base_settings, _run_sync
from tillpay import migrate
from tillpay.audit.verify import verify_chain
from tillpay.kit.db import Database


async def test_existing_rows_are_chained_oldest_first_and_the_schema_matches_the_models(
    tmp_path: Path,
) -> None:
    settings = _base_settings(database_url=f"sqlite+aiosqlite:///{tmp_path / 'old.db'}")
    _run_sync(migrate.upgrade, settings, "0011")
    database = Database.from_settings(settings)
    start = datetime(2026, 11, 1, tzinfo=UTC)
    try:
        async with database.engine.begin() as conn:
            for n, row_id in enumerate(["aud_c", "aud_a", "aud_b"]):
                await conn.execute(
                    text(
                        "INSERT INTO audit_events (id, occurred_at, action, outcome, details)"
                        " VALUES (:id, :at, 'old.event', 'success', :details)"
                    ),
                    {
                        "id": row_id,
                        "at": (start + timedelta(seconds=n)).replace(tzinfo=None),
                        "details": json.dumps({"n": n, "note": "café"}),
                    },
                )
        _run_sync(migrate.upgrade, settings)
        _run_sync(migrate.check, settings)
        async with database.read_connection() as conn:
            report = await verify_chain(conn)
            order = (await conn.execute(text("SELECT id FROM audit_events ORDER BY seq"))).all()
        assert report.intact
        assert report.checked == 3
        assert [r.id for r in order] == ["aud_c", "aud_a", "aud_b"]  # by time, not id
        _run_sync(command.downgrade, migrate.alembic_config(settings), "0011")
        _run_sync(migrate.upgrade, settings)
        async with database.read_connection() as conn:
            assert (await verify_chain(conn)).checked == 3
    finally:
        await database.dispose()
