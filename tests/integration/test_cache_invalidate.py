"""Cache invalidation on real Redis: `DELETE /api/v1/admin/models/{name}/cache` and
`rtml cache invalidate NAME [VERSION]` drop exactly the named model's (or version's) entries."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
import uuid

import httpx
import orjson
import redis

from runtime.cache_keys import cache_key, version_tag
from tests.kafka_tools import produce, read_topic
from tests.stack_fixtures import RunningStack, StackFactory


def predict(stack: RunningStack, model: str, version: str, row: list[float]) -> dict[str, object]:
    body = {"model_name": model, "model_version": version, "features": row}
    response = httpx.post(f"{stack.base_url}/api/v1/predict", json=body, timeout=10)
    assert response.status_code == 200, response.text
    return dict(response.json())


def cached(stack: RunningStack, model: str, version: str, row: list[float], timeout_s: float = 5.0) -> None:
    """Until the row is answered from the cache (the worker writes it just after it replies)."""
    deadline = time.monotonic() + timeout_s
    while not predict(stack, model, version, row)["from_cache"]:
        assert time.monotonic() < deadline, f"{model} v{version} {row} never came from the cache"
        time.sleep(0.05)


def admin_delete(stack: RunningStack, model: str, version: str | None = None) -> httpx.Response:
    query = f"?version={version}" if version is not None else ""
    return httpx.delete(f"{stack.base_url}/api/v1/admin/models/{model}/cache{query}", timeout=10)


def iris_row() -> list[float]:
    return [round(random.uniform(4, 8), 4), 3.0, 4.0, 1.0]


def test_admin_endpoint_drops_one_version_and_leaves_the_rest(stack: RunningStack) -> None:
    row = iris_row()
    cached(stack, "iris_classifier", "1", row)
    cached(stack, "iris_classifier", "2", row)
    metrics = httpx.get(f"{stack.base_url}/metrics", timeout=5).text
    assert 'rtml_gateway_cache_total{model="iris_classifier",result="hit",version="1"}' in metrics
    response = admin_delete(stack, "iris_classifier", "1")
    assert response.status_code == 200, response.text
    assert response.json()["deleted"] >= 1 and response.json()["version"] == "1"
    assert predict(stack, "iris_classifier", "1", row)["from_cache"] is False
    assert predict(stack, "iris_classifier", "2", row)["from_cache"] is True

    response = admin_delete(stack, "iris_classifier")
    assert response.status_code == 200 and response.json()["deleted"] >= 1
    assert predict(stack, "iris_classifier", "2", row)["from_cache"] is False


def test_admin_endpoint_names_what_exists_for_unknown_models_and_versions(stack: RunningStack) -> None:
    unknown = admin_delete(stack, "nope")
    assert unknown.status_code == 404 and "iris_classifier" in unknown.json()["error"]["message"]
    version = admin_delete(stack, "iris_classifier", "9")
    assert version.status_code == 404 and "available versions: 1, 2" in version.json()["error"]["message"]


def test_cli_invalidates_one_model_only(stack: RunningStack) -> None:
    row = iris_row()
    other = [
        round(random.uniform(0, 1), 4)
        for _ in range(stack.registry.metadata("binary_classifier", "1").n_features)
    ]
    cached(stack, "iris_classifier", "1", row)
    cached(stack, "binary_classifier", "1", other)
    env = {**os.environ, **stack.stack.env}
    done = subprocess.run(
        [sys.executable, "-m", "rtml.cli", "cache", "invalidate", "iris_classifier"],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "dropped" in done.stdout and "iris_classifier (every version)" in done.stdout
    assert predict(stack, "iris_classifier", "1", row)["from_cache"] is False
    assert predict(stack, "binary_classifier", "1", other)["from_cache"] is True

    typo = subprocess.run(
        [sys.executable, "-m", "rtml.cli", "cache", "invalidate", "iris_clasifier"],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert typo.returncode == 1 and "registered:" in typo.stderr and "iris_classifier" in typo.stderr


def test_key_precision_lets_near_identical_inputs_share_an_answer(stack_factory: StackFactory) -> None:
    stack = stack_factory(
        workers=1,
        models=["iris_classifier"],
        extra_env={"RTML_REDIS__KEY_PRECISION": '{"iris_classifier": 1}'},
    )
    base = round(random.uniform(4, 8), 1)
    cached(stack, "iris_classifier", "1", [base + 0.01, 3.0, 4.0, 1.0])
    near = predict(stack, "iris_classifier", "1", [base + 0.03, 3.0, 4.0, 1.0])
    assert near["from_cache"] is True  # rounds to the same key at 1 decimal
    far = predict(stack, "iris_classifier", "1", [base + 0.31, 3.0, 4.0, 1.0])
    assert far["from_cache"] is False


def test_a_corrupt_cached_value_is_a_counted_miss_for_gateway_and_worker(stack: RunningStack) -> None:
    """Anyone who can write to Redis must not be able to fail requests or crash workers (issue 11)."""
    row = iris_row()
    metadata = stack.registry.metadata("iris_classifier", "1")
    prefix = stack.namespace.env()["RTML_REDIS__KEY_PREFIX"]
    key = cache_key(prefix, "iris_classifier", version_tag("1", metadata.onnx_sha256), row, None)
    client = redis.Redis.from_url(stack.redis_url)
    try:
        client.set(key, b"\x00 not a cached answer")
        answer = predict(stack, "iris_classifier", "1", row)
        assert answer["from_cache"] is False and answer["model_version"] == "1"
        gateway_metrics = httpx.get(f"{stack.base_url}/metrics", timeout=5).text
        assert 'result="corrupt"' in gateway_metrics

        client.set(key, b'["x", {"not": "probabilities"}]')
        request_id = f"corrupt-{uuid.uuid4().hex[:8]}"
        # source http: the rows a gateway forwards go through the worker's cache (direct ones
        # do not by default, next test).
        value = orjson.dumps(
            {"request_id": request_id, "model": "iris_classifier", "version": "1", "features": [row],
             "source": "http"}
        )  # fmt: skip
        produce(stack.bootstrap, stack.request_topic("iris_classifier"), [value])
        records = read_topic(
            stack.bootstrap,
            stack.namespace.predictions_topic,
            lambda rs: any(r["request_id"] == request_id for r in rs),
        )
        (record,) = [r for r in records if r["request_id"] == request_id]
        assert record["from_cache"] is False and record["prediction"] in (0, 1, 2)
    finally:
        client.close()
    corrupt = 0.0
    for url in stack.worker_metrics_urls:  # every worker still alive, one of them counted it
        text = httpx.get(url, timeout=5).text
        corrupt += sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("rtml_worker_cache_total{") and 'result="corrupt"' in line
        )
    assert corrupt >= 1


def test_direct_requests_skip_the_cache_by_default(stack: RunningStack) -> None:
    """redis.cache_direct_requests is false: a row produced straight to Kafka is predicted and
    logged, but neither looked up nor stored; the same row through the gateway then is."""
    row = iris_row()
    metadata = stack.registry.metadata("iris_classifier", "1")
    prefix = stack.namespace.env()["RTML_REDIS__KEY_PREFIX"]
    key = cache_key(prefix, "iris_classifier", version_tag("1", metadata.onnx_sha256), row, None)
    client = redis.Redis.from_url(stack.redis_url)
    try:
        client.set(key, b"[2, [0.0, 0.0, 1.0]]")  # a planted answer a cache read would return
        request_id = f"direct-{uuid.uuid4().hex[:8]}"
        value = orjson.dumps(
            {"request_id": request_id, "model": "iris_classifier", "version": "1", "features": [row]}
        )
        produce(stack.bootstrap, stack.request_topic("iris_classifier"), [value])
        records = read_topic(
            stack.bootstrap,
            stack.namespace.predictions_topic,
            lambda rs: any(r["request_id"] == request_id for r in rs),
        )
        (record,) = [r for r in records if r["request_id"] == request_id]
        assert record["from_cache"] is False and record["source"] == "kafka"
        client.delete(key)
        other = iris_row()
        other_key = cache_key(prefix, "iris_classifier", version_tag("1", metadata.onnx_sha256), other, None)
        second_id = f"direct-{uuid.uuid4().hex[:8]}"
        produce(
            stack.bootstrap,
            stack.request_topic("iris_classifier"),
            [orjson.dumps({"request_id": second_id, "model": "iris_classifier", "version": "1",
                           "features": [other]})],
        )  # fmt: skip
        read_topic(
            stack.bootstrap,
            stack.namespace.predictions_topic,
            lambda rs: any(r["request_id"] == second_id for r in rs),
        )
        assert client.exists(other_key) == 0  # predicted, not stored
        assert predict(stack, "iris_classifier", "1", other)["from_cache"] is False
        deadline = time.monotonic() + 10  # the worker stores after it has replied
        while not client.exists(other_key) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert predict(stack, "iris_classifier", "1", other)["from_cache"] is True  # stored this time
    finally:
        client.close()
