"""Read sessions: the routes that only read run without a transaction of their own."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest
from sqlalchemy import insert, select

from tests.probes import probe_metadata, probe_table
from tillpay.kit.db import Database, ReadOnlyViolation
from tillpay.orders.models import OrderEvent
from tillpay.settings import Settings


@pytest.fixture
async def database(make_settings: Callable[..., Settings]) -> AsyncIterator[Database]:
    db = Database.from_settings(make_settings())
    async with db.engine.begin() as conn:
        await conn.run_sync(probe_metadata.drop_all)
        await conn.run_sync(probe_metadata.create_all)
    yield db
    async with db.engine.begin() as conn:
        await conn.run_sync(probe_metadata.drop_all)
    await db.dispose()


async def test_a_read_session_refuses_sql_writes(database: Database) -> None:
    async with database.read_session() as session:
        with pytest.raises(ReadOnlyViolation):
            await session.execute(insert(probe_table).values(label="sneaked"))
    async with database.read_session() as session:
        assert (await session.execute(select(probe_table.c.label))).all() == []


async def test_a_read_session_refuses_to_flush_new_objects(database: Database) -> None:
    async with database.read_session() as session:
        session.add(OrderEvent(order_id="ord_x", from_status=None, to_status="paid"))
        with pytest.raises(ReadOnlyViolation):
            await session.flush()


async def test_a_read_sees_what_was_committed_and_not_what_is_in_flight(
    database: Database,
) -> None:
    async with database.transaction() as session:
        await session.execute(insert(probe_table).values(label="committed"))
    async with database.transaction() as writer:
        await writer.execute(insert(probe_table).values(label="in flight"))
        # The writer holds its transaction (on SQLite: the database's write lock) open;
        # a read neither waits for it nor sees its rows.
        async with database.read_session() as reader:
            rows = await asyncio.wait_for(reader.execute(select(probe_table.c.label)), 5)
            assert [r[0] for r in rows] == ["committed"]
