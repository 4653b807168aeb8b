"""The gateway's cache read path: a hit is answered without touching Kafka."""

from __future__ import annotations

import logging

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from gateway import metrics
from runtime.breaker import OutageBreaker
from runtime.settings import RedisSettings

log = logging.getLogger(__name__)


class GatewayCache:
    def __init__(self, settings: RedisSettings) -> None:
        self.enabled = settings.enabled
        self.prefix = settings.key_prefix
        timeout = settings.socket_timeout_ms / 1000
        self._client = aioredis.Redis.from_url(
            settings.url.get_secret_value(), socket_timeout=timeout, socket_connect_timeout=timeout
        )
        self._breaker = OutageBreaker("redis", settings.retry_after_s)

    @property
    def available(self) -> bool:
        return self.enabled and not self._breaker.open

    async def get(self, key: str) -> bytes | None:
        if not self.available:
            return None
        try:
            value: bytes | None = await self._client.get(key)  # type: ignore[assignment]
        except (RedisError, OSError, TimeoutError):
            metrics.CACHE_ERRORS.inc()
            self._breaker.trip()
            return None
        return value

    @property
    def client(self) -> aioredis.Redis:
        """The shared async client, for other read-only lookups (drift state)."""
        return self._client

    async def close(self) -> None:
        await self._client.aclose()
