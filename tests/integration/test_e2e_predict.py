"""The core path on real Kafka and Redis: HTTP -> gateway -> Kafka -> workers -> reply + log."""

from __future__ import annotations

import asyncio
import random
import time
import uuid

import httpx
import numpy as np
import onnxruntime as ort
import pytest

from tests.kafka_tools import committed_lag, read_topic
from tests.stack_fixtures import RunningStack

IRIS_ROWS = [[5.1, 3.5, 1.4, 0.2], [6.2, 2.9, 4.3, 1.3], [7.3, 2.9, 6.3, 1.8]]


def onnx_predict(stack: RunningStack, model: str, rows: list[list[float]]) -> tuple[list[int], np.ndarray]:
    """The reference: onnxruntime run directly on the registered model file."""
    metadata = stack.registry.metadata(model, stack.registry.latest(model))
    session = ort.InferenceSession(str(stack.registry.model_path(model, metadata.version)))
    labels, probabilities = session.run(
        [metadata.output_label, metadata.output_probabilities],
        {metadata.input_name: np.asarray(rows, np.float32)},
    )
    return labels.tolist(), probabilities


def predict(stack: RunningStack, body: dict[str, object]) -> httpx.Response:
    return httpx.post(f"{stack.base_url}/api/v1/predict", json=body, timeout=10)


def test_spec_iris_rows_give_classes_0_1_2(stack: RunningStack) -> None:
    answers = [
        predict(stack, {"model_name": "iris_classifier", "features": row, "use_cache": False}).json()
        for row in IRIS_ROWS
    ]
    assert [a["prediction"] for a in answers] == [0, 1, 2]
    for answer in answers:
        assert answer["model_name"] == "iris_classifier"
        assert answer["model_version"] == "2"  # latest
        assert answer["from_cache"] is False
        assert answer["probability"] == pytest.approx(max(answer["probabilities"]))
        assert sum(answer["probabilities"]) == pytest.approx(1.0, abs=1e-5)
        assert answer["latency_ms"] > 0 and answer["request_id"] and answer["timestamp"] > 0


@pytest.mark.parametrize("model", ["iris_classifier", "binary_classifier", "fraud_detector"])
def test_served_predictions_equal_onnxruntime(stack: RunningStack, model: str) -> None:
    n_features = stack.registry.metadata(model, "1").n_features
    rng = np.random.default_rng(7)
    rows = rng.normal(1.0, 2.0, size=(20, n_features)).round(4).tolist()
    labels, probabilities = onnx_predict(stack, model, rows)
    for row, label, expected in zip(rows, labels, probabilities, strict=True):
        answer = predict(stack, {"model_name": model, "features": row, "use_cache": False}).json()
        assert answer["prediction"] == label
        assert answer["probabilities"] == pytest.approx(expected.tolist(), abs=1e-6)


def test_repeated_request_is_cached_and_versions_never_share_keys(stack: RunningStack) -> None:
    row = [round(random.uniform(4, 8), 3), 3.0, 4.0, 1.0]
    first = predict(stack, {"model_name": "iris_classifier", "model_version": "1", "features": row}).json()
    second = predict(stack, {"model_name": "iris_classifier", "model_version": "1", "features": row}).json()
    other_version = predict(
        stack, {"model_name": "iris_classifier", "model_version": "2", "features": row}
    ).json()
    bypass = predict(
        stack, {"model_name": "iris_classifier", "model_version": "1", "features": row, "use_cache": False}
    ).json()
    assert (first["from_cache"], second["from_cache"]) == (False, True)
    assert second["prediction"] == first["prediction"]
    assert second["probabilities"] == pytest.approx(first["probabilities"])
    assert (other_version["from_cache"], other_version["model_version"]) == (False, "2")
    assert bypass["from_cache"] is False


def test_500_concurrent_distinct_requests_each_get_their_own_answer(stack: RunningStack) -> None:
    rng = np.random.default_rng(500)
    rows = (
        np.column_stack(
            [
                rng.uniform(4.3, 7.9, 500),
                rng.uniform(2, 4.4, 500),
                rng.uniform(1, 6.9, 500),
                rng.uniform(0.1, 2.5, 500),
            ]
        )
        .round(5)
        .tolist()
    )
    labels, probabilities = onnx_predict(stack, "iris_classifier", rows)
    tag = uuid.uuid4().hex[:8]

    async def run() -> list[dict[str, object]]:
        limits = httpx.Limits(max_connections=100)
        async with httpx.AsyncClient(base_url=stack.base_url, limits=limits, timeout=30) as client:
            responses = await asyncio.gather(
                *[
                    client.post(
                        "/api/v1/predict",
                        json={
                            "model_name": "iris_classifier",
                            "features": row,
                            "request_id": f"c500-{tag}-{i}",
                        },
                    )
                    for i, row in enumerate(rows)
                ]
            )
        return [r.json() for r in responses]

    answers = asyncio.run(run())
    for i, answer in enumerate(answers):
        assert answer["request_id"] == f"c500-{tag}-{i}"
        assert answer["prediction"] == labels[i]
        assert answer["probabilities"] == pytest.approx(probabilities[i].tolist(), abs=1e-6)


