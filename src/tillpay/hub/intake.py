"""tillpay's own consumers reading the hub: with a broker configured, merchant webhooks,
email and realtime each take their events from a durable queue of their own bound to the
exchange, instead of from the relay.

Taking a message means writing the consumer's deliveries for the event (the same
``event_deliveries`` rows the relay writes without a broker, so retries, redelivery and
the admin API are the same either way) in one transaction, and acking only after it
committed. A crash before the ack makes RabbitMQ deliver the message again, and the
unique ``(event_id, consumer)`` — checked first — makes the second take a no-op.

A message the consumer cannot take (an id no outbox row has, a handler bug) is handed
back to the broker, which counts its deliveries and dead-letters it to
``<exchange>.dlq`` after ``TILLPAY_BROKER_MAX_ATTEMPTS`` (``hub/dead_letters.py`` lists
and replays them). A database outage is not the message's fault: it is retried in place
with back-off, holding the message, so an outage delays events and dead-letters none.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from aio_pika.abc import AbstractIncomingMessage, AbstractQueue
from sqlalchemy import exc as sa_exc
from sqlalchemy import select

from tillpay.events import dispatch
from tillpay.events.models import OutboxEvent
from tillpay.hub import broker
from tillpay.hub.jobs import topology_of
from tillpay.kit import amqp
from tillpay.kit.db import Database, utcnow
from tillpay.kit.jobs import JobContext, nudge
from tillpay.kit.logging import get_logger
from tillpay.settings import Settings

log = get_logger(__name__)

#: Messages one consumer holds unacked at once.
PREFETCH = 16
#: Seconds before handing a failed message back (doubling per delivery): a poison message
#: reaches the dead-letter queue in seconds, not in a hot loop.
RETRY_BASE_SECONDS = 0.2
RETRY_MAX_SECONDS = 5.0
#: Back-off while the database is unreachable, and while the broker is.
OUTAGE_MAX_SECONDS = 30.0


@dataclass(frozen=True)
class Intake:
    """One of tillpay's consumers on the hub: its queue's name (``<exchange>.<name>``),
    the fan-out deciding its deliveries for an event, and the job that sends them."""

    name: str
    fanout: dispatch.Fanout
    wake: str
    #: Realtime: a message that waited or failed is dropped, not dead-lettered.
    best_effort: bool = False


class UnknownEvent(Exception):
    """The message names no outbox event of this deployment's database."""


def transient(exc: BaseException) -> bool:
    """Whether ``exc`` is the database (or the network to it) being unavailable rather
    than something wrong with the message."""
    if isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated:
        return True
    return isinstance(
        exc, sa_exc.OperationalError | sa_exc.InterfaceError | sa_exc.TimeoutError | OSError
    )


async def take(database: Database, intake: Intake, event_id: str) -> int:
    """Write ``intake``'s deliveries for one event (those not made yet); how many."""
    async with database.transaction() as session:
        event = (
            await session.execute(select(OutboxEvent).where(OutboxEvent.id == event_id))
        ).scalar_one_or_none()
        if event is None:
            raise UnknownEvent(event_id)
        wanted = await dispatch.deliveries_for(session, [intake.fanout], [event])
        missing = wanted - await dispatch.existing_deliveries(session, event_id)
        dispatch.add_deliveries(session, missing, now=utcnow())
    if missing:
        nudge(intake.wake)
    return len(missing)


