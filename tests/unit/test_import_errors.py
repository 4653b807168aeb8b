"""Failed imports say what is wrong and leave the registry exactly as it was."""

from __future__ import annotations

import pickle
import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import make_classification
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from importers import ImportOptions, import_model
from importers.dbscan import check as check_dbscan
from runtime.errors import (
    BadSample,
    MissingExtra,
    ModelImportError,
    NotAModel,
    ParityFailed,
    SourceNotFound,
    UnreadableModel,
    UnsupportedModel,
    VersionExists,
)
from runtime.registry import ModelRegistry


@pytest.fixture
def registry(tmp_path: Path) -> ModelRegistry:
    """A registry that already holds one model, so 'unchanged' means something."""
    registry = ModelRegistry(tmp_path / "registry")
    X, y = make_classification(200, 4, random_state=0)
    import_model(LogisticRegression().fit(X, y), "existing", registry)
    return registry


def tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def assert_refused(
    registry: ModelRegistry, error: type[ModelImportError], match: str, source: object, **opts: object
) -> ModelImportError:
    before = tree(registry.root)
    with pytest.raises(error, match=match) as caught:
        import_model(source, "newmodel", registry, ImportOptions(**opts))  # type: ignore[arg-type]
    assert tree(registry.root) == before  # no version directory, no leftover temporary directory
    assert caught.value.status in (404, 422)
    return caught.value


def test_missing_file(registry: ModelRegistry, tmp_path: Path) -> None:
    assert_refused(registry, SourceNotFound, "does not exist", tmp_path / "nope.pkl")


def test_corrupt_pickle(registry: ModelRegistry, tmp_path: Path) -> None:
    path = tmp_path / "model.pkl"
    path.write_bytes(pickle.dumps(LogisticRegression())[:20])
    assert_refused(registry, UnreadableModel, "cannot be loaded as a pickle", path)


def test_corrupt_joblib(registry: ModelRegistry, tmp_path: Path) -> None:
    path = tmp_path / "model.joblib"
    path.write_bytes(b"\x00not joblib at all")
    assert_refused(registry, UnreadableModel, "model.joblib", path)


def test_corrupt_onnx(registry: ModelRegistry, tmp_path: Path) -> None:
    path = tmp_path / "model.onnx"
    path.write_bytes(b"\x08\x07garbage")
    assert_refused(registry, UnreadableModel, "not a valid ONNX model", path)


def test_pickle_that_is_not_a_model(registry: ModelRegistry, tmp_path: Path) -> None:
    path = tmp_path / "data.pkl"
    path.write_bytes(pickle.dumps({"weights": [1, 2, 3]}))
    assert_refused(registry, NotAModel, "builtins.dict, not a scikit-learn model", path)


def test_unfitted_model(registry: ModelRegistry) -> None:
    assert_refused(registry, NotAModel, "LogisticRegression is not fitted", LogisticRegression())


def test_unknown_file_type(registry: ModelRegistry, tmp_path: Path) -> None:
    path = tmp_path / "model.bin"
    path.write_bytes(b"")
    assert_refused(registry, UnsupportedModel, "unknown model file type '.bin'", path)


def test_unsupported_conversion(registry: ModelRegistry, tmp_path: Path) -> None:
    X, y = make_classification(100, 4, random_state=0)
    path = tmp_path / "knn.pkl"
    model = KNeighborsRegressor(metric="haversine", algorithm="ball_tree").fit(X[:, :2], y)
    path.write_bytes(pickle.dumps(model))
    assert_refused(registry, UnsupportedModel, "skl2onnx cannot convert KNeighborsRegressor", path)


def test_dbscan_with_another_metric_is_unsupported() -> None:
    from sklearn.cluster import DBSCAN

    model = DBSCAN(metric="manhattan").fit(np.random.default_rng(0).normal(size=(50, 2)))
    with pytest.raises(UnsupportedModel, match="metric='manhattan'"):
        check_dbscan(model)


def test_labels_that_disagree_fail_parity(registry: ModelRegistry) -> None:
    X, y = make_classification(300, 4, random_state=0)
    model = LogisticRegression().fit(X, y)
    honest = model.predict
    model.predict = lambda rows: 1 - honest(rows)  # type: ignore[method-assign]  # the original says otherwise
    error = assert_refused(registry, ParityFailed, "labels differ on 256 of 256 rows", model)
    assert isinstance(error, ParityFailed) and error.report.label_agreement == 0 and not error.report.passed


def test_probabilities_beyond_tolerance_fail_parity(registry: ModelRegistry) -> None:
    X, y = make_classification(300, 4, random_state=0)
    model = make_pipeline(StandardScaler(), HistGradientBoostingClassifier(max_iter=5)).fit(X * 1000, y)
    error = assert_refused(
        registry, ParityFailed, r"outputs differ by up to .* \(> tolerance 1e-12", model, tolerance=1e-12
    )
    assert isinstance(error, ParityFailed) and error.report.tolerance == 1e-12


def test_bad_sample(registry: ModelRegistry, tmp_path: Path) -> None:
    X, y = make_classification(200, 4, random_state=0)
    model = LogisticRegression().fit(X, y)
    sample = tmp_path / "rows.csv"
    sample.write_text("1,2,3\n4,5,6\n")
    assert_refused(registry, BadSample, "has 3 columns; the model takes 4 features", model, sample=sample)
    sample.write_text("a,b,c,d\n1,2,x,4\n")
    assert_refused(registry, BadSample, "numeric", model, sample=sample)


def test_missing_framework_names_the_extra(
    registry: ModelRegistry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)  # as if torch were not installed
    path = tmp_path / "model.pt"
    path.write_bytes(b"PK")
    error = assert_refused(registry, MissingExtra, r"pip install 'rtml\[torch\]'", path)
    assert isinstance(error, MissingExtra) and error.extra == "torch"
    monkeypatch.setitem(sys.modules, "mlflow", None)
    assert_refused(registry, MissingExtra, r"rtml\[mlflow\]", "models:/churn/1")
    monkeypatch.setitem(sys.modules, "tensorflow", None)
    (tmp_path / "saved").mkdir()
    (tmp_path / "saved" / "saved_model.pb").write_bytes(b"")
    assert_refused(registry, MissingExtra, r"rtml\[tensorflow\]", tmp_path / "saved")


def test_existing_version_is_refused(registry: ModelRegistry) -> None:
    X, y = make_classification(200, 4, random_state=0)
    before = tree(registry.root)
    with pytest.raises(VersionExists):
        import_model(LogisticRegression().fit(X, y), "existing", registry, ImportOptions(version="1"))
    assert tree(registry.root) == before
