"""How published envelopes reach the API processes' hubs.

With Redis, the worker publishes each event's envelopes as one message on the channel
``<prefix>:realtime`` and every API process's listener routes them to its own sockets, so a
customer connected to any process hears of an event any worker handled. Pub/sub keeps
nothing: a process that is not listening at that moment misses the message, which
realtime accepts (clients re-fetch on reconnect). Without Redis, the in-process worker
hands envelopes straight to its own app's hub.
"""

from __future__ import annotations

import asyncio
import json
from typing import Protocol

import redis.asyncio as redis_asyncio
from redis.exceptions import RedisError

from tillpay.kit.logging import get_logger
from tillpay.realtime.hub import Hub

log = get_logger(__name__)

Envelopes = list[tuple[str, str]]


def channel_of(prefix: str) -> str:
    return f"{prefix}:realtime"


class Bus(Protocol):
    async def publish(self, batches: list[Envelopes]) -> None:
        """Publish each event's envelopes; raises when they could not be handed over."""


class LocalBus:
    """Straight to this process's hub (the embedded worker, no Redis)."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    async def publish(self, batches: list[Envelopes]) -> None:
        for envelopes in batches:
            self.hub.route(envelopes)


class RedisBus:
    """Publishes on the Redis channel every API process listens to."""

    #: Closed by the job context that built it (kit/jobs.JobContext.aclose).
    owned_by_context = True

    def __init__(self, url: str, channel: str) -> None:
        self.channel = channel
        self._client = redis_asyncio.Redis.from_url(
            url, socket_timeout=5.0, socket_connect_timeout=5.0
        )

    async def publish(self, batches: list[Envelopes]) -> None:
        # One round trip for the whole batch.
        async with self._client.pipeline(transaction=False) as pipe:
            for envelopes in batches:
                pipe.publish(self.channel, json.dumps(envelopes, separators=(",", ":")))
            await pipe.execute()

    async def aclose(self) -> None:
        await self._client.aclose()


async def listen(
    url: str, channel: str, hub: Hub, *, first_attempt: asyncio.Event | None = None
) -> None:
    """Route every message on ``channel`` to ``hub`` until cancelled; a lost connection is
    re-opened with back-off (what was published meanwhile is missed, by design).

    ``first_attempt`` is set once the first connection has subscribed or failed: a start-up
    waiting on it is subscribed before it serves when Redis is up, and is not held up by
    the reconnects when Redis is down (readiness reports that)."""
    backoff = 0.5
    while True:
        client = redis_asyncio.Redis.from_url(
            url, socket_connect_timeout=5.0, health_check_interval=15
        )
        try:
            async with client.pubsub(ignore_subscribe_messages=True) as pubsub:
                await pubsub.subscribe(channel)
                log.info("realtime.listening", channel=channel)
                backoff = 0.5
                if first_attempt is not None:
                    first_attempt.set()
                while True:
                    message = await pubsub.get_message(timeout=1.0)
                    if message is None or message.get("type") != "message":
                        continue
                    try:
                        envelopes = json.loads(message["data"])
                        hub.route([(str(a), str(t)) for a, t in envelopes])
                    except (ValueError, TypeError):
                        log.warning("realtime.bad_message", channel=channel)
        except (RedisError, OSError) as exc:
            log.warning("realtime.listener_lost", error=type(exc).__name__, retry_in=backoff)
            if first_attempt is not None:
                first_attempt.set()
        finally:
            await client.aclose()
        await asyncio.sleep(backoff)
        backoff = min(backoff * 2, 10.0)