class Consumers:
    """The intakes of one worker process: one connection, one channel, one consumer per
    intake; reconnects with back-off while the broker is away."""

    def __init__(self, context: JobContext[Settings], intakes: Sequence[Intake]) -> None:
        self.context = context
        self.intakes = list(intakes)
        self._stop = asyncio.Event()
        self._in_flight: set[asyncio.Task[Any]] = set()
        #: Set once every intake is consuming (tests wait for it).
        self.consuming = asyncio.Event()

    async def run(self) -> None:
        """Consume until :meth:`stop`; connection failures are retried, never raised."""
        settings = self.context.settings
        assert settings.broker_url is not None
        url, topology = settings.broker_url.get_secret_value(), topology_of(settings)
        delay = 0.5
        while not self._stop.is_set():
            try:
                await self._session(url, topology)
                delay = 0.5
            except Exception as exc:  # noqa: BLE001 - any broker failure: reconnect later
                self.consuming.clear()
                log.warning("hub.consumers_disconnected", error=type(exc).__name__)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), timeout=delay)
                delay = min(delay * 2, OUTAGE_MAX_SECONDS)

    async def _session(self, url: str, topology: broker.Topology) -> None:
        connection = await amqp.connect(url, timeout=5.0)
        try:
            channel = await connection.channel()
            await channel.set_qos(prefetch_count=PREFETCH)
            queues: list[tuple[AbstractQueue, str]] = []
            for intake in self.intakes:
                queue = await broker.declare_consumer_queue(
                    connection,
                    channel,
                    topology,
                    intake.name,
                    max_attempts=self.context.settings.broker_max_attempts,
                    best_effort=intake.best_effort,
                )
                tag = await queue.consume(self._handler(intake))
                queues.append((queue, tag))
            self.consuming.set()
            log.info("hub.consuming", queues=[q.name for q, _ in queues])
            closed = asyncio.ensure_future(connection.closed())
            stopping = asyncio.ensure_future(self._stop.wait())
            try:
                await asyncio.wait({closed, stopping}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                closed.cancel()
                stopping.cancel()
            if self._stop.is_set():
                # Stop taking new messages, let those in hand finish (ack after commit).
                for queue, tag in queues:
                    with contextlib.suppress(Exception):
                        await queue.cancel(tag)
                if self._in_flight:
                    await asyncio.gather(*self._in_flight, return_exceptions=True)
            else:
                raise ConnectionError("broker connection closed")
        finally:
            self.consuming.clear()
            with contextlib.suppress(Exception):
                await connection.close()

    def _handler(self, intake: Intake) -> Callable[[AbstractIncomingMessage], Awaitable[None]]:
        async def handle(message: AbstractIncomingMessage) -> None:
            # aio-pika runs each message's callback in a task of its own: remember it, so
            # a graceful stop can wait for it to ack.
            task = asyncio.current_task()
            if task is not None:
                self._in_flight.add(task)
            try:
                await self._handle(intake, message)
            finally:
                if task is not None:
                    self._in_flight.discard(task)

        return handle

    async def _handle(self, intake: Intake, message: AbstractIncomingMessage) -> None:
        # No id is no event of ours: it fails like an unknown one, and is dead-lettered.
        event_id = message.message_id or ""
        outage = 0.5
        while True:
            try:
                await take(self.context.database, intake, event_id)
            except Exception as exc:  # noqa: BLE001 - classified below: wait, or hand it back
                if transient(exc) and not self._stop.is_set():
                    log.warning("hub.take_waiting", queue=intake.name, error=type(exc).__name__)
                    await asyncio.sleep(outage)
                    outage = min(outage * 2, OUTAGE_MAX_SECONDS)
                    continue
                count = _delivery_count(message)
                log.warning(
                    "hub.take_failed",
                    queue=intake.name,
                    event_id=event_id,
                    delivery=count + 1,
                    error=type(exc).__name__,
                )
                await asyncio.sleep(min(RETRY_BASE_SECONDS * 2**count, RETRY_MAX_SECONDS))
                # Back to the broker, which counts it and dead-letters it past the limit.
                await message.nack(requeue=True)
                return
            await message.ack()
            return

    async def stop(self) -> None:
        self._stop.set()


def _delivery_count(message: AbstractIncomingMessage) -> int:
    count = (message.headers or {}).get("x-delivery-count", 0)
    return count if isinstance(count, int) else 0
