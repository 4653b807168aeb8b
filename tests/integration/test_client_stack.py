"""rtml_client against the real stack (gateway + 2 workers on real Kafka and Redis).

The original product description's Python examples run here as written there, apart from the
import paths and the gateway address: its English "Example 2" usage block and its Portuguese
client, batch-prediction and evaluation examples (the local-model evaluation example, which needs
no gateway, is in tests/unit/test_client_evaluate.py).
"""

from __future__ import annotations

import asyncio
import csv
import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_iris

from rtml_client import (
    AsyncMLClient,
    BatchPredictor,
    InvalidInput,
    MLClient,
    ModelEvaluator,
    ModelNotFound,
    Timeout,
)
from tests.stack_fixtures import UNSERVED_MODEL, RunningStack

IRIS_FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


def test_example_2_usage_block_as_written(stack: RunningStack, capsys: pytest.CaptureFixture[str]) -> None:
    """Example 2's ``if __name__ == "__main__":`` block, verbatim but for the base_url."""
    client = MLClient(base_url=stack.base_url)

    # 1. Health check
    print("=== Health Check ===")
    health = client.health_check()
    print(json.dumps(health, indent=2))

    # 2. Single prediction
    print("\n=== Single Prediction ===")
    result = client.predict(model_name="iris_classifier", features=[5.1, 3.5, 1.4, 0.2])
    print(f"Prediction: {result['prediction']}")
    print(f"Probability: {result['probability']}")
    print(f"Latency: {result['latency_ms']:.2f}ms")
    print(f"Cached: {result.get('from_cache', False)}")

    # 3. Batch prediction
    print("\n=== Batch Prediction ===")
    features_batch = [[5.1, 3.5, 1.4, 0.2], [6.2, 2.9, 4.3, 1.3], [7.3, 2.9, 6.3, 1.8]]
    batch_results = client.batch_predict("iris_classifier", features_batch)
    print(f"Predictions: {batch_results['predictions']}")
    print(f"Total latency: {batch_results['total_latency_ms']:.2f}ms")

    # 4. Model info
    print("\n=== Model Information ===")
    model_info = client.get_model_info("iris_classifier")
    print(json.dumps(model_info, indent=2))

    # 5. Performance test
    print("\n=== Performance Test (1000 requests) ===")
    latencies = []
    for _ in range(1000):
        result = client.predict("iris_classifier", [5.1, 3.5, 1.4, 0.2])
        latencies.append(result["latency_ms"])

    print(f"Mean latency: {np.mean(latencies):.2f}ms")
    print(f"P50 latency: {np.percentile(latencies, 50):.2f}ms")
    print(f"P95 latency: {np.percentile(latencies, 95):.2f}ms")
    print(f"P99 latency: {np.percentile(latencies, 99):.2f}ms")
    print(f"Max latency: {np.max(latencies):.2f}ms")

    out = capsys.readouterr().out
    assert '"status": "ok"' in out and "Prediction: 0" in out
    assert "Predictions: [0, 1, 2]" in out and '"feature_names": [' in out
    assert result["from_cache"] is True  # the same row 1000 times: served from the cache
    client.close()


def test_portuguese_example_1_client_and_benchmark(
    stack: RunningStack, capsys: pytest.CaptureFixture[str]
) -> None:
    client = MLClient(base_url=stack.base_url)

    if client.health_check():
        print("✓ API está saudável")

    result = client.predict(model_name="iris_classifier", features=[5.1, 3.5, 1.4, 0.2])
    print(f"Predição: {result['prediction']}")
    print(f"Latência: {result['latency_ms']}ms")
    print(f"Cache hit: {result['cache_hit']}")

    stats = client.benchmark(model_name="iris_classifier", features=[5.1, 3.5, 1.4, 0.2], n_requests=1000)
    print(f"Latência média: {stats['mean_latency_ms']:.2f}ms")
    print(f"P99: {stats['p99_latency_ms']:.2f}ms")

    out = capsys.readouterr().out
    assert "API está saudável" in out and "Predição: 0" in out
    assert stats.n_requests == 1000 and stats.n_errors == 0
    assert stats.p50_latency_ms <= stats.p95_latency_ms <= stats.p99_latency_ms <= stats.max_latency_ms
    client.close()


def write_iris_csv(path: Path, n_rows: int) -> list[list[float]]:
    """``n_rows`` rows cycling through the three spec rows with small offsets, plus an id column."""
    base = [[5.1, 3.5, 1.4, 0.2], [6.2, 2.9, 4.3, 1.3], [7.3, 2.9, 6.3, 1.8]]
    rows = [[round(v + (i % 7) * 0.01, 2) for v in base[i % 3]] for i in range(n_rows)]
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["row_id", *IRIS_FEATURES])
        writer.writerows([i, *row] for i, row in enumerate(rows))
    return rows


