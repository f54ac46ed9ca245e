"""Rate limiting and account lockout on top of the ``limits`` library.

In-process memory storage by default; Redis (through redis-py) when a Redis URL is
configured, so several API processes share the counters. Storage failures never raise
to the caller: depending on ``fail_open`` the request is let through (``degraded``) or
denied, and the failure is logged at error level, rate-limited to avoid log floods.

Redis connections come from a bounded pool that makes a burst wait for a free
connection. A wait that times out means "busy", not "down": that one request is decided
per ``fail_open`` but the storage is not skipped, so a burst cannot turn a healthy Redis
into a second of refusals.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import structlog
from limits import RateLimitItem, WindowStats, parse_many
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import (
    FixedWindowRateLimiter,
    MovingWindowRateLimiter,
    SlidingWindowCounterRateLimiter,
)
from limits.aio.strategies import RateLimiter as _Strategy
from limits.errors import StorageError
from redis.asyncio import ConnectionPool
from redis.exceptions import RedisError

from tillpay.kit.ratelimit_memory import MemoryMovingWindows
from tillpay.kit.ratelimit_redis import RedisMovingWindows
from tillpay.kit.redis_pool import bounded_pool, is_pool_busy

__all__ = ["Lockout", "RateDecision", "RateLimiter", "RatePolicy", "headers"]

logger = structlog.get_logger(__name__)

# Every key in Redis starts with this, so rate-limit data is easy to find and flush.
REDIS_KEY_PREFIX: Final = "tillpay:rl"  # the default; `key_prefix` overrides it
# Seconds a client is told to wait when fail-closed denies because storage is down.
FAIL_CLOSED_RETRY_AFTER: Final = 2
# After a storage failure, skip the storage for this long: a dead Redis then costs one
# timeout per interval instead of one per request.
STORAGE_RETRY_INTERVAL: Final = 1.0
# Minimum seconds between two `ratelimit.storage_unavailable` log events.
LOG_INTERVAL: Final = 30.0

_NAME_RE: Final = re.compile(r"[a-z][a-z0-9_-]{0,62}")
_STORAGE_ERRORS: Final = (StorageError, RedisError, OSError, TimeoutError)
_STRATEGIES: Final[dict[str, Callable[[Storage], _Strategy]]] = {
    "moving-window": MovingWindowRateLimiter,
    "fixed-window": FixedWindowRateLimiter,
    "sliding-window-counter": SlidingWindowCounterRateLimiter,
}


@dataclass(frozen=True)
class RatePolicy:
    """A named set of rate-limit windows, all of which must allow a request."""

    name: str
    limits: tuple[RateLimitItem, ...]

    def __post_init__(self) -> None:
        if not _NAME_RE.fullmatch(self.name):
            raise ValueError(
                f"invalid rate-limit policy name {self.name!r}: "
                "use 1-63 lowercase letters, digits, '_' or '-', starting with a letter"
            )
        if not self.limits:
            raise ValueError(f"rate-limit policy {self.name!r} has no limits")
        if any(item.amount < 1 for item in self.limits):
            raise ValueError(f"rate-limit policy {self.name!r} has a limit below 1")
        # Shortest window first: a burst denied by the per-second window then does not
        # also use up the per-hour budget.
        object.__setattr__(
            self, "limits", tuple(sorted(self.limits, key=lambda item: item.get_expiry()))
        )

    @classmethod
    def parse(cls, name: str, spec: str) -> RatePolicy:
        """Build a policy from a spec such as ``"100/minute;1000/hour"``."""
        try:
            items = parse_many(spec)
        except ValueError:
            raise ValueError(
                f"invalid rate-limit spec {spec!r} for policy {name!r}: expected "
                "'<count>/<period>' items separated by ';', e.g. '100/minute;1000/hour'"
            ) from None
        return cls(name, tuple(items))


@dataclass(frozen=True)
class RateDecision:
    """The outcome of checking a request against a policy."""

    allowed: bool
    limit: int
    remaining: int
    reset_after: int
    retry_after: int | None
    # True when the storage could not be reached and the decision is fail-open/closed.
    degraded: bool = False


def headers(decision: RateDecision) -> dict[str, str]:
    """IETF ``RateLimit-*`` response headers, plus ``Retry-After`` when denied.

    Degraded decisions carry no ``RateLimit-*`` headers because the counts are unknown.
    """
    result: dict[str, str] = {}
    if not decision.degraded:
        result["RateLimit-Limit"] = str(decision.limit)
        result["RateLimit-Remaining"] = str(max(decision.remaining, 0))
        result["RateLimit-Reset"] = str(max(decision.reset_after, 0))
    if not decision.allowed:
        result["Retry-After"] = str(max(decision.retry_after or 1, 1))
    return result


def _seconds_until(timestamp: float) -> int:
    return max(0, math.ceil(timestamp - time.time()))


class RateLimiter:
    """Named rate-limit policies evaluated against memory or Redis storage."""

    def __init__(
        self,
        storage_uri: str = "memory://",
        *,
        fail_open: bool,
        strategy: str = "moving-window",
        key_secret: bytes | None = None,
        socket_timeout: float = 0.5,
        key_prefix: str = REDIS_KEY_PREFIX,
        pool_size: int = 50,
        pool_timeout: float = 2.0,
    ) -> None:
        """Create a limiter.

        ``storage_uri`` is ``memory://`` or a Redis URL (``redis://``, ``rediss://``,
        ``redis+unix://``, optionally prefixed ``async+``). ``key_secret`` keys the hash
        applied to key parts so that e-mail addresses or IPs cannot be recovered from
        Redis by guessing; use a stable secret shared by all processes. ``pool_size``
        bounds the Redis connections; a request waits up to ``pool_timeout`` seconds for
        one to be free.
        """
        if strategy not in _STRATEGIES:
            raise ValueError(
                f"unknown rate-limit strategy {strategy!r}; use one of {sorted(_STRATEGIES)}"
            )
        if key_secret is not None and not 16 <= len(key_secret) <= 64:
            raise ValueError("key_secret must be 16 to 64 bytes")
        self.fail_open = fail_open
        self._key_secret = key_secret or b""
        self._pool: ConnectionPool | None = None
        self._key_prefix = key_prefix
        self._storage = self._make_storage(storage_uri, socket_timeout, pool_size, pool_timeout)
        self._strategy: _Strategy = _STRATEGIES[strategy](self._storage)
        # The default strategy decides all windows at once: on Redis in one round trip
        # (ratelimit_redis.py), in memory without `limits`' per-key thread hops
        # (ratelimit_memory.py).
        self._windows: RedisMovingWindows | MemoryMovingWindows | None = None
        if strategy == "moving-window":
            self._windows = (
                RedisMovingWindows(self._pool, key_prefix)
                if self._pool is not None
                else MemoryMovingWindows()
            )
        self._policies: dict[str, RatePolicy] = {}
        self._skip_storage_until = 0.0
        self._next_log_at = 0.0
        self._suppressed_logs = 0
        self._failing = False

    def _make_storage(
        self, uri: str, socket_timeout: float, pool_size: int, pool_timeout: float
    ) -> Storage:
        scheme, sep, rest = uri.removeprefix("async+").partition("://")
        if not sep:
            raise ValueError("rate-limit storage URI must look like 'memory://' or 'redis://…'")
        if scheme == "memory":
            return MemoryStorage()
        if scheme not in {"redis", "rediss", "redis+unix"}:
            raise ValueError(f"unsupported rate-limit storage scheme {scheme!r}")
        client_url = f"{'unix' if scheme == 'redis+unix' else scheme}://{rest}"
        # redis-py connections from a URL do not retry, and short timeouts keep a dead
        # Redis from stalling requests.
        self._pool = bounded_pool(
            client_url, size=pool_size, wait_seconds=pool_timeout, socket_timeout=socket_timeout
        )
        # `limits` types its pass-through options as scalars; the pool is forwarded to
        # redis.asyncio.Redis unchanged, so we own (and close) the connections.
        options: dict[str, Any] = {"connection_pool": self._pool}
        return RedisStorage(
            f"async+{scheme}://{rest}",
            wrap_exceptions=True,
            implementation="redispy",
            key_prefix=self._key_prefix,
            **options,
        )

    def register(self, name: str, spec: str) -> RatePolicy:
        """Parse ``spec`` and register it as the policy ``name``."""
        if name in self._policies:
            raise ValueError(f"rate-limit policy {name!r} is already registered")
        policy = RatePolicy.parse(name, spec)
        self._policies[name] = policy
        return policy

    def policy(self, name: str) -> RatePolicy:
        """Return the registered policy ``name``."""
        try:
            return self._policies[name]
        except KeyError:
            known = ", ".join(sorted(self._policies)) or "none"
            raise KeyError(
                f"rate-limit policy {name!r} is not registered (registered: {known})"
            ) from None

    async def hit(self, policy: RatePolicy | str, *keys: str, cost: int = 1) -> RateDecision:
        """Consume ``cost`` from every window of ``policy`` for the client ``keys``."""
        return await self._evaluate(policy, keys, cost, consume=True)

    async def test(self, policy: RatePolicy | str, *keys: str) -> RateDecision:
        """Report whether one more hit would be allowed, without consuming anything."""
        return await self._evaluate(policy, keys, 1, consume=False)

    async def reset(self, policy: RatePolicy | str, *keys: str) -> None:
        """Clear the counters of ``policy`` for the client ``keys``."""
        resolved = self._resolve(policy)
        identifiers = self._identifiers(resolved, keys)
        if self._storage_skipped():
            return
        try:
            if self._windows is not None:
                await self._windows.clear(*identifiers, resolved.limits)
            else:
                for item in resolved.limits:
                    await self._strategy.clear(item, *identifiers)
        except _STORAGE_ERRORS as exc:
            self._storage_failed(exc, resolved.name)
        else:
            self._storage_ok()

    async def check_storage(self) -> bool:
        """Whether the storage answers (for readiness probes)."""
        try:
            return await self._storage.check()
        except _STORAGE_ERRORS:
            return False

    async def close(self) -> None:
        """Release storage connections."""
        if self._pool is not None:
            await self._pool.aclose()

    def _resolve(self, policy: RatePolicy | str) -> RatePolicy:
        return self.policy(policy) if isinstance(policy, str) else policy

    def _digest(self, parts: tuple[str, ...]) -> str:
        # JSON encodes the tuple unambiguously ("a:b" vs ("a", "b")), and hashing keeps
        # client-chosen strings out of the key layout.
        encoded = json.dumps(parts).encode("ascii")
        return hashlib.blake2b(encoded, key=self._key_secret, digest_size=16).hexdigest()

    def _identifiers(self, policy: RatePolicy, keys: tuple[str, ...]) -> tuple[str, str]:
        return policy.name, self._digest(keys)

    async def _evaluate(
        self, policy: RatePolicy | str, keys: tuple[str, ...], cost: int, *, consume: bool
    ) -> RateDecision:
        if cost < 1:
            raise ValueError("cost must be at least 1")
        resolved = self._resolve(policy)
        identifiers = self._identifiers(resolved, keys)
        if self._storage_skipped():
            return self._unavailable_decision(resolved)
        try:
            if self._windows is not None:
                denied, window_stats = await self._windows.evaluate(
                    *identifiers, resolved.limits, cost, consume=consume
                )
                self._storage_ok()
                return _decide(resolved.limits, window_stats, denied, cost)
            failed: RateLimitItem | None = None
            for item in resolved.limits:
                if consume:
                    ok = await self._strategy.hit(item, *identifiers, cost=cost)
                else:
                    ok = await self._strategy.test(item, *identifiers, cost=cost)
                if not ok:
                    failed = item
                    break
            stats = await asyncio.gather(
                *(self._strategy.get_window_stats(item, *identifiers) for item in resolved.limits)
            )
        except _STORAGE_ERRORS as exc:
            self._storage_failed(exc, resolved.name)
            return self._unavailable_decision(resolved)
        self._storage_ok()
        return _decide(resolved.limits, stats, failed, cost)

    def _unavailable_decision(self, policy: RatePolicy) -> RateDecision:
        item = policy.limits[0]
        if self.fail_open:
            return RateDecision(
                allowed=True,
                limit=item.amount,
                remaining=item.amount,
                reset_after=item.get_expiry(),
                retry_after=None,
                degraded=True,
            )
        return RateDecision(
            allowed=False,
            limit=item.amount,
            remaining=0,
            reset_after=FAIL_CLOSED_RETRY_AFTER,
            retry_after=FAIL_CLOSED_RETRY_AFTER,
            degraded=True,
        )

    def _storage_skipped(self) -> bool:
        return time.monotonic() < self._skip_storage_until

    def _storage_failed(self, exc: BaseException, scope: str) -> None:
        now = time.monotonic()
        busy = is_pool_busy(exc)
        if not busy:
            self._failing = True
            self._skip_storage_until = now + STORAGE_RETRY_INTERVAL
        if now < self._next_log_at:
            self._suppressed_logs += 1
            return
        self._next_log_at = now + LOG_INTERVAL
        cause = exc.storage_error if isinstance(exc, StorageError) else exc
        (logger.warning if busy else logger.error)(
            "ratelimit.storage_busy" if busy else "ratelimit.storage_unavailable",
            scope=scope,
            fail_open=self.fail_open,
            error_type=type(cause).__name__,
            error=str(cause),
            suppressed=self._suppressed_logs,
        )
        self._suppressed_logs = 0

    def _storage_ok(self) -> None:
        if self._failing:
            self._failing = False
            logger.warning("ratelimit.storage_recovered")


def _decide(
    items: tuple[RateLimitItem, ...],
    stats: list[WindowStats],
    failed: RateLimitItem | None,
    cost: int,
) -> RateDecision:
    windows = list(zip(items, stats, strict=True))
    if failed is None:
        # Most restrictive: fewest requests left, and of those the longest wait.
        item, stat = min(windows, key=lambda w: (w[1].remaining, -w[1].reset_time))
        return RateDecision(
            allowed=True,
            limit=item.amount,
            remaining=stat.remaining,
            reset_after=_seconds_until(stat.reset_time),
            retry_after=None,
        )
    # Every exhausted window must reset before the client may retry.
    blocking = [w for w in windows if w[0] is failed or w[1].remaining < cost]
    item, stat = max(blocking, key=lambda w: w[1].reset_time)
    reset_after = _seconds_until(stat.reset_time)
    return RateDecision(
        allowed=False,
        limit=item.amount,
        remaining=max(stat.remaining, 0),
        reset_after=reset_after,
        retry_after=max(reset_after, 1),
    )


class Lockout:
    """Exponential back-off lock for accounts after repeated failures.

    The first ``threshold - 1`` failures are free; failure number ``threshold`` locks
    for ``base_seconds``, and every further failure doubles the lock, up to
    ``max_seconds``. Failures are forgotten ``window_seconds`` after the first one, or
    on :meth:`success`. State lives in the limiter's storage, so with Redis every
    process shares it.
    """

    def __init__(
        self,
        limiter: RateLimiter,
        name: str,
        *,
        threshold: int = 5,
        base_seconds: int = 30,
        max_seconds: int = 3600,
        window_seconds: int = 86400,
    ) -> None:
        """Create a lockout called ``name`` that stores its state through ``limiter``."""
        if not _NAME_RE.fullmatch(name):
            raise ValueError(f"invalid lockout name {name!r}")
        if threshold < 1 or not 1 <= base_seconds <= max_seconds <= window_seconds:
            raise ValueError(
                "lockout needs threshold >= 1 and 1 <= base_seconds <= max_seconds "
                "<= window_seconds"
            )
        self._limiter = limiter
        self._storage = limiter._storage
        self._name = name
        self._threshold = threshold
        self._base = base_seconds
        self._max = max_seconds
        self._window = window_seconds

    def _prefix(self, key: str) -> str:
        return f"lockout:{self._name}:{self._limiter._digest((key,))}"

    def lock_seconds(self, failures: int) -> int:
        """Lock duration imposed by failure number ``failures`` (0 below threshold)."""
        if failures < self._threshold:
            return 0
        # Exponent capped so a huge failure count cannot build a huge integer.
        doublings = min(failures - self._threshold, 32)
        return min(self._base << doublings, self._max)

    async def check(self, key: str) -> int | None:
        """Seconds ``key`` is still locked for, or None when it is not locked."""
        limiter = self._limiter
        if limiter._storage_skipped():
            return None if limiter.fail_open else FAIL_CLOSED_RETRY_AFTER
        prefix = self._prefix(key)
        try:
            failures = await self._storage.get(f"{prefix}:n")
            if failures < self._threshold:
                remaining = 0
            else:
                remaining = _seconds_until(
                    await self._storage.get_expiry(f"{prefix}:lock:{failures}")
                )
        except _STORAGE_ERRORS as exc:
            limiter._storage_failed(exc, f"lockout:{self._name}")
            return None if limiter.fail_open else FAIL_CLOSED_RETRY_AFTER
        limiter._storage_ok()
        return remaining or None

    async def failure(self, key: str) -> int:
        """Record a failure for ``key``; return the lock it now has in seconds (0: none)."""
        limiter = self._limiter
        if limiter._storage_skipped():
            return 0
        prefix = self._prefix(key)
        try:
            failures = await self._storage.incr(f"{prefix}:n", self._window)
            seconds = self.lock_seconds(failures)
            if seconds:
                # One lock key per failure count, so its TTL is exactly this lock;
                # cleared first in case a key from before a success() is still alive.
                lock_key = f"{prefix}:lock:{failures}"
                await self._storage.clear(lock_key)
                await self._storage.incr(lock_key, seconds)
        except _STORAGE_ERRORS as exc:
            limiter._storage_failed(exc, f"lockout:{self._name}")
            return 0
        limiter._storage_ok()
        return seconds

    async def success(self, key: str) -> None:
        """Forget the failures (and so the lock) of ``key``."""
        limiter = self._limiter
        if limiter._storage_skipped():
            return
        try:
            await self._storage.clear(f"{self._prefix(key)}:n")
        except _STORAGE_ERRORS as exc:
            limiter._storage_failed(exc, f"lockout:{self._name}")
        else:
            limiter._storage_ok()
