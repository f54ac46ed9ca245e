"""Job leases: one row per exclusive job name says which worker may run it, until when.

A lease is taken with one atomic statement (``INSERT … ON CONFLICT DO UPDATE … WHERE the
lease lapsed OR is ours``), so of any number of workers racing for it, one wins, on
PostgreSQL and SQLite alike. The holder renews it while it runs and releases it (expires
it now) after. A killed holder's lease is taken over once it lapses. The clock is the
worker's own (as for row claims, ``db.claim_due_rows``): hosts must keep NTP time.

The same table holds counted leases (``take``/``drop``, in the caller's transaction): of
names ``x:0`` … ``x:N-1``, the holders of valid rows are at most N. Merchant webhooks use
them to bound the deliveries in flight to one endpoint across every worker.
"""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Collection
from datetime import datetime, timedelta

from sqlalchemy import CheckConstraint, String, delete, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from tillpay.kit.db import Base, Database, UTCDateTime


class JobLease(Base):
    """Who may run job ``name`` until ``expires_at``."""

    __tablename__ = "job_leases"
    __table_args__ = (
        CheckConstraint("length(name) > 0", name="name_present"),
        CheckConstraint("length(holder) > 0", name="holder_present"),
    )

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    holder: Mapped[str] = mapped_column(String(200), nullable=False)
    acquired_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)


def new_holder() -> str:
    """A holder id unique to one worker: ``host:pid:random`` (the random part tells two
    workers of one process apart, and a restarted pid from its predecessor)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(6)}"


async def acquire(
    database: Database, name: str, holder: str, *, ttl: timedelta, now: datetime
) -> bool:
    """Take (or keep) the lease on ``name`` for ``ttl`` from ``now``: True when ``holder``
    has it, False while another holder's lease is still valid."""
    insert = postgresql.insert if database.engine.dialect.name == "postgresql" else sqlite.insert
    statement = insert(JobLease).values(
        name=name, holder=holder, acquired_at=now, expires_at=now + ttl
    )
    table = JobLease.__table__.c
    upsert = statement.on_conflict_do_update(
        index_elements=[table.name],
        set_={
            "holder": statement.excluded.holder,
            "acquired_at": statement.excluded.acquired_at,
            "expires_at": statement.excluded.expires_at,
        },
        where=(table.expires_at <= now) | (table.holder == holder),
    ).returning(table.holder)
    async with database.transaction() as session:
        won = (await session.execute(upsert)).scalar_one_or_none()
    return bool(won == holder)


async def renew(
    database: Database, name: str, holder: str, *, ttl: timedelta, now: datetime
) -> bool:
    """Extend ``holder``'s lease to ``now + ttl``; False when it is no longer the holder
    (another worker took the lapsed lease, so the two may have overlapped: stop)."""
    async with database.transaction() as session:
        result = await session.execute(
            update(JobLease)
            .where(JobLease.name == name, JobLease.holder == holder)
            .values(expires_at=now + ttl)
        )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def release(database: Database, name: str, holder: str, *, now: datetime) -> None:
    """Expire ``holder``'s lease now, so the next run may be any worker's."""
    async with database.transaction() as session:
        await session.execute(
            update(JobLease)
            .where(JobLease.name == name, JobLease.holder == holder, JobLease.expires_at > now)
            .values(expires_at=now)
        )


async def taken(session: AsyncSession, names: Collection[str], *, now: datetime) -> set[str]:
    """Which of ``names`` some holder's valid lease holds now."""
    if not names:
        return set()
    rows = await session.execute(
        select(JobLease.name).where(JobLease.name.in_(sorted(names)), JobLease.expires_at > now)
    )
    return set(rows.scalars())


async def take(
    session: AsyncSession, names: Collection[str], holder: str, *, ttl: timedelta, now: datetime
) -> set[str]:
    """Take each of ``names`` that is free or lapsed for ``holder`` (until ``now + ttl``) in
    one statement of the caller's transaction; returns the names taken. Each name is one
    atomic upsert, so two holders never both win one; names go in sorted order, so two
    transactions taking overlapping names wait on each other without deadlock."""
    if not names:
        return set()
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert(JobLease).values(
        [
            {"name": name, "holder": holder, "acquired_at": now, "expires_at": now + ttl}
            for name in sorted(names)
        ]
    )
    table = JobLease.__table__.c
    upsert = statement.on_conflict_do_update(
        index_elements=[table.name],
        set_={
            "holder": statement.excluded.holder,
            "acquired_at": statement.excluded.acquired_at,
            "expires_at": statement.excluded.expires_at,
        },
        where=table.expires_at <= now,
    ).returning(table.name, table.holder)
    return {name for name, won_by in await session.execute(upsert) if won_by == holder}


async def drop(session: AsyncSession, names: Collection[str], holder: str) -> None:
    """Give back ``holder``'s leases on ``names`` (deleted, so no clock decides it); a name
    another holder took over after it lapsed stays theirs."""
    if names:
        await session.execute(
            delete(JobLease).where(JobLease.name.in_(sorted(names)), JobLease.holder == holder)
        )
