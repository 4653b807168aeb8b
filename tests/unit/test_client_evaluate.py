"""ModelEvaluator on local model files: the original description's evaluation example as written,
metrics checked against scikit-learn, ONNX models, regressors, drift reports. No Kafka needed.
(The served-model mode runs against the real stack in tests/integration/test_client_stack.py.)"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import joblib
import numpy as np
import pytest
from sklearn import metrics as skm
from sklearn.datasets import load_iris
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.model_selection import train_test_split

from rtml_client import ModelEvaluator, stats
from rtml_client.drift import quantile_edges
from rtml_client.metrics import classification
from tests.model_fixtures import DemoModels


@pytest.fixture(scope="module")
def iris_split() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    X, y = load_iris(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.3, random_state=42, stratify=y)
    return X_train, X_test, y_train, y_test


def save_spec_style_model(root: Path, X_train: np.ndarray, y_train: np.ndarray) -> None:
    """A model and metadata saved as the original description's Example 1 saves them."""
    (root / "models").mkdir()
    model = RandomForestClassifier(n_estimators=20, max_depth=5, random_state=42).fit(X_train, y_train)
    joblib.dump(model, root / "models" / "iris_classifier.pkl")
    metadata = {
        "model_name": "iris_classifier",
        "version": "1.0.0",
        "features": ["sepal_length", "sepal_width", "petal_length", "petal_width"],
        "n_features": 4,
    }
    (root / "models" / "iris_classifier_metadata.json").write_text(json.dumps(metadata))


def test_portuguese_example_3_as_written(
    iris_split: tuple[np.ndarray, ...],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    X_train, X_test, y_train, y_test = iris_split
    save_spec_style_model(tmp_path, X_train, y_train)
    monkeypatch.chdir(tmp_path)
    X_baseline, X_current = X_train, X_test + np.array([0.0, 0.0, 1.5, 0.0])  # petal_length shifted

    evaluator = ModelEvaluator(
        model_path="models/iris_classifier.pkl", metadata_path="models/iris_classifier_metadata.json"
    )

    metrics = evaluator.evaluate(X_test, y_test)
    print(f"Acurácia: {metrics['accuracy']:.4f}")
    print(f"F1 Score: {metrics['f1_score']:.4f}")

    drift_report = evaluator.detect_drift(X_baseline, X_current)
    print(f"Drift detectado: {drift_report['overall_drift']}")

    out = capsys.readouterr().out
    assert "Acurácia: 0.9" in out and "Drift detectado: True" in out
    assert drift_report.drifted_features == ["petal_length"]
    assert (
        metrics["confusion_matrix"] == skm.confusion_matrix(y_test, evaluator.predict(X_test).labels).tolist()
    )


def test_classifier_metrics_equal_scikit_learn(iris_split: tuple[np.ndarray, ...]) -> None:
    X_train, X_test, y_train, y_test = iris_split
    model = LogisticRegression(max_iter=500).fit(X_train[:, :2], y_train)  # weak: errors to count
    predicted, probabilities = model.predict(X_test[:, :2]), model.predict_proba(X_test[:, :2])
    report = classification(y_test, predicted, probabilities, [0, 1, 2])
    assert report["accuracy"] == pytest.approx(skm.accuracy_score(y_test, predicted))
    assert report["precision"] == pytest.approx(skm.precision_score(y_test, predicted, average="macro"))
    assert report["recall"] == pytest.approx(skm.recall_score(y_test, predicted, average="macro"))
    assert report["f1_score"] == pytest.approx(skm.f1_score(y_test, predicted, average="macro"))
    assert report["roc_auc"] == pytest.approx(skm.roc_auc_score(y_test, probabilities, multi_class="ovr"))
    assert report["confusion_matrix"] == skm.confusion_matrix(y_test, predicted).tolist()


def test_binary_metrics_with_ties_equal_scikit_learn() -> None:
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 300)
    scores = np.round(np.clip(y * 0.3 + rng.normal(0.35, 0.25, 300), 0, 1), 1)  # many ties
    predicted = (scores >= 0.5).astype(int)
    report = classification(y, predicted, np.stack([1 - scores, scores], axis=1), [0, 1])
    assert report["precision"] == pytest.approx(skm.precision_score(y, predicted))
    assert report["recall"] == pytest.approx(skm.recall_score(y, predicted))
    assert report["f1_score"] == pytest.approx(skm.f1_score(y, predicted))
    assert report["roc_auc"] == pytest.approx(skm.roc_auc_score(y, scores))


