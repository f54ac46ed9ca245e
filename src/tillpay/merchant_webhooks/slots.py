"""The fair claim of due webhook deliveries, under a per-endpoint limit that holds across
every worker process and host.

An endpoint has ``per_endpoint`` slots, lease rows ``webhook-slot:<endpoint>:<n>`` in
``job_leases`` (``kit/leases.take``). A delivery is claimed only together with a slot of
its endpoint, in one transaction:

1. the candidates: due pending deliveries, the first per (endpoint, subject) and at most
   ``per_endpoint`` per endpoint (window functions), oldest first, ``limit`` in all,
   locked ``FOR UPDATE SKIP LOCKED`` (rows another claimer holds are skipped);
2. which of those endpoints' slots valid leases hold;
3. one upsert takes as many free slots per endpoint as it has candidates (``ON CONFLICT
   … WHERE lapsed``: of racing claimers, one wins each slot);
4. the deliveries that got a slot have their due time moved ``lease`` ahead.

A candidate that got no slot is left as it was (still due, no lease), so a full endpoint
delays none of its deliveries beyond its own slots freeing. A slot is given back in the
transaction that books its delivery; a killed worker's slots and claims lapse together
after ``lease``.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, func, select, update

from tillpay.events import dispatch
from tillpay.events.models import DeliveryStatus, EventDelivery, OutboxEvent
from tillpay.kit import leases
from tillpay.kit.db import Database
from tillpay.merchant_webhooks import service

SLOT_PREFIX = "webhook-slot:"


def slot_names(endpoint_id: str, per_endpoint: int) -> list[str]:
    return [f"{SLOT_PREFIX}{endpoint_id}:{n}" for n in range(per_endpoint)]


@dataclass(frozen=True)
class SlotClaim:
    """A claimed delivery and the endpoint slot it holds while it is sent."""

    item: dispatch.Claimed
    slot: str


@dataclass(frozen=True)
class Batch:
    claims: list[SlotClaim]
    #: Claimed something and left due deliveries behind (the job should run again at once).
    more: bool


def _candidates(*, per_endpoint: int, now: datetime, limit: int) -> Select[Any]:
    d, e = EventDelivery, OutboxEvent
    ranked = (
        select(
            d.id,
            d.consumer,
            d.next_attempt_at,
            e.created_at,
            func.row_number()
            .over(
                partition_by=(d.consumer, e.subject_type, e.subject_id),
                order_by=(d.next_attempt_at, e.created_at, d.id),
            )
            .label("in_subject"),
            func.count().over(partition_by=d.consumer).label("due"),
        )
        .join(e, e.id == d.event_id)
        .where(
            d.status == DeliveryStatus.PENDING,
            d.consumer.startswith(service.CONSUMER_PREFIX, autoescape=True),
            d.next_attempt_at <= now,
        )
        .subquery()
    )
    order = (ranked.c.next_attempt_at, ranked.c.created_at, ranked.c.id)
    firsts = (
        select(
            *order,
            ranked.c.due,
            func.row_number()
            .over(partition_by=ranked.c.consumer, order_by=order)
            .label("in_endpoint"),
        )
        .where(ranked.c.in_subject == 1)
        .subquery()
    )
    picked = (
        select(firsts.c.id, firsts.c.next_attempt_at, firsts.c.created_at, firsts.c.due)
        .where(firsts.c.in_endpoint <= per_endpoint)
        .order_by(firsts.c.next_attempt_at, firsts.c.created_at, firsts.c.id)
        .limit(limit)
        .subquery()
    )
    # The due conditions again on the locked rows: PostgreSQL re-checks them on a row a
    # concurrent claimer changed and committed meanwhile, so it is skipped, not claimed twice.
    return (
        select(d.id, d.event_id, d.consumer, d.attempts, picked.c.due)
        .join(picked, picked.c.id == d.id)
        .where(d.status == DeliveryStatus.PENDING, d.next_attempt_at <= now)
        .order_by(picked.c.next_attempt_at, picked.c.created_at, picked.c.id)
        .with_for_update(of=d, skip_locked=True)
    )


async def claim(
    database: Database,
    *,
    holder: str,
    per_endpoint: int,
    now: datetime,
    limit: int,
    lease: timedelta,
) -> Batch:
    """Claim up to ``limit`` due deliveries for ``holder``, each with a slot of its
    endpoint (at most ``per_endpoint`` valid slots per endpoint, whoever holds them)."""
    async with database.transaction() as session:
        rows = list(
            await session.execute(_candidates(per_endpoint=per_endpoint, now=now, limit=limit))
        )
        if not rows:
            return Batch([], more=False)
        by_endpoint: dict[str, list[dispatch.Claimed]] = defaultdict(list)
        due: dict[str, int] = {}
        for delivery_id, event_id, consumer, attempts, due_count in rows:
            endpoint_id = service.endpoint_of(consumer)
            by_endpoint[endpoint_id].append(
                dispatch.Claimed(delivery_id, event_id, consumer, attempts)
            )
            due[endpoint_id] = due_count
        names = {e: slot_names(e, per_endpoint) for e in by_endpoint}
        busy = await leases.taken(session, [n for ns in names.values() for n in ns], now=now)
        wanted = {
            e: [n for n in names[e] if n not in busy][: len(items)]
            for e, items in by_endpoint.items()
        }
        won = await leases.take(
            session, [n for ns in wanted.values() for n in ns], holder, ttl=lease, now=now
        )
        claims = [
            SlotClaim(item, slot)
            for e, items in by_endpoint.items()
            for item, slot in zip(items, [n for n in wanted[e] if n in won], strict=False)
        ]
        if claims:
            await session.execute(
                update(EventDelivery)
                .where(EventDelivery.id.in_([c.item.id for c in claims]))
                .values(next_attempt_at=now + lease)
            )
    claimed: dict[str, int] = defaultdict(int)
    for c in claims:
        claimed[service.endpoint_of(c.item.consumer)] += 1
    more = bool(claims) and (
        len(rows) >= limit or any(due[e] > count for e, count in claimed.items())
    )
    order = {row[0]: n for n, row in enumerate(rows)}
    claims.sort(key=lambda c: order[c.item.id])
    return Batch(claims, more=more)


async def release(database: Database, slot: str, holder: str) -> None:
    """Give ``slot`` back outside a booking (the delivery failed unexpectedly)."""
    async with database.transaction() as session:
        await leases.drop(session, [slot], holder)
