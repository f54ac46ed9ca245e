"""Writing outbox events (always inside the transaction of the change they describe)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from tillpay.events.models import OutboxEvent
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


RETENTION = timedelta(days=30)
