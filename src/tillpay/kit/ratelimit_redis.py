"""The moving-window rate limit on Redis in one round trip per decision.

``limits`` decides a hit with one script call and reports the window's counts with
another, per window: two or more Redis round trips on every request. This script does
both for every window of a policy at once, atomically, with the same semantics as the
``limits`` moving window (an exact sliding log: a request is allowed when fewer than
``limit`` requests were allowed in the last ``expiry`` seconds) and all-or-nothing across
windows (a request denied by one window consumes none of the others).

Each window is a sorted set of the allowed requests' times (the Redis server's clock, so
several API processes agree), pruned to the window on every call; its TTL is the window.
"""

from __future__ import annotations

import secrets
import time
from typing import Final

from limits import RateLimitItem, WindowStats
from redis.asyncio import ConnectionPool, Redis

# KEYS: one sorted set per window. ARGV: cost, consume (1/0), a nonce making this call's
# members unique, then limit and expiry (seconds) of each window. Returns the 1-based
# index of the first window that denies (0: allowed), then per window the remaining
# count and the seconds until its oldest entry leaves it (as a string: Lua numbers
# would be truncated to integers on the way out).
_SCRIPT: Final = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local cost = tonumber(ARGV[1])
local consume = ARGV[2] == '1'
local counts = {}
local failed = 0
for i = 1, #KEYS do
  local limit = tonumber(ARGV[2 + 2 * i])
  local expiry = tonumber(ARGV[3 + 2 * i])
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now - expiry)
  counts[i] = redis.call('ZCARD', KEYS[i])
  if failed == 0 and counts[i] + cost > limit then
    failed = i
  end
end
if consume and failed == 0 then
  for i = 1, #KEYS do
    local expiry = tonumber(ARGV[3 + 2 * i])
    for j = 1, cost do
      redis.call('ZADD', KEYS[i], now, ARGV[3] .. ':' .. j)
    end
    redis.call('EXPIRE', KEYS[i], math.ceil(expiry))
    counts[i] = counts[i] + cost
  end
end
local result = {failed}
for i = 1, #KEYS do
  local limit = tonumber(ARGV[2 + 2 * i])
  local expiry = tonumber(ARGV[3 + 2 * i])
  local resets_in = expiry
  local oldest = redis.call('ZRANGE', KEYS[i], 0, 0, 'WITHSCORES')
  if oldest[2] then
    resets_in = tonumber(oldest[2]) + expiry - now
  end
  result[#result + 1] = limit - counts[i]
  result[#result + 1] = tostring(resets_in)
end
return result
"""


class RedisMovingWindows:
    """Moving-window decisions for all windows of a policy in one EVALSHA."""

    def __init__(self, pool: ConnectionPool, key_prefix: str) -> None:
        self._script = Redis(connection_pool=pool).register_script(_SCRIPT)
        self._client = Redis(connection_pool=pool)
        self._prefix = key_prefix

    def keys(self, policy: str, digest: str, items: tuple[RateLimitItem, ...]) -> list[str]:
        # The braces make every window of one client share a Redis Cluster slot, as a
        # script's keys must.
        return [
            f"{self._prefix}:mw:{{{policy}:{digest}}}:{item.amount}:{item.get_expiry()}"
            for item in items
        ]

    async def evaluate(
        self,
        policy: str,
        digest: str,
        items: tuple[RateLimitItem, ...],
        cost: int,
        *,
        consume: bool,
    ) -> tuple[RateLimitItem | None, list[WindowStats]]:
        """The window that denies (None: allowed, and consumed when ``consume``) and the
        stats of every window after the call."""
        args: list[int | str] = [cost, int(consume), secrets.token_hex(8)]
        for item in items:
            args += [item.amount, item.get_expiry()]
        reply = await self._script(keys=self.keys(policy, digest, items), args=args)
        now = time.time()
        failed = int(reply[0])
        stats = [
            WindowStats(reset_time=now + float(reply[2 + 2 * i]), remaining=int(reply[1 + 2 * i]))
            for i in range(len(items))
        ]
        return (items[failed - 1] if failed else None), stats

    async def clear(self, policy: str, digest: str, items: tuple[RateLimitItem, ...]) -> None:
        await self._client.delete(*self.keys(policy, digest, items))
