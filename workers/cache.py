"""The prediction cache as the workers use it: one MGET and one write command per batch.

The write is one EVALSHA of a tiny Lua script that SETs every key with its TTL: one
command of 2N+1 arguments instead of N pipelined SET EX commands, whose client-side
packing was a third of a worker's CPU under direct-producer load. (Standalone Redis:
a cluster would refuse a script touching keys of several slots.)

A Redis outage degrades to no cache (all misses, writes skipped) for
``retry_after_s``; outages are counted in metrics.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import redis

from runtime.breaker import OutageBreaker
from runtime.redis_clients import sync_client
from runtime.settings import RedisSettings
from workers import metrics

log = logging.getLogger(__name__)

SET_ALL_WITH_TTL = """
local ttl = ARGV[1]
for i = 1, #KEYS do
    redis.call('SET', KEYS[i], ARGV[i + 1], 'EX', ttl)
end
return #KEYS
"""


class WorkerCache:
    def __init__(self, settings: RedisSettings) -> None:
        self._enabled = settings.enabled
        self._ttl_s = settings.ttl_s
        timeout = settings.socket_timeout_ms / 1000
        self._client = sync_client(settings, timeout)
        self._breaker = OutageBreaker("redis", settings.retry_after_s)
        self._set_all = self._client.register_script(SET_ALL_WITH_TTL)

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        if not keys or not self._enabled or self._breaker.open:
            return [None] * len(keys)
        try:
            values: list[bytes | None] = self._client.mget(keys)  # type: ignore[assignment]
        except redis.RedisError:
            metrics.CACHE_ERRORS.labels(operation="get").inc()
            self._breaker.trip()
            return [None] * len(keys)
        return values

    def put_many(self, items: Sequence[tuple[str, bytes]]) -> None:
        if not items or not self._enabled or self._breaker.open:
            return
        keys = [key for key, _value in items]
        arguments: list[bytes | int] = [self._ttl_s]
        arguments.extend(value for _key, value in items)
        try:
            self._set_all(keys=keys, args=arguments)
        except redis.RedisError:
            metrics.CACHE_ERRORS.labels(operation="set").inc()
            self._breaker.trip()

    def close(self) -> None:
        self._client.close()
