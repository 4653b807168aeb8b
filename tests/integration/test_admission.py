"""Admission control (issue 11): beyond `gateway.max_in_flight` requests waiting on Kafka, a request
is answered 503 with Retry-After at once, and the waiting ones still get their own answers."""

from __future__ import annotations

import asyncio
import time

import httpx

from tests.stack_fixtures import UNSERVED_MODEL, StackFactory


def test_requests_beyond_the_in_flight_limit_get_a_fast_503(stack_factory: StackFactory) -> None:
    stack = stack_factory(workers=0, extra_env={"RTML_GATEWAY__MAX_IN_FLIGHT": "4"})
    n_features = stack.registry.metadata(UNSERVED_MODEL, "1").n_features
    body = {"model_name": UNSERVED_MODEL, "features": [0.5] * n_features, "timeout_ms": 3000}

    async def run() -> tuple[list[httpx.Response], httpx.Response, float]:
        async with httpx.AsyncClient(base_url=stack.base_url, timeout=10) as client:
            waiting = [asyncio.create_task(client.post("/api/v1/predict", json=body)) for _ in range(4)]
            await asyncio.sleep(1.0)  # all four are waiting for a worker that does not exist
            started = time.monotonic()
            refused = await client.post("/api/v1/predict", json=body)
            took = time.monotonic() - started
            return list(await asyncio.gather(*waiting)), refused, took

    waited, refused, took = asyncio.run(run())
    assert refused.status_code == 503 and refused.headers["retry-after"] == "1", refused.text
    assert "limit of 4 requests in flight" in refused.json()["error"]["message"] and took < 0.5
    assert [r.status_code for r in waited] == [504] * 4  # each waiter still got its own answer
