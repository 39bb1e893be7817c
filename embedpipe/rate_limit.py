"""Per-tenant token buckets in Redis, shared by every server replica."""

from __future__ import annotations

from collections.abc import Callable

import redis.asyncio as aioredis

# KEYS: bucket. ARGV: rate per second, burst, cost. Redis's own clock, so replicas agree.
# Returns {allowed (0|1), milliseconds until `cost` tokens are there}.
_TAKE = """
local rate, burst, cost = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts_ms')
local tokens = tonumber(state[1]) or burst
local last = tonumber(state[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - last) * rate / 1000)
local allowed, wait_ms = 0, 0
if tokens >= cost then
  tokens = tokens - cost
  allowed = 1
else
  wait_ms = math.ceil((cost - tokens) * 1000 / rate)
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts_ms', now)
redis.call('PEXPIRE', KEYS[1], math.ceil(burst * 1000 / rate) + 1000)
return {allowed, wait_ms}
"""


class OverLimitError(Exception):
    """A tenant is over its rate; `retry_after_s` says when a call would pass."""

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after_s = retry_after_s


class RateLimiter:
    """`take(tenant)` passes or raises OverLimitError with how long to wait (and Redis's
    own errors when it cannot be reached)."""

    def __init__(
        self, redis: aioredis.Redis, key_of: Callable[[str], str], *, per_s: float, burst: int
    ) -> None:
        self.key_of = key_of
        self.per_s = per_s
        self.burst = burst
        self._take = redis.register_script(_TAKE)

    async def take(self, tenant_id: str, cost: int = 1) -> None:
        allowed, wait_ms = await self._take(
            keys=[self.key_of(tenant_id)], args=[self.per_s, self.burst, cost]
        )
        if not allowed:
            raise OverLimitError(
                f"tenant {tenant_id!r} is over its rate limit of {self.per_s:g} calls/s",
                retry_after_s=int(wait_ms) / 1000,
            )
