"""Dependencies failing under a running stack: Redis down means no cache; Kafka down means a fast 503."""

from __future__ import annotations

import time

import httpx

from tests.stack_fixtures import RunningStack, StackFactory


def test_redis_down_still_serves_correct_uncached_predictions(
    stack_factory: StackFactory, throwaway_redis: object
) -> None:
    running: RunningStack = stack_factory(workers=1, models=["iris_classifier"], redis=throwaway_redis.url)  # type: ignore[attr-defined]
    url = f"{running.base_url}/api/v1/predict"
    body = {"model_name": "iris_classifier", "features": [6.2, 2.9, 4.3, 1.3]}
    assert httpx.post(url, json=body, timeout=10).json()["from_cache"] is False
    assert httpx.post(url, json=body, timeout=10).json()["from_cache"] is True
    throwaway_redis.stop()  # type: ignore[attr-defined]
    for _ in range(3):
        answer = httpx.post(url, json=body, timeout=10)
        assert answer.status_code == 200, answer.text
        assert answer.json()["prediction"] == 1 and answer.json()["from_cache"] is False
    metrics = httpx.get(f"{running.base_url}/metrics", timeout=5).text
    assert any(
        line.startswith("rtml_gateway_cache_errors_total") and float(line.split()[-1]) >= 1
        for line in metrics.splitlines()
    )
    ready = httpx.get(f"{running.base_url}/ready", timeout=5).json()
    assert ready["cache"] == "degraded"


def test_kafka_down_answers_503_fast_ready_says_why_and_service_recovers(
    stack_factory: StackFactory, throwaway_kafka: object
) -> None:
    running = stack_factory(workers=1, models=["iris_classifier"], bootstrap=throwaway_kafka.bootstrap)  # type: ignore[attr-defined]
    url = f"{running.base_url}/api/v1/predict"
    body = {
        "model_name": "iris_classifier",
        "features": [5.1, 3.5, 1.4, 0.2],
        "use_cache": False,
        "timeout_ms": 5000,
    }
    assert httpx.post(url, json=body, timeout=10).status_code == 200
    throwaway_kafka.stop()  # type: ignore[attr-defined]
    deadline = time.monotonic() + 20
    while (
        time.monotonic() < deadline and httpx.get(f"{running.base_url}/ready", timeout=5).status_code == 200
    ):
        time.sleep(0.2)
    ready = httpx.get(f"{running.base_url}/ready", timeout=5)
    assert ready.status_code == 503 and "kafka unreachable" in " ".join(ready.json()["reasons"])
    started = time.monotonic()
    answer = httpx.post(url, json=body, timeout=10)
    elapsed = time.monotonic() - started
    assert answer.status_code == 503, answer.text
    assert answer.json()["error"]["code"] == "unavailable"
    assert elapsed < 1.0, f"503 took {elapsed:.2f}s"

    throwaway_kafka.start()  # type: ignore[attr-defined]
    deadline = time.monotonic() + 45
    while (
        time.monotonic() < deadline and httpx.get(f"{running.base_url}/ready", timeout=5).status_code != 200
    ):
        time.sleep(0.3)
    # The gateway is ready again; workers need a moment to rejoin their group after the restart.
    deadline = time.monotonic() + 45
    recovered = httpx.post(url, json=body, timeout=10)
    while recovered.status_code != 200 and time.monotonic() < deadline:
        recovered = httpx.post(url, json={**body, "timeout_ms": 2000}, timeout=10)
    assert recovered.status_code == 200, recovered.text
    assert recovered.json()["prediction"] == 0
