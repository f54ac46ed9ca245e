"""Reading the audit trail: filtered, newest first, keyset-paginated."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from tillpay.audit.models import AuditEvent


@dataclass(frozen=True)
class AuditFilter:
    """Which events to list; ``before_id`` is the last id of the previous page."""

    action: str | None = None
    actor_id: str | None = None
    target_id: str | None = None
    before_id: str | None = None


async def list_events(
    session: AsyncSession, where: AuditFilter, *, limit: int
) -> tuple[list[AuditEvent], bool]:
    """Up to ``limit`` events matching ``where``, and whether more follow."""
    query = select(AuditEvent).order_by(AuditEvent.id.desc()).limit(limit + 1)
    if where.action:
        query = query.where(AuditEvent.action == where.action)
    if where.actor_id:
        query = query.where(AuditEvent.actor_id == where.actor_id)
    if where.target_id:
        query = query.where(AuditEvent.target_id == where.target_id)
    if where.before_id:
        query = query.where(AuditEvent.id < where.before_id)
    rows = list((await session.execute(query)).scalars())
    return rows[:limit], len(rows) > limit
