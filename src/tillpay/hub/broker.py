"""Publishing to RabbitMQ with aio-pika: a durable topic exchange, persistent messages,
publisher confirms. A message counts as published only once the broker confirmed it.

aio-pika (maintained, asyncio-native, the library FastStream itself builds on) is used
directly rather than FastStream: tillpay needs a publisher with confirms and a few
declarations, not an application framework with its own lifecycle and routing.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractExchange, AbstractQueue

from tillpay.kit import amqp

if TYPE_CHECKING:
    from pamqp.common import FieldTable  # aio-pika's own type for queue arguments

#: The default exchange (``TILLPAY_BROKER_EXCHANGE``); routing key = the event type.
EXCHANGE = "tillpay.events"


class BrokerUnavailable(Exception):
    """The broker could not be reached, or did not confirm a message."""


@dataclass(frozen=True)
class Topology:
    """The names tillpay declares on the broker, all derived from the exchange's."""

    exchange: str = EXCHANGE

    @property
    def dead_letter_exchange(self) -> str:
        return f"{self.exchange}.dlx"

    @property
    def dead_letter_queue(self) -> str:
        """Where tillpay's consumer queues dead-letter a message after its last attempt."""
        return f"{self.exchange}.dlq"

    def queue_of(self, consumer: str) -> str:
        """The durable queue of one of tillpay's own consumers."""
        return f"{self.exchange}.{consumer}"


async def declare_topology(
    channel: AbstractChannel, topology: Topology = Topology()
) -> AbstractExchange:
    """The exchange, and the dead-letter exchange with its queue (all durable)."""
    exchange = await channel.declare_exchange(
        topology.exchange, aio_pika.ExchangeType.TOPIC, durable=True
    )
    dead = await channel.declare_exchange(
        topology.dead_letter_exchange, aio_pika.ExchangeType.FANOUT, durable=True
    )
    queue = await channel.declare_queue(topology.dead_letter_queue, durable=True)
    await queue.bind(dead)
    return exchange


#: tillpay's consumers whose queues the publisher declares before its first message, so
#: nothing is published while they do not exist yet (RabbitMQ drops what no queue takes).
#: Realtime is not one: it is best effort, and its queue exists only once it is consumed.
DURABLE_CONSUMERS = ("webhooks", "email")
#: How long a realtime message may wait in its queue: a stale push is worth nothing.
BEST_EFFORT_TTL_MS = 60_000


async def declare_consumer_queue(
    connection: AbstractConnection,
    channel: AbstractChannel,
    topology: Topology,
    consumer: str,
    *,
    max_attempts: int,
    best_effort: bool = False,
) -> AbstractQueue:
    """A consumer's durable queue bound to every event. A quorum queue, because it is
    RabbitMQ that counts a message's deliveries there and, past ``x-delivery-limit``,
    dead-letters it (RabbitMQ docs, "Quorum Queues: Poison Message Handling"): the count
    survives a consumer that crashes on the message, which a count kept by the consumer
    would not. The limit counts redeliveries, so N attempts are a limit of N - 1. A
    best-effort queue (realtime) drops what waited past a minute or failed, rather than
    dead-lettering it.

    A queue that exists already is used as it is: its arguments are fixed at creation,
    and declaring it again with others (a changed ``TILLPAY_BROKER_MAX_ATTEMPTS``) would be
    refused and stop every consumer; the change applies to queues created afterwards, or
    through a RabbitMQ policy."""
    exchange = await declare_topology(channel, topology)
    name = topology.queue_of(consumer)
    if not await _queue_exists(connection, name):
        arguments: FieldTable = {
            "x-queue-type": "quorum",
            "x-delivery-limit": max_attempts - 1,
        }
        if best_effort:
            arguments["x-message-ttl"] = BEST_EFFORT_TTL_MS
        else:
            arguments["x-dead-letter-exchange"] = topology.dead_letter_exchange
        await channel.declare_queue(name, durable=True, arguments=arguments)
    queue = await channel.declare_queue(name, passive=True)
    await queue.bind(exchange, routing_key="#")
    return queue


async def _queue_exists(connection: AbstractConnection, name: str) -> bool:
    # A passive declaration of a missing queue closes its channel: a channel of its own.
    probe = await connection.channel()
    try:
        await probe.declare_queue(name, passive=True)
    except aio_pika.exceptions.ChannelNotFoundEntity:
        return False
    finally:
        with contextlib.suppress(Exception):
            await probe.close()
    return True


class Publisher:
    """One connection and confirming channel per process, opened on first use and
    reopened after a failure."""

    #: Closed by JobContext.aclose (the worker's shutdown).
    owned_by_context = True

    def __init__(
        self,
        url: str,
        *,
        topology: Topology = Topology(),
        max_attempts: int = 5,
        timeout: float = 5.0,
    ) -> None:
        self._url = url
        self._topology = topology
        self._max_attempts = max_attempts
        self._timeout = timeout
        self._lock = asyncio.Lock()
        self._connection: AbstractConnection | None = None
        self._exchange: AbstractExchange | None = None

    async def _ready(self) -> AbstractExchange:
        connection = self._connection
        if self._exchange is not None and connection is not None and not connection.is_closed:
            return self._exchange
        await self.aclose()
        try:
            self._connection = await amqp.connect(self._url, timeout=self._timeout)
            channel = await self._connection.channel(publisher_confirms=True)
            self._exchange = await declare_topology(channel, self._topology)
            for consumer in DURABLE_CONSUMERS:
                await declare_consumer_queue(
                    self._connection,
                    channel,
                    self._topology,
                    consumer,
                    max_attempts=self._max_attempts,
                )
        except Exception as exc:
            await self.aclose()
            raise BrokerUnavailable(type(exc).__name__) from exc
        return self._exchange

    async def publish(
        self, *, message_id: str, event_type: str, body: bytes, created: datetime
    ) -> None:
        """Publish one persistent message and wait for the broker's confirm."""
        async with self._lock:
            exchange = await self._ready()
            message = aio_pika.Message(
                body,
                message_id=message_id,
                type=event_type,
                content_type="application/json",
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                timestamp=created,
                app_id="tillpay",
            )
            try:
                await exchange.publish(message, routing_key=event_type, timeout=self._timeout)
            except Exception as exc:
                await self.aclose()
                raise BrokerUnavailable(type(exc).__name__) from exc

    async def aclose(self) -> None:
        connection, self._connection, self._exchange = self._connection, None, None
        if connection is not None and not connection.is_closed:
            # Closing a broken connection can fail too; there is nothing left to do then.
            with contextlib.suppress(Exception):
                await connection.close()