def test_regressor_metrics_equal_scikit_learn(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    X = rng.normal(size=(200, 3))
    y = X @ np.array([1.0, -2.0, 0.5]) + rng.normal(0, 0.3, 200)
    joblib.dump(LinearRegression().fit(X[:150], y[:150]), tmp_path / "reg.joblib")
    report = ModelEvaluator(model_path=tmp_path / "reg.joblib").evaluate(X[150:], y[150:])
    predicted = LinearRegression().fit(X[:150], y[:150]).predict(X[150:])
    assert report.task == "regression" and "accuracy" not in report
    assert report["mae"] == pytest.approx(skm.mean_absolute_error(y[150:], predicted))
    assert report.rmse == pytest.approx(np.sqrt(skm.mean_squared_error(y[150:], predicted)))
    assert report["r2"] == pytest.approx(skm.r2_score(y[150:], predicted))


@pytest.fixture
def iris_v1(demo_models: DemoModels) -> Path:
    """The registered demo iris_classifier v1 directory (model.onnx, metadata.json)."""
    return demo_models.registry("iris_classifier").root / "iris_classifier" / "1"


def test_onnx_model_with_rtml_metadata(iris_v1: Path, iris_split: tuple[np.ndarray, ...]) -> None:
    _X_train, X_test, _y_train, y_test = iris_split
    version = iris_v1
    evaluator = ModelEvaluator(model_path=version / "model.onnx", metadata_path=version / "metadata.json")
    report = evaluator.evaluate(X_test, y_test)
    assert evaluator.feature_names == ["sepal_length", "sepal_width", "petal_length", "petal_width"]
    assert report.accuracy is not None and report.accuracy > 0.85
    assert report.roc_auc is not None and report.roc_auc > 0.9
    assert np.asarray(report.confusion_matrix).sum() == len(y_test)


def test_missing_extra_is_named_in_the_error(iris_v1: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(ImportError, match=r"rtml-client\[evaluate\]"):
        ModelEvaluator(model_path=iris_v1 / "model.onnx")


def test_bad_inputs_are_refused_with_a_reason(tmp_path: Path, iris_split: tuple[np.ndarray, ...]) -> None:
    X_train, X_test, y_train, y_test = iris_split
    save_spec_style_model(tmp_path, X_train, y_train)
    evaluator = ModelEvaluator(model_path=tmp_path / "models" / "iris_classifier.pkl")
    with pytest.raises(ValueError, match="expects 4 features"):
        evaluator.evaluate(X_test[:, :3], y_test)
    with pytest.raises(ValueError, match="y has 3 values"):
        evaluator.evaluate(X_test, y_test[:3])
    with pytest.raises(ValueError, match=r"\.onnx, \.pkl"):
        ModelEvaluator(model_path=tmp_path / "model.txt")
    with pytest.raises(ValueError, match="no model"):
        ModelEvaluator().evaluate(X_test, y_test)


def test_drift_report_uses_the_shared_statistics() -> None:
    rng = np.random.default_rng(11)
    baseline = rng.normal(0, 1, size=(2000, 3))
    current = rng.normal(0, 1, size=(1500, 3))
    current[:, 2] += 0.8
    report = ModelEvaluator().detect_drift(baseline, current)
    assert report["overall_drift"] is True and report.drifted_features == ["feature_2"]
    shifted = report.features["feature_2"]
    edges = quantile_edges(baseline[:, 2])
    expected = stats.psi(stats.histogram(baseline[:, 2], edges), stats.histogram(current[:, 2], edges))
    assert shifted["psi"] == pytest.approx(expected) and shifted["psi"] > 0.2
    assert shifted["ks_statistic"] == pytest.approx(stats.ks_2samp(baseline[:, 2], current[:, 2]).statistic)
    assert shifted["mean_shift"] == pytest.approx(0.8, abs=0.15)
    for name in ("feature_0", "feature_1"):
        assert report.features[name]["drifted"] is False
        assert report.features[name]["ks_pvalue_adjusted"] >= report.features[name]["ks_pvalue"]


def test_no_drift_between_samples_of_one_distribution() -> None:
    rng = np.random.default_rng(12)
    report = ModelEvaluator().detect_drift(rng.normal(size=(5000, 4)), rng.normal(size=(5000, 4)))
    assert report.overall_drift is False and report["n_drifted"] == 0
    assert all(feature["psi"] < 0.1 for feature in report.features.values())


def test_drift_uses_dataframe_columns_when_present() -> None:
    pandas = pytest.importorskip("pandas")
    rng = np.random.default_rng(13)
    baseline = pandas.DataFrame(rng.normal(size=(500, 2)), columns=["age", "income"])
    current = pandas.DataFrame(rng.normal(loc=[0, 3], size=(500, 2)), columns=["age", "income"])
    report = ModelEvaluator().detect_drift(baseline, current)
    assert report.drifted_features == ["income"]
