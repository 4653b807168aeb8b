"""The rate limiter's fallback (gateway/limits.py): with Redis unreachable each gateway keeps the
limit itself and says so."""

from __future__ import annotations

import asyncio

import pytest
from pydantic import SecretStr

from gateway.limits import RateLimiter
from runtime.errors import RateLimited
from runtime.redis_clients import async_client
from runtime.settings import RedisSettings


def test_without_redis_the_limit_is_kept_locally_and_reported() -> None:
    async def run() -> tuple[int, RateLimited, str | None]:
        client = async_client(RedisSettings(url=SecretStr("redis://127.0.0.1:1/0")), 0.2)
        limiter = RateLimiter(client, "t:")
        allowed = 0
        refused: RateLimited | None = None
        for _ in range(10):
            try:
                await limiter.check("key:a", 4, "API key 'a'")
                allowed += 1
            except RateLimited as exc:
                refused = exc
        await client.aclose()
        assert refused is not None
        return allowed, refused, limiter.degraded

    allowed, refused, degraded = asyncio.run(run())
    assert allowed == 4  # a second's worth at 4/s
    assert degraded is not None and "Redis unreachable" in degraded
    headers = refused.http_headers()
    assert headers["RateLimit-Limit"] == "4" and int(headers["Retry-After"]) >= 1


@pytest.mark.parametrize("rate", [0.5, 1000.0])
def test_the_burst_is_a_second_of_requests_at_least_one(rate: float) -> None:
    async def run() -> int:
        client = async_client(RedisSettings(url=SecretStr("redis://127.0.0.1:1/0")), 0.2)
        limiter = RateLimiter(client, "t:")
        allowed = 0
        for _ in range(1500):
            try:
                await limiter.check("m", rate, "model 'm'")
                allowed += 1
            except RateLimited:
                break
        await client.aclose()
        return allowed

    burst = max(1, int(rate))
    assert burst <= asyncio.run(run()) <= burst * 1.05 + 1  # the loop itself takes a few ms of refill