def test_portuguese_example_2_batch_predictor(
    stack: RunningStack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    rows = write_iris_csv(tmp_path / "data.csv", 2000)

    predictor = BatchPredictor(base_url=stack.base_url)

    features_list = [[5.1, 3.5, 1.4, 0.2], [6.2, 2.9, 4.3, 1.3], [7.3, 2.9, 6.3, 1.8]]

    results = predictor.predict_batch(
        model_name="iris_classifier", features_list=features_list, parallel=True
    )

    df_results = predictor.predict_from_csv(
        model_name="iris_classifier", csv_path="data.csv", output_path="predictions.csv"
    )

    assert results["predictions"] == [0, 1, 2]
    assert df_results["rows"] == 2000 and df_results["failed"] == 0
    with (tmp_path / "predictions.csv").open(newline="") as handle:
        out = list(csv.DictReader(handle))
    assert [int(row["row_id"]) for row in out] == list(range(2000))
    assert [int(row["prediction"]) for row in out] == [i % 3 for i in range(2000)]
    assert all(
        float(row["probability"]) == max(float(row[f"probability_{c}"]) for c in range(3)) for row in out
    )
    assert [float(out[5][name]) for name in IRIS_FEATURES] == rows[5]
    predictor.close()


def test_csv_on_the_real_gateway_reports_bad_rows_and_keeps_the_rest(
    stack: RunningStack, tmp_path: Path
) -> None:
    write_iris_csv(tmp_path / "in.csv", 40)
    lines = (tmp_path / "in.csv").read_text().splitlines()
    lines[3] = "2,5.1,abc,1.4,0.2"
    lines[10] = "9,5.1,3.5,inf,0.2"
    (tmp_path / "in.csv").write_text("\n".join(lines) + "\n")
    with BatchPredictor(stack.base_url, chunk_size=8) as predictor:
        report = predictor.predict_from_csv("iris_classifier", tmp_path / "in.csv", tmp_path / "out.csv")
    assert (report.rows, report.failed) == (40, 2)
    assert [failure["line"] for failure in report.failures] == [4, 11]


def test_server_errors_arrive_typed_with_the_server_message(stack: RunningStack) -> None:
    with MLClient(stack.base_url, retries=0) as client:
        with pytest.raises(ModelNotFound, match="iris_classifier") as missing:
            client.predict("nope", [1.0, 2.0, 3.0, 4.0])
        assert missing.value.status == 404 and missing.value.code == "model_not_found"
        with pytest.raises(InvalidInput, match="4") as invalid:
            client.predict("iris_classifier", [1.0, 2.0])
        assert invalid.value.status == 422
        with pytest.raises(Timeout) as timeout:
            width = stack.registry.metadata(UNSERVED_MODEL, "1").n_features
            client.predict(UNSERVED_MODEL, [0.0] * width, use_cache=False, timeout_ms=300)
        assert timeout.value.status == 504


def test_versions_cache_flag_models_ready_and_metrics(stack: RunningStack) -> None:
    with MLClient(stack.base_url) as client:
        first = client.predict("iris_classifier", [6.0, 3.0, 4.8, 1.8], use_cache=False, model_version="1")
        assert first.model_version == "1" and first.from_cache is False
        names = {model.name for model in client.list_models()}
        assert {"iris_classifier", "binary_classifier", "fraud_detector", UNSERVED_MODEL} <= names
        assert client.get_model_info("fraud_detector").n_features == 30
        assert client.ready() and client.ready().cache in {"up", "degraded", "disabled"}
        assert "rtml_gateway_requests_total" in client.get_metrics()


def test_async_client_on_the_real_gateway(stack: RunningStack) -> None:
    async def scenario() -> None:
        async with AsyncMLClient(stack.base_url) as client:
            answers = await asyncio.gather(
                *(client.predict("binary_classifier", [float(i)] * 8, use_cache=False) for i in range(10))
            )
            assert all(answer.model_name == "binary_classifier" for answer in answers)
            batch = await client.batch_predict("iris_classifier", [[5.1, 3.5, 1.4, 0.2]] * 3)
            assert batch.predictions == [0, 0, 0]
            stats = await client.benchmark(
                "iris_classifier", [5.1, 3.5, 1.4, 0.2], n_requests=100, concurrency=4
            )
            assert stats.n_requests == 100 and stats.n_errors == 0

    asyncio.run(scenario())


def test_model_evaluator_on_a_served_model_agrees_with_the_local_file(stack: RunningStack) -> None:
    X, y = load_iris(return_X_y=True)
    with ModelEvaluator(base_url=stack.base_url, model_name="iris_classifier") as evaluator:
        served = evaluator.evaluate(X, y)
        drift = evaluator.detect_drift(X[:75], X[75:])  # iris is sorted by species: the halves differ
    model_file = stack.registry.model_path("iris_classifier", "2")
    local = ModelEvaluator(model_path=model_file, metadata_path=model_file.parent / "metadata.json").evaluate(
        X, y
    )
    assert served.confusion_matrix == local.confusion_matrix and served.accuracy == local.accuracy
    assert served.roc_auc == pytest.approx(local.roc_auc, abs=1e-6)
    assert served.accuracy is not None and served.accuracy > 0.9
    assert drift.overall_drift and "petal_length" in drift.drifted_features
