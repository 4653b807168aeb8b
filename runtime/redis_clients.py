"""The one way rtml builds Redis clients: fail fast, retry once.

redis-py 6+ retries a failed command three times with exponential backoff (seconds) by default:
a Redis outage would hold every request (and a worker's whole batch) for those seconds before
the cache's outage breaker could open. One immediate retry still rides over a pooled connection
that a restarted Redis closed.
"""

from __future__ import annotations

import redis
from redis import asyncio as aioredis
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.retry import Retry

from runtime.settings import RedisSettings


def sync_client(settings: RedisSettings, timeout_s: float | None = None) -> redis.Redis:
    timeout = timeout_s if timeout_s is not None else settings.socket_timeout_ms / 1000
    return redis.Redis.from_url(
        settings.url.get_secret_value(),
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 1),
    )


def async_client(settings: RedisSettings, timeout_s: float | None = None) -> aioredis.Redis:
    timeout = timeout_s if timeout_s is not None else settings.socket_timeout_ms / 1000
    return aioredis.Redis.from_url(
        settings.url.get_secret_value(),
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=AsyncRetry(NoBackoff(), 1),
    )
