"""Every scikit-learn family of the spec: import -> ONNX -> parity with the original (no Kafka)."""

from __future__ import annotations

import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import onnxruntime as ort
import pytest
from sklearn.calibration import CalibratedClassifierCV
from sklearn.cluster import DBSCAN, KMeans
from sklearn.compose import ColumnTransformer
from sklearn.datasets import make_blobs, make_classification, make_regression
from sklearn.ensemble import (
    GradientBoostingClassifier,
    GradientBoostingRegressor,
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.impute import SimpleImputer
from sklearn.linear_model import Lasso, LinearRegression, LogisticRegression, Ridge
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from sklearn.svm import SVC

from importers import ImportOptions, import_model
from importers.dbscan import nearest_core_rule
from runtime.registry import ModelRegistry

Data = tuple[np.ndarray, np.ndarray]


def classification_data() -> Data:
    X, y = make_classification(600, 6, n_informative=4, n_classes=3, random_state=1)
    return (X * 3 + 10).astype(np.float32), y


def regression_data() -> Data:
    X, y = make_regression(600, 5, noise=3.0, random_state=2)
    return X.astype(np.float32), y / 40  # values of a few units: float32 ONNX stays within 1e-4


def blob_data() -> Data:
    X, y = make_blobs(400, 4, centers=3, cluster_std=0.8, random_state=3)
    return X.astype(np.float32), y


def mixed_data() -> Data:
    """Three numeric columns with 10% missing, two integer-coded categorical columns."""
    rng = np.random.default_rng(4)
    num = rng.normal(size=(600, 3))
    num[rng.random(num.shape) < 0.1] = np.nan
    cat = rng.integers(0, 4, size=(600, 2)).astype(float)
    y = (np.nan_to_num(num[:, 0]) + cat[:, 0] - np.nan_to_num(num[:, 2]) > 1.4).astype(int)
    return np.column_stack([num, cat]).astype(np.float32), y


def preprocessing_pipeline() -> Pipeline:
    numeric = make_pipeline(SimpleImputer(strategy="median"), StandardScaler())
    columns = ColumnTransformer(
        [("num", numeric, [0, 1, 2]), ("cat", OneHotEncoder(handle_unknown="ignore"), [3, 4])]
    )
    return Pipeline([("pre", columns), ("clf", LogisticRegression(max_iter=500))])


def svc_with_probabilities() -> Any:
    return CalibratedClassifierCV(SVC(), ensemble=False)


def legacy_svc() -> Any:
    return SVC(probability=True, random_state=0)


Family = tuple[str, Callable[[], Any], Callable[[], Data], str]
FAMILIES: list[Family] = [
    (
        "random_forest",
        lambda: RandomForestClassifier(40, max_depth=8, random_state=0),
        classification_data,
        "classification",
    ),
    ("svc", svc_with_probabilities, classification_data, "classification"),
    ("svc_legacy", legacy_svc, classification_data, "classification"),
    ("logistic_regression", lambda: LogisticRegression(max_iter=1000), classification_data, "classification"),
    (
        "gradient_boosting",
        lambda: GradientBoostingClassifier(n_estimators=30, random_state=0),
        classification_data,
        "classification",
    ),
    (
        "hist_gradient_boosting",
        lambda: HistGradientBoostingClassifier(max_iter=40, random_state=0),
        mixed_data,
        "classification",
    ),
    ("pipeline", preprocessing_pipeline, mixed_data, "classification"),
    ("linear_regression", LinearRegression, regression_data, "regression"),
    ("ridge", Ridge, regression_data, "regression"),
    ("lasso", lambda: Lasso(alpha=0.01), regression_data, "regression"),
    (
        "gradient_boosting_regressor",
        lambda: GradientBoostingRegressor(n_estimators=30, random_state=0),
        regression_data,
        "regression",
    ),
    (
        "random_forest_regressor",
        lambda: RandomForestRegressor(30, max_depth=8, random_state=0),
        regression_data,
        "regression",
    ),
    (
        "hist_gradient_boosting_regressor",
        lambda: HistGradientBoostingRegressor(max_iter=40),
        regression_data,
        "regression",
    ),
    ("kmeans", lambda: KMeans(3, n_init=3, random_state=0), blob_data, "clustering"),
    ("dbscan", lambda: DBSCAN(eps=0.9, min_samples=5), blob_data, "clustering"),
]


def fit(family: Family) -> tuple[Any, np.ndarray]:
    _, make, data, _ = family
    X, y = data()
    with pytest.warns(FutureWarning) if make is legacy_svc else _no_warning():
        model = make().fit(X, y)
    return model, X


class _no_warning:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def original_predictions(model: Any, X: np.ndarray) -> dict[str, np.ndarray]:
    """What the original model says, in the served outputs' terms."""
    if isinstance(model, DBSCAN):
        cores = model.components_.astype(np.float64)
        return {"label": nearest_core_rule(X, cores, model.labels_[model.core_sample_indices_], model.eps)}
    if isinstance(model, KMeans):
        return {"label": model.predict(X), "distances": model.transform(X)}
    if hasattr(model, "predict_proba"):
        return {"label": model.predict(X), "probabilities": model.predict_proba(X)}
    return {"variable": model.predict(X).reshape(-1, 1)}


@pytest.fixture
def registry(tmp_path: Path) -> ModelRegistry:
    return ModelRegistry(tmp_path / "registry")


@pytest.mark.parametrize("family", FAMILIES, ids=[f[0] for f in FAMILIES])
def test_family_round_trips_through_import(family: Family, registry: ModelRegistry, tmp_path: Path) -> None:
    name, _, _, task = family
    model, X = fit(family)
    path = tmp_path / f"{name}.pkl"
    path.write_bytes(pickle.dumps(model))
    result = import_model(path, name.replace("_", "-"), registry)
    meta = registry.verify(result.metadata.name, "1")
    assert meta.task == task and meta.source_format == "sklearn-pickle" and meta.parity == result.report
    assert result.report.passed and result.report.rows == 256 and meta.source is not None
    session = ort.InferenceSession(
        str(registry.model_path(meta.name, "1")), providers=["CPUExecutionProvider"]
    )
    rows = X[:50]
    served = dict(
        zip(meta.output_names, session.run(meta.output_names, {meta.input_name: rows}), strict=True)
    )
    for output, expected in original_predictions(model, rows).items():
        if output == "label":
            assert served[output].tolist() == expected.tolist()
        else:
            np.testing.assert_allclose(served[output], expected, atol=1e-4)


def test_clustering_convention(registry: ModelRegistry) -> None:
    kmeans, _ = fit(FAMILIES[-2])
    meta = import_model(kmeans, "kmeans", registry).metadata
    assert (meta.output_label, meta.output_distances, meta.output_probabilities) == (
        "label",
        "distances",
        None,
    )
    assert meta.classes == [0, 1, 2]
    dbscan, _ = fit(FAMILIES[-1])
    meta = import_model(dbscan, "dbscan", registry).metadata
    assert meta.output_names == ["label"] and meta.classes is not None and meta.classes[0] == -1


def test_joblib_and_user_sample_give_a_baseline(registry: ModelRegistry, tmp_path: Path) -> None:
    model, X = fit(FAMILIES[6])  # the preprocessing pipeline, with NaNs
    path = tmp_path / "churn.joblib"
    joblib.dump(model, path)
    sample = tmp_path / "sample.csv"
    header = "age,income,score,plan,region,target"
    lines = [",".join("" if np.isnan(v) else repr(float(v)) for v in row) + ",0" for row in X[:120]]
    sample.write_text("\n".join([header, *lines]) + "\n")
    options = ImportOptions(sample=sample, feature_names=["age", "income", "score", "plan", "region"])
    result = import_model(path, "churn", registry, options)
    meta = result.metadata
    assert (
        meta.source_format == "sklearn-joblib"
        and result.report.sample == "user"
        and result.report.rows == 120
    )
    assert meta.feature_names == ["age", "income", "score", "plan", "region"]
    assert meta.baseline is not None and meta.baseline.output is not None
    assert meta.baseline.output.source == "sample" and meta.baseline.output.confidence is not None
    assert 0.05 < meta.baseline.features["age"].missing_rate < 0.2
    assert (
        meta.source is not None
        and meta.source.sha256 == meta.source_sha256
        and len(meta.source_sha256 or "") == 64
    )


def test_regression_baseline_holds_the_value_distribution(registry: ModelRegistry) -> None:
    model, X = fit(FAMILIES[7])
    meta = import_model(model, "linreg", registry, ImportOptions(sample=X[:200])).metadata
    assert meta.baseline is not None and meta.baseline.output is not None
    value = meta.baseline.output.value
    assert value is not None and value.count == 200
    assert value.mean == pytest.approx(float(model.predict(X[:200]).mean()), abs=1e-4)


def test_explicit_version_and_metrics(registry: ModelRegistry) -> None:
    model, _ = fit(FAMILIES[3])
    options = ImportOptions(version="7", metrics={"accuracy": 0.9}, description="imported")
    meta = import_model(model, "lr", registry, options).metadata
    assert registry.versions("lr") == ["7"] and meta.metrics == {"accuracy": 0.9}
    assert meta.framework == "scikit-learn" and {"scikit-learn", "skl2onnx", "onnx"} <= set(
        meta.framework_versions
    )


SAMPLES = {"drawn": False, "user sample": True}


@pytest.mark.parametrize("sample", list(SAMPLES), ids=list(SAMPLES))
@pytest.mark.parametrize("family", FAMILIES, ids=[f[0] for f in FAMILIES])
def test_family_fitted_on_float64_imports(
    family: Family, sample: str, registry: ModelRegistry, tmp_path: Path
) -> None:
    """Training data is float64 more often than not (numpy's default); k-means used to fail."""
    name, make, data, _task = family
    X32, y = data()
    X = X32.astype(np.float64)
    with pytest.warns(FutureWarning) if make is legacy_svc else _no_warning():
        model = make().fit(X, y)
    path = tmp_path / f"{name}.pkl"
    path.write_bytes(pickle.dumps(model))
    options = ImportOptions(sample=X[:200] if SAMPLES[sample] else None)
    result = import_model(path, name.replace("_", "-"), registry, options)
    assert result.report.passed
    meta = registry.verify(result.metadata.name, "1")
    session = ort.InferenceSession(
        str(registry.model_path(meta.name, "1")), providers=["CPUExecutionProvider"]
    )
    rows = X32[:50]  # served rows arrive as float32
    served = dict(
        zip(meta.output_names, session.run(meta.output_names, {meta.input_name: rows}), strict=True)
    )
    for output, expected in original_predictions(model, rows.astype(np.float64)).items():
        if output == "label":
            assert served[output].tolist() == expected.tolist()
        else:
            np.testing.assert_allclose(served[output], expected, atol=1e-4)


def test_scaled_kmeans_pipeline_fitted_on_float64_imports(registry: ModelRegistry) -> None:
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X, _ = blob_data()
    model = make_pipeline(StandardScaler(), KMeans(3, n_init=3, random_state=0)).fit(X.astype(np.float64))
    result = import_model(model, "scaled-kmeans", registry)
    assert result.report.passed and result.metadata.task == "clustering"
