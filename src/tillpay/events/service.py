"""Writing outbox events (always inside the transaction of the change they describe)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from tillpay.events.models import OutboxEvent
from tillpay.kit.db import utcnow
from tillpay.kit.jobs import nudge_after_commit


async def emit(
    session: AsyncSession,
    event_type: str,
    *,
    subject_type: str,
    subject_id: str,
    data: dict[str, Any],
) -> OutboxEvent:
    """Add ``event_type`` (e.g. ``payment.succeeded``) to the outbox of this transaction."""
    event = OutboxEvent(
        type=event_type,
        subject_type=subject_type,
        subject_id=subject_id,
        payload={"type": event_type, "data": data},
    )
    session.add(event)
    # The in-process worker's relay picks it up once committed, not at its next tick.
    nudge_after_commit(session, "events.relay")
    return event


async def emit_once(
    session: AsyncSession,
    event_id: str,
    event_type: str,
    *,
    subject_type: str,
    subject_id: str,
    data: dict[str, Any],
) -> bool:
    """Add the event with the fixed id ``event_id`` unless it exists already (True when
    this call wrote it). One ``INSERT … ON CONFLICT DO NOTHING`` on the primary key: of
    any number of writers, at once or across restarts, exactly one writes the row, so the
    row is its own "done" marker and no crash can fall between writing and marking."""
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = (
        insert(OutboxEvent)
        .values(
            id=event_id,
            type=event_type,
            subject_type=subject_type,
            subject_id=subject_id,
            payload={"type": event_type, "data": data},
            created_at=utcnow(),
        )
        .on_conflict_do_nothing(index_elements=[OutboxEvent.__table__.c.id])
    )
    written = bool((await session.execute(statement)).rowcount)  # type: ignore[attr-defined]
    if written:
        nudge_after_commit(session, "events.relay")
    return written


RETENTION = timedelta(days=30)
