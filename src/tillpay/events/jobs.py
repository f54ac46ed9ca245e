"""The outbox relay job: new outbox rows become per-consumer deliveries."""

from __future__ import annotations

from collections.abc import Sequence

from tillpay.events.dispatch import Fanout, fan_out
from tillpay.kit.jobs import JobContext, nudge
from tillpay.settings import Settings

#: Outbox rows one relay transaction fans out.
RELAY_BATCH = 500


RELAY_JOB = "events.relay"


async def relay(
    context: JobContext[Settings], fanouts: Sequence[Fanout], *, wake: Sequence[str] = ()
) -> bool:
    """Fan out one batch; True when it was full (the worker runs the relay again at once).
    With no consumer wanting an event, the row is simply marked processed. When deliveries
    were made, the consumer jobs named in ``wake`` are nudged (this process's worker)."""
    async with context.database.session() as session, session.begin():
        events, deliveries = await fan_out(session, fanouts, limit=RELAY_BATCH)
    if deliveries:
        for name in wake:
            nudge(name)
    return events >= RELAY_BATCH
