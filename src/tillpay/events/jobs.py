"""The outbox relay job."""

from __future__ import annotations

from tillpay.events import service
from tillpay.kit.jobs import JobContext
from tillpay.settings import Settings

#: Outbox rows one relay transaction acknowledges.
RELAY_BATCH = 500


async def relay(context: JobContext[Settings]) -> bool:
    """Until the events issue adds consumers, pending outbox rows are acknowledged. True
    when the batch was full (the worker runs the relay again at once)."""
    async with context.database.session() as session, session.begin():
        return await service.mark_processed(session, limit=RELAY_BATCH) >= RELAY_BATCH
