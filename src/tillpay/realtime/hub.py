"""This process's open sockets, by user, and the routing of published envelopes to them.

An envelope names its audience (``user:<id>`` or the ``admin`` channel) and carries the
message text that audience may see; the audience was decided by the publisher
(:mod:`.audience`), so routing here is a lookup, never an access decision.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from tillpay.kit.logging import get_logger

log = get_logger(__name__)

ADMIN_CHANNEL = "admin"

#: Put in a socket's queue instead of a message: the client fell too far behind.
OVERFLOW = object()


@dataclass(eq=False)
class Subscriber:
    """One open socket as the hub sees it: who it is, what it listens to, its outbox."""

    user_id: str
    queue: asyncio.Queue[object]
    channels: set[str] = field(default_factory=set)
    dropped: bool = False

    def offer(self, text: str) -> None:
        """Queue ``text`` without waiting; a full queue drops the subscriber (its socket
        closes with 1013) rather than letting one slow client hold memory without bound."""
        if self.dropped:
            return
        try:
            self.queue.put_nowait(text)
        except asyncio.QueueFull:
            self.dropped = True
            while not self.queue.empty():
                self.queue.get_nowait()
            self.queue.put_nowait(OVERFLOW)
            log.warning("realtime.subscriber_dropped", user_id=self.user_id, reason="slow")


class TooManyConnections(Exception):
    """The user already holds the most sockets one process allows."""


class Hub:
    """The sockets open in this process."""

    def __init__(self, *, max_per_user: int, queue_size: int) -> None:
        self.max_per_user = max_per_user
        self.queue_size = queue_size
        self._by_user: dict[str, set[Subscriber]] = {}
        self._admins: set[Subscriber] = set()
        #: Since start: sockets dropped as too slow, and refused as over the user's cap.
        self.dropped_slow = 0
        self.refused_over_cap = 0

    def join(self, user_id: str) -> Subscriber:
        mine = self._by_user.setdefault(user_id, set())
        if len(mine) >= self.max_per_user:
            self.refused_over_cap += 1
            raise TooManyConnections(user_id)
        subscriber = Subscriber(user_id, asyncio.Queue(maxsize=self.queue_size))
        mine.add(subscriber)
        return subscriber

    def leave(self, subscriber: Subscriber) -> None:
        mine = self._by_user.get(subscriber.user_id)
        if mine is not None:
            mine.discard(subscriber)
            if not mine:
                del self._by_user[subscriber.user_id]
        self._admins.discard(subscriber)

    def subscribe_admin(self, subscriber: Subscriber) -> None:
        subscriber.channels.add(ADMIN_CHANNEL)
        self._admins.add(subscriber)

    def unsubscribe_admin(self, subscriber: Subscriber) -> None:
        subscriber.channels.discard(ADMIN_CHANNEL)
        self._admins.discard(subscriber)

    def count(self, user_id: str | None = None) -> int:
        if user_id is not None:
            return len(self._by_user.get(user_id, ()))
        return sum(len(s) for s in self._by_user.values())

    def route(self, envelopes: list[tuple[str, str]]) -> int:
        """Hand each ``(audience, text)`` to the sockets of that audience; returns how
        many sockets got a message."""
        reached = 0
        for audience, text in envelopes:
            if audience == ADMIN_CHANNEL:
                targets: set[Subscriber] | tuple[()] = self._admins
            elif audience.startswith("user:"):
                targets = self._by_user.get(audience[5:], ())
            else:
                continue
            for subscriber in list(targets):
                was_dropped = subscriber.dropped
                subscriber.offer(text)
                if subscriber.dropped and not was_dropped:
                    self.dropped_slow += 1
                reached += 1
        return reached

    def admin_count(self) -> int:
        return len(self._admins)


class HubMetrics(Collector):
    """The hub's figures at ``/metrics``, read when scraped (nothing kept in step)."""

    def __init__(self, hub: Callable[[], Hub | None]) -> None:
        self.hub = hub

    def collect(self) -> Iterator[Metric]:
        hub = self.hub()
        if hub is None:
            return
        yield GaugeMetricFamily(
            "tillpay_realtime_connections",
            "Realtime sockets open in this process.",
            value=hub.count(),
        )
        yield GaugeMetricFamily(
            "tillpay_realtime_admin_subscriptions",
            "Open sockets subscribed to the admin channel in this process.",
            value=hub.admin_count(),
        )
        yield CounterMetricFamily(
            "tillpay_realtime_dropped_slow",
            "Sockets closed because their client fell too far behind (1013).",
            value=hub.dropped_slow,
        )
        yield CounterMetricFamily(
            "tillpay_realtime_refused_over_cap",
            "Sockets refused because their user held the most allowed per process.",
            value=hub.refused_over_cap,
        )