def test_batch_predict_travels_as_one_message_and_matches_onnxruntime(stack: RunningStack) -> None:
    rows = [*IRIS_ROWS, [5.9, 3.0, 5.1, 1.8]]
    labels, probabilities = onnx_predict(stack, "iris_classifier", rows)
    response = httpx.post(
        f"{stack.base_url}/api/v1/batch_predict",
        json={"model_name": "iris_classifier", "features_batch": rows},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["predictions"] == labels
    assert body["count"] == 4 and body["model_version"] == "2" and body["total_latency_ms"] > 0
    assert np.allclose(body["probabilities"], probabilities, atol=1e-6)


def test_two_workers_split_partitions_and_both_serve(stack: RunningStack) -> None:
    rows = np.random.default_rng(3).uniform(0, 5, size=(200, 4)).round(4).tolist()
    for row in rows:
        assert (
            predict(stack, {"model_name": "iris_classifier", "features": row, "use_cache": False}).status_code
            == 200
        )
    served = []
    for url in stack.worker_metrics_urls:
        text = httpx.get(url, timeout=5).text
        served.append(
            sum(
                float(line.rsplit(" ", 1)[1])
                for line in text.splitlines()
                if line.startswith('rtml_worker_rows_total{model="iris_classifier"')
            )
        )
    assert all(count > 0 for count in served), f"rows served per worker: {served}"


def test_prediction_log_has_one_record_per_answer_including_cache_hits(stack: RunningStack) -> None:
    tag = uuid.uuid4().hex[:8]
    ids = [f"log-{tag}-{i}" for i in range(5)]
    row = [6.1, 2.8, 4.7, 1.2 + random.random()]
    for request_id in ids[:4]:
        features = [5.0 + random.random(), 3.0, 1.5, 0.2]
        assert predict(
            stack, {"model_name": "iris_classifier", "features": features, "request_id": request_id}
        ).is_success
    predict(stack, {"model_name": "iris_classifier", "features": row})  # warm the cache
    hit = predict(stack, {"model_name": "iris_classifier", "features": row, "request_id": ids[4]}).json()
    assert hit["from_cache"] is True

    def ours(records: list[dict[str, object]]) -> list[dict[str, object]]:
        return [r for r in records if r["request_id"] in ids]

    records = ours(
        read_topic(stack.bootstrap, stack.namespace.predictions_topic, lambda rs: len(ours(rs)) >= 5)
    )
    assert sorted(r["request_id"] for r in records) == sorted(ids)  # exactly one each
    by_id = {r["request_id"]: r for r in records}
    assert by_id[ids[4]]["from_cache"] is True and by_id[ids[4]]["served_by"] == "gateway"
    assert all(by_id[i]["served_by"] == "worker" and by_id[i]["source"] == "http" for i in ids[:4])
    assert by_id[ids[0]]["model"] == "iris_classifier" and len(by_id[ids[0]]["features"]) == 4


def test_offsets_are_committed_after_serving(stack: RunningStack) -> None:
    for _ in range(20):
        predict(stack, {"model_name": "binary_classifier", "features": np.random.rand(8).tolist()})
    topic, group = stack.request_topic("binary_classifier"), stack.group("binary_classifier")
    lag = None
    for _ in range(50):  # auto-commit runs every second
        lag = committed_lag(stack.bootstrap, group, topic)
        if lag == 0:
            break
        asyncio.run(asyncio.sleep(0.2))
    assert lag == 0


def test_unserved_model_times_out_with_504_and_ready_stays_honest(stack: RunningStack) -> None:
    n_features = stack.registry.metadata("churn_classifier", "1").n_features
    response = predict(
        stack, {"model_name": "churn_classifier", "features": [0.5] * n_features, "timeout_ms": 400}
    )
    assert response.status_code == 504
    assert response.json()["error"]["code"] == "timeout"
    ready = httpx.get(f"{stack.base_url}/ready", timeout=5)
    assert ready.status_code == 200 and ready.json()["ready"] is True


def test_models_endpoints_health_and_metrics(stack: RunningStack) -> None:
    models = httpx.get(f"{stack.base_url}/api/v1/models", timeout=5).json()["models"]
    assert {m["name"] for m in models} >= {"iris_classifier", "fraud_detector"}
    info = httpx.get(f"{stack.base_url}/api/v1/models/iris_classifier", timeout=5).json()
    assert info["versions"] == ["1", "2"] and info["n_features"] == 4 and info["classes"] == [0, 1, 2]
    assert info["feature_names"] == ["sepal_length", "sepal_width", "petal_length", "petal_width"]
    assert "accuracy" in info["metrics"]
    health = httpx.get(f"{stack.base_url}/health", timeout=5).json()
    assert health["status"] == "ok" and health["uptime_s"] > 0
    metrics = httpx.get(f"{stack.base_url}/metrics", timeout=5).text
    for series in (
        "rtml_gateway_requests_total",
        "rtml_gateway_request_seconds_bucket",
        "rtml_gateway_cache_total",
        "rtml_gateway_in_flight_requests",
        "rtml_gateway_timeouts_total",
    ):
        assert series in metrics


def test_workers_answer_health_and_ready_beside_metrics(stack: RunningStack) -> None:
    """The probes Kubernetes and compose use (workers/probes.py): a serving worker is live and
    ready, names each model's state in JSON, and still serves /metrics on the same port."""
    predict(stack, {"model_name": "iris_classifier", "features": [5.0, 3.0, 1.5, 0.2], "use_cache": False})
    for url in stack.worker_metrics_urls:
        base = url.rsplit("/metrics", 1)[0]
        deadline = time.monotonic() + 15  # the first consumer statistics come within 5 s
        while True:
            ready = httpx.get(f"{base}/ready", timeout=5)
            if ready.status_code == 200 or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert ready.status_code == 200 and ready.json() == {"status": "ready", "reasons": []}, ready.text
        health = httpx.get(f"{base}/health", timeout=5)
        assert health.status_code == 200 and health.json() == {"status": "ok", "problems": {}}, health.text
        assert health.headers["content-type"] == "application/json"
        assert "rtml_worker_rows_total" in httpx.get(url, timeout=5).text
