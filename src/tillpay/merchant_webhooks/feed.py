"""The event feed: public events in id order, for a shop backend catching up on what its
webhook endpoint missed (``GET /v1/events``).

Ids are time-ordered (``kit/ids.py``) but a transaction may commit after a later one, so
an event can appear below an id a reader already passed. The feed therefore lists only
events older than :data:`SETTLE`: far longer than any tillpay transaction stays open, so
a reader resuming after the last id it saw misses nothing.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from tillpay import event_payloads
from tillpay.events.catalogue import INTERNAL, PUBLIC
from tillpay.events.models import OutboxEvent
from tillpay.kit.db import utcnow
from tillpay.kit.errors import Unprocessable

SETTLE = timedelta(seconds=5)
_PUBLIC_TYPES = frozenset(e.name for e in PUBLIC)


async def page(
    session: AsyncSession, *, after: str | None, event_type: str | None, limit: int
) -> tuple[list[dict[str, Any]], str | None]:
    """Up to ``limit`` public events after id ``after`` (oldest first), each the JSON a
    webhook endpoint receives, and the id to resume after (None: nothing more yet)."""
    if event_type is not None and event_type not in _PUBLIC_TYPES:
        raise Unprocessable(f"Unknown event type {event_type[:64]!r}.", code="unknown_event_type")
    statement = (
        select(OutboxEvent)
        .where(OutboxEvent.type.not_in(INTERNAL), OutboxEvent.created_at <= utcnow() - SETTLE)
        .order_by(OutboxEvent.id)
        .limit(limit + 1)
    )
    if after is not None:
        statement = statement.where(OutboxEvent.id > after)
    if event_type is not None:
        statement = statement.where(OutboxEvent.type == event_type)
    events = list((await session.scalars(statement)).all())
    more = len(events) > limit
    events = events[:limit]
    bodies = [await event_payloads.payload(session, e) for e in events]
    return bodies, events[-1].id if more and events else None
