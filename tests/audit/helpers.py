"""Writing and tampering with audit rows for the chain tests."""

from __future__ import annotations

from sqlalchemy import text

from tillpay.audit.service import Actor, record
from tillpay.kit.db import Database


async def write_events(database: Database, count: int, *, action: str = "test.thing") -> None:
    """``count`` events, one transaction each (as many requests would)."""
    for n in range(count):
        async with database.transaction() as session:
            await record(
                session, Actor("usr_1", "ADMIN", "10.0.0.1"), action, details={"n": n, "é": "ü"}
            )


async def tamper(database: Database, *statements: str, **params: object) -> None:
    """Run raw SQL past the append-only triggers: on PostgreSQL in replica mode (the test
    user is a superuser), which fires no ordinary trigger; SQLite has none."""
    async with database.engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            await conn.execute(text("SET LOCAL session_replication_role = replica"))
        for statement in statements:
            await conn.execute(text(statement), params)
