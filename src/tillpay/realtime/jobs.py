"""The realtime consumer of the outbox: one ``realtime`` delivery per event, published
to the bus with the audience each may reach (:mod:`.audience`).

A push is only worth making while someone may be waiting for it: a failed publish
(Redis down) is retried briefly, then the delivery is ``failed`` and clients catch up by
re-fetching when they reconnect.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from tillpay.events import dispatch
from tillpay.kit.db import utcnow
from tillpay.kit.jobs import JobContext
from tillpay.kit.logging import get_logger
from tillpay.realtime import audience
from tillpay.realtime.bus import Bus, RedisBus, channel_of
from tillpay.settings import Settings

log = get_logger(__name__)

PUBLISH_JOB = "realtime.publish"
CONSUMER = "realtime"
CLAIM_LEASE = timedelta(seconds=30)
BATCH = 200
#: Seconds before each attempt; then failed (late pushes help no one).
SCHEDULE: tuple[int, ...] = (0, 1, 5)


def bus_of(context: JobContext[Settings]) -> Bus | None:
    """Redis when configured; else None, unless the app gave its own hub's bus
    (``JobContext.provide``): a worker process of its own has no sockets to reach."""
    url = context.settings.redis_url
    if url is None:
        return None
    return RedisBus(url.get_secret_value(), channel_of(context.settings.redis_key_prefix))


def fan_out_for(context: JobContext[Settings]) -> dispatch.Fanout | None:
    """The realtime fan-out (every event), when realtime is on and there is a bus."""
    if not context.settings.realtime_enabled or context.shared(bus_of) is None:
        return None

    return dispatch.every_event(CONSUMER)


async def publish_due(context: JobContext[Settings], *, now: datetime | None = None) -> bool:
    """Publish one batch of due events; True when the batch was full."""
    bus = context.shared(bus_of)
    if bus is None or not context.settings.realtime_enabled:
        return False
    clock = now or utcnow()
    claimed = await dispatch.claim(
        context.database, consumer_prefix=CONSUMER, now=clock, limit=BATCH, lease=CLAIM_LEASE
    )
    if not claimed:
        return False
    async with context.database.read_session() as session:
        batches = [
            await audience.envelopes(session, event)
            for event in await dispatch.events_of(session, claimed)
        ]
    error: str | None = None
    try:
        await bus.publish(batches)
    except Exception as exc:  # noqa: BLE001 - any bus failure is retried, then given up
        error = f"bus unavailable ({type(exc).__name__})"
        log.warning("realtime.publish_failed", error=error, events=len(claimed))
    async with context.database.transaction() as session:
        for item in claimed:
            await dispatch.record_outcome(
                session, item.id, error=error, schedule=SCHEDULE, now=clock
            )
    return error is None and len(claimed) >= BATCH
