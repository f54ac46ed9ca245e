"""The hub's dead-letter queue for admins: what is in it, and sending it back.

A message lands in ``<exchange>.dlq`` when one of tillpay's consumer queues gave up on
it (``hub/intake.py``). Listing reads the queue without acking, so every message stays
where it was. Replaying republishes a message to the queue it died in (the default
exchange routes by queue name) with publisher confirms, and only then acks it here: a
crash in between leaves a copy in both places, which the consumer's unique
``(event_id, consumer)`` makes harmless; it never leaves one in neither.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractQueue

from tillpay.hub import broker
from tillpay.kit import amqp

#: Messages one listing or replay looks at (they are held unacked meanwhile).
MAX_SCAN = 1000
EXCERPT_BYTES = 1024


@dataclass(frozen=True)
class DeadLetter:
    message_id: str | None
    event_type: str | None
    #: The consumer queue it died in, and why (``delivery_limit``, ``rejected``, …).
    queue: str | None
    reason: str | None
    dead_lettered_at: datetime | None
    body_excerpt: str


@contextlib.asynccontextmanager
async def _dead_letter_queue(
    url: str, topology: broker.Topology
) -> AsyncIterator[tuple[AbstractChannel, AbstractQueue]]:
    try:
        connection = await amqp.connect(url, timeout=5.0)
    except Exception as exc:
        raise broker.BrokerUnavailable(type(exc).__name__) from exc
    try:
        channel = await connection.channel(publisher_confirms=True)
        await broker.declare_topology(channel, topology)
        queue = await channel.get_queue(topology.dead_letter_queue, ensure=True)
        yield channel, queue
    finally:
        # Closing the channel hands back every message taken and not acked.
        with contextlib.suppress(Exception):
            await connection.close()


async def _scan(queue: AbstractQueue, limit: int) -> AsyncIterator[AbstractIncomingMessage]:
    for _ in range(limit):
        message = await queue.get(fail=False, no_ack=False)
        if message is None:
            return
        yield message


def _describe(message: AbstractIncomingMessage) -> DeadLetter:
    headers: dict[str, Any] = dict(message.headers or {})
    deaths = headers.get("x-death")
    first: dict[str, Any] = deaths[0] if isinstance(deaths, list) and deaths else {}
    when = first.get("time")
    return DeadLetter(
        message_id=message.message_id,
        event_type=message.type or message.routing_key,
        queue=_text(headers.get("x-first-death-queue")),
        reason=_text(headers.get("x-first-death-reason")),
        dead_lettered_at=when if isinstance(when, datetime) else None,
        body_excerpt=message.body[:EXCERPT_BYTES].decode("utf-8", "replace"),
    )


def _text(value: object) -> str | None:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value if isinstance(value, str) else None


async def count(url: str, topology: broker.Topology) -> int:
    async with _dead_letter_queue(url, topology) as (_, queue):
        declared = await queue.declare()
        return int(declared.message_count or 0)


async def peek(url: str, topology: broker.Topology, *, limit: int) -> list[DeadLetter]:
    """The first ``limit`` dead letters, oldest first; the queue is left as it was."""
    async with _dead_letter_queue(url, topology) as (_, queue):
        return [_describe(message) async for message in _scan(queue, min(limit, MAX_SCAN))]


async def replay(
    url: str, topology: broker.Topology, *, message_ids: Collection[str] | None
) -> list[str]:
    """Send dead letters back to the tillpay queue each died in: those with an id in
    ``message_ids``, or all of them (up to :data:`MAX_SCAN`) when None. Returns the ids
    replayed. Messages of queues that are not tillpay's stay where they are."""
    own = f"{topology.exchange}."
    replayed: list[str] = []
    async with _dead_letter_queue(url, topology) as (channel, queue):
        async for message in _scan(queue, MAX_SCAN):
            letter = _describe(message)
            wanted = message_ids is None or letter.message_id in message_ids
            if not wanted or letter.queue is None or not letter.queue.startswith(own):
                continue
            try:
                await channel.default_exchange.publish(
                    aio_pika.Message(
                        message.body,
                        message_id=message.message_id,
                        type=message.type,
                        content_type=message.content_type,
                        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                        timestamp=message.timestamp,
                        app_id="tillpay",
                        headers={"x-tillpay-replayed": True},
                    ),
                    routing_key=letter.queue,
                    # Unroutable (the queue is gone): returned, and the letter stays here.
                    mandatory=True,
                )
            except aio_pika.exceptions.DeliveryError:
                continue
            await message.ack()
            replayed.append(letter.message_id or "")
    return replayed
