"""Demo models: trained reproducibly, served through onnxruntime (no Kafka, no Redis)."""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from importers import demo_models
from importers.demo_models import build_demo_model, feature_baseline, train_demo_models
from runtime.registry import ModelRegistry
from schemas.model_metadata import ModelMetadata
from tests.model_fixtures import DemoModels

IRIS_ROWS = [[5.1, 3.5, 1.4, 0.2], [6.2, 2.9, 4.3, 1.3], [7.3, 2.9, 6.3, 1.8]]


@pytest.fixture(scope="module")
def trained(
    demo_models: DemoModels, tmp_path_factory: pytest.TempPathFactory
) -> tuple[ModelRegistry, dict[str, ModelMetadata]]:
    """iris_classifier and binary_classifier, the two cheap demo models, trained once per session
    (``demo_models``) and copied into a registry these tests may change."""
    cheap = ["iris_classifier", "binary_classifier"]
    registry = demo_models.copy(tmp_path_factory.mktemp("registry"), *cheap)
    return registry, {name: registry.metadata(name, "1") for name in cheap}


def test_iris_predicts_the_three_species(trained: tuple[ModelRegistry, dict[str, ModelMetadata]]) -> None:
    registry, _ = trained
    meta = registry.verify("iris_classifier", "1")
    session = ort.InferenceSession(
        str(registry.model_path("iris_classifier", "1")), providers=["CPUExecutionProvider"]
    )
    rows = np.array(IRIS_ROWS, dtype=np.float32)
    labels, proba = session.run([meta.output_label, meta.output_probabilities], {meta.input_name: rows})
    assert labels.tolist() == [0, 1, 2]
    assert labels.dtype == np.int64 and proba.dtype == np.float32 and proba.shape == (3, 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-5)


def test_iris_metadata(trained: tuple[ModelRegistry, dict[str, ModelMetadata]]) -> None:
    meta = trained[1]["iris_classifier"]
    assert meta.version == "1" and meta.task == "classification" and meta.classes == [0, 1, 2]
    assert meta.feature_names == ["sepal_length", "sepal_width", "petal_length", "petal_width"]
    assert (meta.input_name, meta.output_label, meta.output_probabilities) == (
        "float_input",
        "label",
        "probabilities",
    )
    assert set(meta.metrics) == {"accuracy", "f1", "roc_auc", "cv_mean", "cv_std"}
    assert meta.metrics["accuracy"] > 0.9 and meta.metrics["cv_mean"] > 0.9
    assert (meta.n_samples_train, meta.n_samples_test) == (120, 30)
    assert meta.params["n_estimators"] == 100 and meta.params["random_state"] == 42
    assert set(meta.framework_versions) == {"sklearn", "skl2onnx", "onnx", "onnxruntime", "numpy"}


def test_baseline_describes_training_data_and_outputs(
    trained: tuple[ModelRegistry, dict[str, ModelMetadata]],
) -> None:
    meta = trained[1]["binary_classifier"]
    assert meta.baseline is not None and meta.baseline.output is not None
    assert list(meta.baseline.features) == meta.feature_names
    for column in meta.baseline.features.values():
        assert column.count == meta.n_samples_train and column.missing_rate == 0
        assert len(column.bin_proportions) == 10
        assert math.isclose(sum(column.bin_proportions), 1.0)
    output = meta.baseline.output
    assert output.source == "test" and output.count == meta.n_samples_test
    assert output.class_proportions is not None and len(output.class_proportions) == 2
    assert output.confidence is not None and output.confidence.min >= 0.5


def test_metadata_round_trips_through_json(trained: tuple[ModelRegistry, dict[str, ModelMetadata]]) -> None:
    registry, metas = trained
    for name, meta in metas.items():
        assert ModelMetadata.from_json(meta.to_json()) == meta
        assert registry.metadata(name, "1") == meta


def test_retraining_is_byte_identical(trained: tuple[ModelRegistry, dict[str, ModelMetadata]]) -> None:
    # skl2onnx puts a random UUID in the graph name unless given one; build_demo_model names it.
    for name, meta in trained[1].items():
        onnx_bytes, fresh = build_demo_model(name)
        assert hashlib.sha256(onnx_bytes).hexdigest() == meta.onnx_sha256
        assert fresh.metrics == meta.metrics and fresh.baseline == meta.baseline


def test_registered_models_are_kept_unless_forced(
    trained: tuple[ModelRegistry, dict[str, ModelMetadata]], monkeypatch: pytest.MonkeyPatch
) -> None:
    registry, metas = trained

    def refuse(name: str) -> None:
        raise AssertionError(f"{name} retrained although registered")

    monkeypatch.setattr(demo_models, "build_demo_model", refuse)
    assert train_demo_models(registry, only=["iris_classifier"]) == [metas["iris_classifier"]]


def test_concurrent_registration_is_not_an_error(
    trained: tuple[ModelRegistry, dict[str, ModelMetadata]], monkeypatch: pytest.MonkeyPatch
) -> None:
    registry, metas = trained
    monkeypatch.setattr(demo_models, "_versions", lambda registry, name: [])  # checked before the other won
    assert train_demo_models(registry, only=["binary_classifier"]) == [metas["binary_classifier"]]


def test_force_replaces_version_one(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path)
    (first,) = train_demo_models(registry, only=["binary_classifier"])
    (second,) = train_demo_models(registry, only=["binary_classifier"], force=True)
    assert registry.versions("binary_classifier") == ["1"]
    assert second.onnx_sha256 == first.onnx_sha256 and second.created_at > first.created_at


def test_unknown_demo_model_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown demo models \\['nope'\\]; available: iris_classifier"):
        train_demo_models(ModelRegistry(tmp_path), only=["nope"])


def test_synthetic_datasets_are_plausible() -> None:
    fraud, churn = demo_models.fraud_data(), demo_models.churn_data()
    assert fraud.X.shape == (5000, 30) and fraud.X.dtype == np.float32
    assert fraud.feature_names[:3] == ["amount", "hour", "merchant_risk"]
    assert math.isclose(fraud.y.mean(), 0.03, abs_tol=0.002)
    assert churn.feature_names[:2] == ["tenure_months", "monthly_charges"]
    assert 0.15 < churn.y.mean() < 0.35
    assert np.array_equal(demo_models.fraud_data().X, fraud.X)


def test_feature_baseline_bins() -> None:
    binary = feature_baseline(np.array([0, 0, 0, 1, np.nan]))
    assert binary.bin_edges == [0.0, 0.5, 1.0] and binary.bin_proportions == [0.75, 0.25]
    assert binary.missing_rate == pytest.approx(0.2) and binary.count == 4
    constant = feature_baseline(np.full(5, 3.0))
    assert constant.bin_edges == [2.5, 3.5] and constant.std == 0
    values = np.random.default_rng(0).normal(size=1000)
    spread = feature_baseline(values)
    assert len(spread.bin_edges) == 11 and spread.bin_edges[0] == values.min()
    counts = np.bincount([spread.bin_index(v) for v in values], minlength=10)
    np.testing.assert_allclose(counts / 1000, spread.bin_proportions)
