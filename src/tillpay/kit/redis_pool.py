"""A bounded, blocking Redis connection pool that tells "busy" from "down".

redis-py's default pool opens up to 100 connections and then raises at once, which a
burst of parallel requests turns into errors indistinguishable from an outage. This pool
waits (up to ``wait_seconds``) for a connection to be released and, when that wait times
out, raises :class:`RedisPoolBusy`: Redis is healthy, this process is saturated.
"""

from __future__ import annotations

import asyncio
from typing import Any

from redis.asyncio import BlockingConnectionPool
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import ConnectionError as RedisConnectionError


class RedisPoolBusy(RedisConnectionError):
    """No pooled connection became free in time (Redis itself may be fine)."""


class BoundedConnectionPool(BlockingConnectionPool):
    """:class:`BlockingConnectionPool` raising :class:`RedisPoolBusy` on a wait timeout."""

    async def get_connection(self, *args: Any, **kwargs: Any) -> AbstractConnection:
        try:
            connection: AbstractConnection = await super().get_connection(  # type: ignore[no-untyped-call]
                *args, **kwargs
            )
            return connection
        except RedisConnectionError as exc:
            # The pool's own wait timed out (connect failures have other causes).
            if isinstance(exc.__cause__, asyncio.TimeoutError) and not isinstance(
                exc, RedisPoolBusy
            ):
                raise RedisPoolBusy("no Redis connection became free in time") from exc
            raise


def bounded_pool(
    url: str, *, size: int, wait_seconds: float, socket_timeout: float
) -> BoundedConnectionPool:
    """A pool of at most ``size`` connections to ``url``."""
    pool = BoundedConnectionPool.from_url(
        url,
        max_connections=size,
        timeout=wait_seconds,
        socket_timeout=socket_timeout,
        socket_connect_timeout=socket_timeout,
    )
    assert isinstance(pool, BoundedConnectionPool)
    return pool


def is_pool_busy(exc: BaseException) -> bool:
    """Whether ``exc`` (possibly wrapped, e.g. by ``limits``) is a pool wait timeout."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, RedisPoolBusy):
            return True
        seen.add(id(current))
        wrapped = getattr(current, "storage_error", None)
        current = wrapped if isinstance(wrapped, BaseException) else current.__cause__
    return False
