"""GET /api/v1/models/{name}/drift serves what the drift app publishes to Redis."""

from __future__ import annotations

import asyncio

import httpx
import redis.asyncio as aioredis

from runtime.drift_state import StatePublisher
from tests.stack_fixtures import RunningStack


def test_drift_endpoint_returns_published_state_and_404s_honestly(stack: RunningStack) -> None:
    state = {
        "model": "iris_classifier",
        "version": "1",
        "window": {"start_ms": 1000, "end_ms": 301000, "sample_count": 900, "sufficient": True},
        "evaluated_at_ms": 301500,
        "statistics": [
            {
                "subject": "petal_length",
                "kind": "feature",
                "statistic": "psi",
                "value": 0.31,
                "count": 900,
                "p_value": 1e-9,
                "p_adjusted": 1e-8,
                "warning": 0.1,
                "critical": 0.2,
            }
        ],
        "firing": [
            {
                "alert_id": "a1",
                "subject": "petal_length",
                "kind": "feature",
                "statistic": "psi",
                "severity": "critical",
                "since_ms": 241000,
                "value": 0.31,
            }
        ],
    }

    async def publish() -> None:
        client = aioredis.Redis.from_url(stack.redis_url)
        try:
            assert await StatePublisher(client, stack.namespace.drift_prefix, 60).publish(state)  # type: ignore[arg-type]
        finally:
            await client.aclose()

    asyncio.run(publish())
    answer = httpx.get(f"{stack.base_url}/api/v1/models/iris_classifier/drift", timeout=5)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"model": "iris_classifier", "versions": {"1": state}}
    quiet = httpx.get(f"{stack.base_url}/api/v1/models/binary_classifier/drift", timeout=5)
    assert quiet.status_code == 404 and "rtml drift" in quiet.json()["error"]["message"]
    unknown = httpx.get(f"{stack.base_url}/api/v1/models/nope/drift", timeout=5)
    assert unknown.status_code == 404 and "iris_classifier" in unknown.json()["error"]["message"]
