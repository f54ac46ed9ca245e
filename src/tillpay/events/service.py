"""Writing outbox events (always inside the transaction of the change they describe)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from tillpay.events.models import OutboxEvent
from tillpay.kit.db import utcnow


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
    return event


async def mark_processed(session: AsyncSession, *, limit: int = 500) -> int:
    """The relay until consumers exist: acknowledge pending events in creation order.
    Rows another relay (another worker process) is acknowledging are skipped, not
    waited for."""
    ids = (
        (
            await session.execute(
                select(OutboxEvent.id)
                .where(OutboxEvent.processed_at.is_(None))
                .order_by(OutboxEvent.created_at, OutboxEvent.id)
                .limit(limit)
                .with_for_update(skip_locked=True)
            )
        )
        .scalars()
        .all()
    )
    if not ids:
        return 0
    await session.execute(
        update(OutboxEvent)
        .where(OutboxEvent.id.in_(ids), OutboxEvent.processed_at.is_(None))
        .values(processed_at=utcnow())
    )
    return len(ids)


RETENTION = timedelta(days=30)
