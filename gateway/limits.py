"""Request rates per API key (``rtml keys create --rate``) and per model (``gateway.model_rates``),
shared by every gateway through Redis.

One atomic script per check (GCRA: the bucket's "theoretical arrival time" is the only state, one
key per limited thing, and Redis's own clock is used so gateways' clocks need not agree). A burst
of one second's worth is allowed. Over the rate: 429 with ``Retry-After`` and the ``RateLimit-*``
headers. When Redis is unreachable each gateway falls back to the same limit kept locally (so N
gateways may let through up to N times the rate) and ``/ready`` says so. Nothing is checked, and
Redis is not touched, for keys and models without a rate.
"""

from __future__ import annotations

import math
import time

from redis import asyncio as aioredis
from redis.exceptions import RedisError

from runtime.breaker import OutageBreaker
from runtime.errors import RateLimited

OUTAGE_RETRY_S = 2.0

GCRA = """
local now_t = redis.call('TIME')
local now = tonumber(now_t[1]) * 1000 + math.floor(tonumber(now_t[2]) / 1000)
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local allow_at = tat + interval - burst
if allow_at > now then
    return math.ceil(allow_at - now)
end
redis.call('SET', KEYS[1], tat + interval, 'PX', math.ceil(tat + interval - now) + 1000)
return 0
"""


class RateLimiter:
    def __init__(self, client: aioredis.Redis, prefix: str) -> None:
        self._prefix = prefix
        self._script = client.register_script(GCRA)
        self._breaker = OutageBreaker("redis rate limits", OUTAGE_RETRY_S)
        self._local: dict[str, float] = {}
        """Fallback state while Redis is down: bucket -> theoretical arrival time (monotonic s)."""
        self.degraded: str | None = None

    async def check(self, bucket: str, rate: float, what: str) -> None:
        """Raise RateLimited if ``bucket`` is over ``rate`` requests a second."""
        interval_ms = 1000.0 / rate
        burst_ms = max(1000.0, interval_ms)  # a second's worth of requests at once
        wait_ms: float | None = None
        if not self._breaker.open:  # after a failure, Redis is left alone for a while
            try:
                key = f"{self._prefix}{bucket}"
                wait_ms = float(await self._script(keys=[key], args=[interval_ms, burst_ms]))
                self.degraded = None
            except RedisError as exc:
                self._breaker.trip()
                self.degraded = f"Redis unreachable, limits kept per gateway: {exc}"
        if wait_ms is None:
            wait_ms = self._local_check(bucket, interval_ms / 1000, burst_ms / 1000) * 1000
        if wait_ms > 0:
            raise RateLimited(
                f"{what} is limited to {rate:g} requests per second; retry in {math.ceil(wait_ms / 1000)} s",
                retry_after_s=wait_ms / 1000,
                limit=rate,
            )

    def _local_check(self, bucket: str, interval_s: float, burst_s: float) -> float:
        now = time.monotonic()
        tat = max(self._local.get(bucket, now), now)
        allow_at = tat + interval_s - burst_s
        if allow_at > now:
            return allow_at - now
        self._local[bucket] = tat + interval_s
        return 0.0
