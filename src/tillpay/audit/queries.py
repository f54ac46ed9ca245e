"""Reading the audit trail: filtered, newest first and keyset-paginated, or streamed."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from tillpay.audit.models import AuditEvent


@dataclass(frozen=True)
class AuditFilter:
    """Which events to list (``occurred_from`` inclusive, ``occurred_to`` exclusive);
    ``before_id`` is the last id of the previous page."""

    action: str | None = None
    actor_id: str | None = None
    target_type: str | None = None
    target_id: str | None = None
    occurred_from: datetime | None = None
    occurred_to: datetime | None = None
    before_id: str | None = None


def _filtered(query: Select[Any], where: AuditFilter) -> Select[Any]:
    equal = {
        AuditEvent.action: where.action,
        AuditEvent.actor_id: where.actor_id,
        AuditEvent.target_type: where.target_type,
        AuditEvent.target_id: where.target_id,
    }
    query = query.where(*(column == value for column, value in equal.items() if value))
    if where.occurred_from is not None:
        query = query.where(AuditEvent.occurred_at >= where.occurred_from)
    if where.occurred_to is not None:
        query = query.where(AuditEvent.occurred_at < where.occurred_to)
    if where.before_id:
        query = query.where(AuditEvent.id < where.before_id)
    return query


async def list_events(
    session: AsyncSession, where: AuditFilter, *, limit: int
) -> tuple[list[AuditEvent], bool]:
    """Up to ``limit`` events matching ``where``, and whether more follow."""
    query = _filtered(select(AuditEvent), where).order_by(AuditEvent.id.desc()).limit(limit + 1)
    rows = list((await session.execute(query)).scalars())
    return rows[:limit], len(rows) > limit


EXPORT_COLUMNS: Sequence[str] = [c.name for c in AuditEvent.__table__.columns]


async def stream_events(
    conn: AsyncConnection, where: AuditFilter, *, batch: int = 500
) -> AsyncIterator[Row[Any]]:
    """Every event matching ``where`` in chain order (``seq``), ``batch`` rows per query:
    memory stays bounded and no statement stays open between batches."""
    columns = [AuditEvent.__table__.c[name] for name in EXPORT_COLUMNS]
    after: int | None = None
    while True:
        query = _filtered(select(*columns), where)
        if after is not None:
            query = query.where(AuditEvent.seq > after)
        rows = (await conn.execute(query.order_by(AuditEvent.seq).limit(batch))).all()
        for row in rows:
            yield row
        if len(rows) < batch:
            return
        after = rows[-1].seq
