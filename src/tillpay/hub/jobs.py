"""Publishing outbox events to the hub: one ``broker`` delivery per event (when a broker
is configured), published in event order with confirms. While the broker is down the
deliveries wait (retried every few minutes for weeks) and flow once it is back."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

from tillpay import event_payloads
from tillpay.events import dispatch
from tillpay.hub.broker import BrokerUnavailable, Publisher, Topology
from tillpay.kit.db import utcnow
from tillpay.kit.jobs import JobContext
from tillpay.kit.logging import get_logger
from tillpay.settings import Settings

log = get_logger(__name__)

PUBLISH_JOB = "hub.publish"
CONSUMER = "broker"
CLAIM_LEASE = timedelta(minutes=1)
BATCH = 200
#: Seconds before each attempt: a quick ramp, then every 5 minutes for ~35 days. An
#: outage delays events; it does not drop them.
SCHEDULE: tuple[int, ...] = (0, 1, 2, 5, 10, 30, 60, *([300] * 10_000))


def publisher_of(context: JobContext[Settings]) -> Publisher:
    url = context.settings.broker_url
    assert url is not None
    return Publisher(
        url.get_secret_value(),
        topology=topology_of(context.settings),
        max_attempts=context.settings.broker_max_attempts,
    )


def topology_of(settings: Settings) -> Topology:
    return Topology(settings.broker_exchange)


def fan_out_for(settings: Settings) -> dispatch.Fanout | None:
    """The hub's fan-out (every event) when a broker is configured."""
    if settings.broker_url is None:
        return None

    return dispatch.every_event(CONSUMER)


async def publish_due(context: JobContext[Settings], *, now: datetime | None = None) -> bool:
    """Publish one batch of due events; True when the batch was full."""
    if context.settings.broker_url is None:
        return False
    clock = now or utcnow()
    claimed = await dispatch.claim(
        context.database, consumer_prefix=CONSUMER, now=clock, limit=BATCH, lease=CLAIM_LEASE
    )
    if not claimed:
        return False
    async with context.database.read_session() as session:
        events = {event.id: event for event in await dispatch.events_of(session, claimed)}
        bodies = {
            event_id: json.dumps(
                await event_payloads.payload(session, event), separators=(",", ":")
            )
            for event_id, event in events.items()
        }
    publisher = context.shared(publisher_of)
    error: str | None = None
    ordered = sorted(claimed, key=lambda c: (events[c.event_id].created_at, c.event_id))
    outcomes: list[tuple[dispatch.Claimed, str | None]] = []
    for item in ordered:
        if error is None:
            event = events[item.event_id]
            try:
                await publisher.publish(
                    message_id=event.id,
                    event_type=event.type,
                    body=bodies[event.id].encode(),
                    created=event.created_at,
                )
            except BrokerUnavailable as exc:
                error = f"broker unavailable ({exc})"
                log.warning("hub.publish_failed", error=error, event_id=event.id)
        # After the first failure the rest of the batch waits too, in order.
        outcomes.append((item, error))
    async with context.database.transaction() as session:
        for item, failure in outcomes:
            await dispatch.record_outcome(
                session, item.id, error=failure, schedule=SCHEDULE, now=clock
            )
    return error is None and len(claimed) >= BATCH
