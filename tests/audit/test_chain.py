"""The audit hash chain on a real database: appends chain, tampering is found."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from tests.audit.helpers import tamper, write_events
from tillpay.audit.chain import GENESIS_HASH, entry_hash
from tillpay.audit.models import AuditChainHead, AuditEvent
from tillpay.audit.service import Actor, record
from tillpay.audit.verify import ChainReport, verify_chain
from tillpay.kit.db import Database
from tillpay.kit.leases import JobLease
from tillpay.settings import Settings


@pytest.fixture
async def database(
    make_settings: Callable[..., Settings], clean_db: None
) -> AsyncIterator[Database]:
    db = Database.from_settings(make_settings())
    yield db
    await db.dispose()


async def _verify(database: Database) -> ChainReport:
    async with database.read_connection() as conn:
        return await verify_chain(conn, batch=2)  # small batches: the keyset walk is used


async def _rows(database: Database) -> list[AuditEvent]:
    async with database.read_session() as session:
        return list((await session.execute(select(AuditEvent).order_by(AuditEvent.seq))).scalars())


async def test_appends_form_one_chain_that_verifies(database: Database) -> None:
    await write_events(database, 3)
    async with database.transaction() as session:  # two in one transaction
        await record(session, Actor.system(), "test.a")
        await record(session, Actor.system(), "test.b")
    rows = await _rows(database)
    assert [r.seq for r in rows] == [1, 2, 3, 4, 5]
    assert rows[0].prev_hash == GENESIS_HASH
    assert all(r.prev_hash == p.hash for p, r in itertools.pairwise(rows))
    report = await _verify(database)
    assert report.intact
    assert report.checked == 5
    assert (report.head_seq, report.head_hash) == (5, rows[-1].hash)


async def test_an_event_rolled_back_with_its_transaction_or_savepoint_is_not_chained(
    database: Database,
) -> None:
    async def fails(session: AsyncSession, action: str) -> None:
        await record(session, Actor.system(), action)
        raise RuntimeError

    with pytest.raises(RuntimeError):
        async with database.transaction() as session:
            await fails(session, "test.rolled_back")
    async with database.transaction() as session:
        await record(session, Actor.system(), "test.kept")
        with pytest.raises(RuntimeError):
            async with session.begin_nested():
                await fails(session, "test.in_failed_savepoint")
        async with session.begin_nested():
            await record(session, Actor.system(), "test.in_savepoint")
    assert [r.action for r in await _rows(database)] == ["test.kept", "test.in_savepoint"]
    assert (await _verify(database)).intact


async def test_a_failed_flush_in_a_savepoint_keeps_the_events_of_the_transaction(
    database: Database,
) -> None:
    """A duplicate insert caught in a savepoint (how a parallel delivery is detected) rolls
    back the flush inside it; the transaction goes on and commits, with its events."""

    def lease() -> JobLease:
        now = datetime.now(UTC)
        return JobLease(name="test.duplicate", holder="test", acquired_at=now, expires_at=now)

    async with database.transaction() as session:
        session.add(lease())
    async with database.transaction() as session:
        await record(session, Actor.system(), "test.before_the_savepoint")

        async def duplicate_in_a_savepoint() -> None:
            async with session.begin_nested():
                session.add(lease())
                await session.flush()

        with pytest.raises(IntegrityError):
            await duplicate_in_a_savepoint()
        await record(session, Actor.system(), "test.after_the_savepoint")
    actions = [r.action for r in await _rows(database)]
    assert actions == ["test.before_the_savepoint", "test.after_the_savepoint"]


async def test_an_empty_trail_verifies(database: Database) -> None:
    report = await _verify(database)
    assert report.intact
    assert report.checked == 0


async def test_a_modified_row_is_found(database: Database) -> None:
    await write_events(database, 4)
    await tamper(database, "UPDATE audit_events SET actor_id = 'usr_2' WHERE seq = 3")
    broken = (await _verify(database)).broken
    assert broken is not None
    assert (broken.kind, broken.seq) == ("modified", 3)


async def test_a_deleted_row_is_found(database: Database) -> None:
    await write_events(database, 4)
    await tamper(database, "DELETE FROM audit_events WHERE seq = 2")
    broken = (await _verify(database)).broken
    assert broken is not None
    assert (broken.kind, broken.seq) == ("deleted", 3)
    assert "seq 2 missing" in broken.reason


async def test_rows_deleted_at_the_end_are_found_against_the_head(database: Database) -> None:
    await write_events(database, 4)
    await tamper(database, "DELETE FROM audit_events WHERE seq >= 3")
    report = await _verify(database)
    assert report.broken is not None
    assert report.broken.kind == "deleted"
    assert "seq 3 to 4 gone" in report.broken.reason


async def _forge(database: Database, seq: int, prev_hash: str) -> None:
    """Insert a row hashed correctly by someone who knows the encoding."""
    fields = {
        "id": f"aud_forged{seq}",
        "seq": seq,
        "prev_hash": prev_hash,
        "occurred_at": datetime(2026, 12, 3, tzinfo=UTC),
        "action": "auth.login",
        "outcome": "success",
        "actor_id": "usr_evil",
        "actor_role": "ADMIN",
        "target_type": None,
        "target_id": None,
        "ip": None,
        "request_id": None,
        "details": {},
    }
    async with database.transaction() as session:
        session.add(AuditEvent(**fields, hash=entry_hash(fields)))


async def test_a_row_inserted_past_the_head_is_found(database: Database) -> None:
    await write_events(database, 3)
    await _forge(database, 4, (await _rows(database))[-1].hash)
    broken = (await _verify(database)).broken
    assert broken is not None
    assert (broken.kind, broken.seq) == ("inserted", 4)


async def test_a_row_put_in_the_place_of_another_is_found(database: Database) -> None:
    await write_events(database, 4)
    rows = await _rows(database)
    await tamper(database, "DELETE FROM audit_events WHERE seq = 2")
    await _forge(database, 2, rows[0].hash)
    broken = (await _verify(database)).broken
    assert broken is not None
    assert (broken.kind, broken.seq) == ("inserted", 3)


async def test_postgres_refuses_to_change_or_delete_audit_rows(
    database: Database, backend: str
) -> None:
    if backend != "postgres":
        pytest.skip("the triggers are PostgreSQL's")
    await write_events(database, 2)
    for statement in (
        "UPDATE audit_events SET outcome = 'failure'",
        "DELETE FROM audit_events WHERE seq = 2",
        "TRUNCATE audit_events CASCADE",
        "UPDATE audit_chain_head SET seq = 1",
        "DELETE FROM audit_chain_head",
    ):
        with pytest.raises(DBAPIError, match="refused"):
            async with database.engine.begin() as conn:
                await conn.execute(text(statement))
    assert (await _verify(database)).checked == 2


async def test_concurrent_appends_stay_one_chain(database: Database, backend: str) -> None:
    if backend != "postgres":
        pytest.skip("SQLite serialises writers; PostgreSQL's concurrency is the question")

    async def one(n: int) -> None:
        async with database.transaction() as session:
            await record(session, Actor.system(), "test.concurrent", details={"n": n})
            await session.execute(text("SELECT pg_sleep(0.005)"))  # overlap the commits

    await asyncio.gather(*(one(n) for n in range(20)))
    report = await _verify(database)
    assert report.intact
    assert report.checked == 20
    assert report.head_seq == 20
    async with database.read_session() as session:
        head = (await session.execute(select(AuditChainHead))).scalar_one()
    assert head.seq == 20
