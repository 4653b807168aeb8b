"""Admission control (issue 11): beyond `gateway.max_in_flight` requests waiting on Kafka, a request
is answered 503 with Retry-After at once, and the waiting ones still get their own answers."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path

import httpx
import numpy as np

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


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for {pid}")


def test_gateway_memory_stays_flat_under_a_tenfold_overload(stack_factory: StackFactory) -> None:
    """200 clients in a closed loop against a gateway admitting 16 at a time (12x its admission
    limit) for 16 s: the overflow is refused with 503 at once, every answer is a 200 or a 503 JSON
    error, and the gateway's RSS after the warm-up grows by less than 20 MB: neither the refused
    requests nor the admitted ones leave anything behind (a pending-reply entry, a future, a
    connection's buffers)."""
    stack = stack_factory(workers=1, extra_env={"RTML_GATEWAY__MAX_IN_FLIGHT": "16"})
    pid = stack.gateway.process.pid
    warmup_s, measure_s, clients = 4.0, 12.0, 200
    statuses: Counter[int] = Counter()
    samples: list[float] = []

    async def client_loop(client: httpx.AsyncClient, deadline: float) -> None:
        rng = np.random.default_rng()
        while time.monotonic() < deadline:
            body = {"model_name": "iris_classifier", "features": rng.random(4).tolist(), "use_cache": False}
            try:
                answer = await client.post("/api/v1/predict", json=body)
            except httpx.TransportError:
                statuses[-1] += 1
                continue
            statuses[answer.status_code] += 1
            assert answer.headers["content-type"].startswith("application/json"), answer.text

    async def sample(deadline: float) -> None:
        await asyncio.sleep(warmup_s)
        while time.monotonic() < deadline:
            samples.append(_rss_mb(pid))
            await asyncio.sleep(0.5)

    async def run() -> None:
        deadline = time.monotonic() + warmup_s + measure_s
        limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
        async with httpx.AsyncClient(base_url=stack.base_url, timeout=10, limits=limits) as client:
            await asyncio.gather(sample(deadline), *(client_loop(client, deadline) for _ in range(clients)))

    asyncio.run(run())
    assert set(statuses) <= {200, 503}, statuses
    assert statuses[503] > 0 and statuses[200] > 0, statuses
    growth = max(samples) - samples[0]
    print(f"overload: {dict(statuses)}; gateway RSS {samples[0]:.1f} -> max {max(samples):.1f} MB")
    assert growth < 20, f"gateway RSS grew {growth:.1f} MB under overload: {samples}"
