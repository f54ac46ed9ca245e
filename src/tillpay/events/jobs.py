"""The outbox relay job."""

from __future__ import annotations

from tillpay.events import service
from tillpay.kit.jobs import JobContext
from tillpay.settings import Settings


async def relay(context: JobContext[Settings]) -> None:
    """Until the events issue adds consumers, pending outbox rows are acknowledged."""
    async with context.database.session() as session, session.begin():
        await service.mark_processed(session)
