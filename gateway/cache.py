"""The gateway's cache read path: a hit is answered without touching Kafka.

Lookups made in the same event-loop iteration go to Redis as one MGET (the same coalescing as
:mod:`gateway.coalesce`, for the same reason: under load one round trip and one command
instead of one per request; alone, a lookup still leaves in the iteration it was made in).
"""

from __future__ import annotations

import asyncio
import logging

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from gateway import metrics
from runtime.breaker import OutageBreaker
from runtime.cache_admin import invalidate
from runtime.redis_clients import async_client
from runtime.settings import RedisSettings

log = logging.getLogger(__name__)

Lookup = tuple[str, "asyncio.Future[bytes | None]"]


class GatewayCache:
    def __init__(self, settings: RedisSettings) -> None:
        self.enabled = settings.enabled
        self.prefix = settings.key_prefix
        timeout = settings.socket_timeout_ms / 1000
        self._client = async_client(settings, timeout)
        self._breaker = OutageBreaker("redis", settings.retry_after_s)
        self._waiting: list[Lookup] = []
        self._reads: set[asyncio.Task[None]] = set()  # referenced until done (asyncio keeps weak refs)

    @property
    def available(self) -> bool:
        return self.enabled and not self._breaker.open

    async def get(self, key: str) -> bytes | None:
        """The cached value of ``key``; None for a miss or when Redis is unavailable."""
        if not self.available:
            return None
        loop = asyncio.get_running_loop()
        future: asyncio.Future[bytes | None] = loop.create_future()
        if not self._waiting:
            loop.call_soon(self._read_waiting)
        self._waiting.append((key, future))
        return await future

    def _read_waiting(self) -> None:
        lookups, self._waiting = self._waiting, []
        task = asyncio.get_running_loop().create_task(self._mget(lookups))
        self._reads.add(task)
        task.add_done_callback(self._reads.discard)

    async def _mget(self, lookups: list[Lookup]) -> None:
        keys = [key for key, _future in lookups]
        try:
            values: list[bytes | None] = await self._client.mget(keys)  # type: ignore[assignment]
        except (RedisError, OSError, TimeoutError):
            metrics.CACHE_ERRORS.inc()
            self._breaker.trip()
            values = [None] * len(lookups)
        except BaseException:  # cancelled (shutdown): answer "miss" rather than leave waiters hanging
            _answer(lookups, [None] * len(lookups))
            raise
        _answer(lookups, values)

    @property
    def client(self) -> aioredis.Redis:
        """The shared async client, for other read-only lookups (drift state)."""
        return self._client

    async def invalidate(self, model: str, version: str | None) -> int:
        """Drop ``model``'s cached predictions (one version's, when given); raises RedisError."""
        return await invalidate(self._client, self.prefix, model, version)

    async def close(self) -> None:
        await self._client.aclose()


def _answer(lookups: list[Lookup], values: list[bytes | None]) -> None:
    for (_key, future), value in zip(lookups, values, strict=True):
        if not future.done():
            future.set_result(value)
