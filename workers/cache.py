"""The prediction cache as the workers use it: one MGET and one pipelined write per batch.

A Redis outage degrades to no cache (all misses, writes skipped) for
``retry_after_s``; outages are counted in metrics.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import redis

from rtml.breaker import OutageBreaker
from rtml.settings import RedisSettings
from workers import metrics

log = logging.getLogger(__name__)


class WorkerCache:
    def __init__(self, settings: RedisSettings) -> None:
        self._enabled = settings.enabled
        self._ttl_s = settings.ttl_s
        timeout = settings.socket_timeout_ms / 1000
        self._client = redis.Redis.from_url(
            settings.url.get_secret_value(), socket_timeout=timeout, socket_connect_timeout=timeout
        )
        self._breaker = OutageBreaker("redis", settings.retry_after_s)

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
        try:
            pipe = self._client.pipeline(transaction=False)
            for key, value in items:
                pipe.set(key, value, ex=self._ttl_s)
            pipe.execute()
        except redis.RedisError:
            metrics.CACHE_ERRORS.labels(operation="set").inc()
            self._breaker.trip()

    def close(self) -> None:
        self._client.close()
