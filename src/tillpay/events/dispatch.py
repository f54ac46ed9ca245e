"""Fan-out of committed outbox events to their consumers, and each consumer's delivery
bookkeeping (claim, outcome, retry schedule, redelivery).

The relay turns each new outbox row into one :class:`EventDelivery` per consumer that
wants it, in one transaction with marking the row processed: a crash before the commit
leaves the row to the next relay, after it the deliveries exist; either way nothing is
lost and the unique ``(event_id, consumer)`` keeps each consumer to one delivery.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from tillpay.events.catalogue import INTERNAL
from tillpay.events.models import DeliveryStatus, EventDelivery, OutboxEvent
from tillpay.kit.db import Database, claim_due_rows, utcnow

Fanout = Callable[[AsyncSession, Sequence[OutboxEvent]], Awaitable[list[tuple[str, str]]]]
"""Given newly committed events, the ``(event id, consumer)`` pairs that must handle them."""


async def fan_out(
    session: AsyncSession, fanouts: Sequence[Fanout], *, limit: int
) -> tuple[int, int]:
    """Give up to ``limit`` unprocessed events (oldest first) their deliveries and mark
    them processed; returns how many events were taken and deliveries made. Rows another
    relay holds are skipped, not waited for."""
    events = list(
        (
            await session.execute(
                select(OutboxEvent)
                .where(OutboxEvent.processed_at.is_(None))
                .order_by(OutboxEvent.created_at, OutboxEvent.id)
                .limit(limit)
                .with_for_update(skip_locked=True)
            )
        ).scalars()
    )
    if not events:
        return 0, 0
    now = utcnow()
    pairs = await deliveries_for(session, fanouts, events)
    add_deliveries(session, pairs, now=now)
    await session.execute(
        update(OutboxEvent)
        .where(OutboxEvent.id.in_([e.id for e in events]), OutboxEvent.processed_at.is_(None))
        .values(processed_at=now)
    )
    return len(events), len(pairs)


async def deliveries_for(
    session: AsyncSession, fanouts: Sequence[Fanout], events: Sequence[OutboxEvent]
) -> set[tuple[str, str]]:
    """The ``(event id, consumer)`` pairs ``fanouts`` want for ``events``."""
    pairs: set[tuple[str, str]] = set()
    for fanout in fanouts:
        pairs.update(await fanout(session, events))
    return pairs


def add_deliveries(session: AsyncSession, pairs: set[tuple[str, str]], *, now: datetime) -> None:
    """One pending delivery, due now, per pair."""
    session.add_all(
        EventDelivery(event_id=event_id, consumer=consumer, next_attempt_at=now, created_at=now)
        for event_id, consumer in sorted(pairs)
    )


async def existing_deliveries(session: AsyncSession, event_id: str) -> set[tuple[str, str]]:
    """The pairs already made for one event (a redelivered hub message finds them)."""
    rows = await session.execute(
        select(EventDelivery.consumer).where(EventDelivery.event_id == event_id)
    )
    return {(event_id, consumer) for consumer in rows.scalars()}


def internal_only(fanout: Fanout) -> Fanout:
    """``fanout`` restricted to internal event types (which never go to the hub)."""

    async def fan_out(
        session: AsyncSession, events: Sequence[OutboxEvent]
    ) -> list[tuple[str, str]]:
        internal = [event for event in events if event.type in INTERNAL]
        return await fanout(session, internal) if internal else []

    return fan_out


def every_event(consumer: str) -> Fanout:
    """A fan-out giving every event one delivery to ``consumer``, internal types aside
    (``catalogue.INTERNAL``: they are for tillpay's own administrators)."""

    async def fan_out(
        session: AsyncSession, events: Sequence[OutboxEvent]
    ) -> list[tuple[str, str]]:
        return [(event.id, consumer) for event in events if event.type not in INTERNAL]

    return fan_out


@dataclass(frozen=True)
class Claimed:
    id: str
    event_id: str
    consumer: str
    attempts: int


async def claim(
    database: Database, *, consumer_prefix: str, now: datetime, limit: int, lease: timedelta
) -> list[Claimed]:
    """Claim due pending deliveries of consumers named ``consumer_prefix…`` for this
    worker (``SKIP LOCKED`` + lease: concurrent workers take disjoint rows; a killed
    worker's rows are due again once the lease lapses)."""
    rows = await claim_due_rows(
        database,
        EventDelivery,
        EventDelivery.next_attempt_at,
        (EventDelivery.event_id, EventDelivery.consumer, EventDelivery.attempts),
        where=(
            EventDelivery.status == DeliveryStatus.PENDING,
            EventDelivery.consumer.startswith(consumer_prefix, autoescape=True),
        ),
        order_by=EventDelivery.next_attempt_at,
        now=now,
        limit=limit,
        lease=lease,
    )
    return [Claimed(row[0], row[1], row[2], row[3]) for row in rows]


async def record_outcome(
    session: AsyncSession,
    delivery_id: str,
    *,
    error: str | None,
    schedule: Sequence[int],
    now: datetime,
) -> EventDelivery | None:
    """Book one attempt: delivered when ``error`` is None, else retried after the next
    step of ``schedule`` (seconds) or failed once the schedule is spent. Returns the row,
    or None when it is no longer pending (redelivered or finished meanwhile)."""
    delivery = (
        await session.execute(
            select(EventDelivery).where(EventDelivery.id == delivery_id).with_for_update()
        )
    ).scalar_one_or_none()
    if delivery is None or delivery.status != DeliveryStatus.PENDING:
        return None
    delivery.attempts += 1
    if error is None:
        delivery.status = DeliveryStatus.DELIVERED
        delivery.delivered_at = now
        delivery.next_attempt_at = None
        delivery.last_error = None
    elif delivery.attempts >= len(schedule):
        delivery.status = DeliveryStatus.FAILED
        delivery.next_attempt_at = None
        delivery.last_error = error[:200]
    else:
        delivery.next_attempt_at = now + timedelta(seconds=schedule[delivery.attempts])
        delivery.last_error = error[:200]
    return delivery


async def unclaim(
    session: AsyncSession,
    claimed: Sequence[Claimed],
    *,
    claimed_until: datetime,
    due: datetime,
) -> None:
    """Give back claims that were not attempted: each delivery is due again at ``due``,
    its attempts unchanged. Only a claim still as this run made it (due at
    ``claimed_until``) is changed, so one another worker took over after it lapsed, or
    one booked meanwhile, is left alone."""
    if not claimed:
        return
    await session.execute(
        update(EventDelivery)
        .where(
            EventDelivery.id.in_([c.id for c in claimed]),
            EventDelivery.status == DeliveryStatus.PENDING,
            EventDelivery.next_attempt_at == claimed_until,
        )
        .values(next_attempt_at=due)
    )


async def events_of(session: AsyncSession, claimed: Sequence[Claimed]) -> list[OutboxEvent]:
    """The claimed deliveries' events, oldest first (so a consumer sees one subject's
    events in the order they happened)."""
    rows = await session.execute(
        select(OutboxEvent)
        .where(OutboxEvent.id.in_([c.event_id for c in claimed]))
        .order_by(OutboxEvent.created_at, OutboxEvent.id)
    )
    return list(rows.scalars())


def restart(delivery: EventDelivery, *, now: datetime) -> None:
    """Send ``delivery`` again at once, with a fresh schedule (an admin's redelivery)."""
    delivery.status = DeliveryStatus.PENDING
    delivery.attempts = 0
    delivery.next_attempt_at = now
