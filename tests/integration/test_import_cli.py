"""``rtml models import|list|show`` and the pieces the import is built on (DBSCAN rule, parity, samples)."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest
from sklearn.cluster import DBSCAN
from sklearn.datasets import make_blobs, make_classification
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression

from importers import dbscan, parity
from importers.model import Outputs, Signature
from importers.onnx_tools import predict
from rtml import cli
from runtime.registry import ModelRegistry
from tests.paths import REPO_ROOT


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kafka_bootstrap: str) -> Path:
    """A private registry, and private control-plane topics on the test broker (an import records
    the new version there)."""
    tag = uuid.uuid4().hex[:8]
    monkeypatch.setenv("RTML_REGISTRY__ROOT", str(tmp_path / "registry"))
    monkeypatch.setenv("RTML_KAFKA__BOOTSTRAP_SERVERS", kafka_bootstrap)
    monkeypatch.setenv("RTML_KAFKA__CONTROL_TOPIC", f"t{tag}.control")
    monkeypatch.setenv("RTML_KAFKA__MODEL_EVENTS_TOPIC", f"t{tag}.model-events")
    monkeypatch.setenv("RTML_KAFKA__ARTIFACTS_TOPIC", f"t{tag}.artifacts")
    return tmp_path / "registry"


@pytest.fixture
def model_file(tmp_path: Path) -> tuple[Path, np.ndarray]:
    X, y = make_classification(300, 4, random_state=0)
    path = tmp_path / "clf.pkl"
    path.write_bytes(pickle.dumps(RandomForestClassifier(20, random_state=0).fit(X, y)))
    return path, X


def test_cli_import_then_list_and_show(
    root: Path, model_file: tuple[Path, np.ndarray], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, X = model_file
    sample = tmp_path / "rows.csv"
    sample.write_text("a,b,c,d\n" + "\n".join(",".join(map(str, row)) for row in X[:50]) + "\n")
    assert (
        cli.main(["models", "import", str(path), "--name", "clf", "--version", "2", "--sample", str(sample)])
        == 0
    )
    out = capsys.readouterr().out
    assert "parity passed: 50 rows (user sample), label agreement 100.00%" in out
    assert "registered clf v2 (classification, sklearn-pickle, 4 features)" in out
    assert cli.main(["models", "list"]) == 0
    assert "clf" in capsys.readouterr().out
    assert cli.main(["models", "show", "clf"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["feature_names"] == ["a", "b", "c", "d"] and shown["parity"]["rows"] == 50
    assert shown["source"]["format"] == "sklearn-pickle" and shown["baseline"]["output"]["source"] == "sample"


def test_cli_refusal_exits_1_and_registers_nothing(
    root: Path, model_file: tuple[Path, np.ndarray], capsys: pytest.CaptureFixture[str]
) -> None:
    path, _ = model_file
    corrupt = path.with_name("corrupt.pkl")
    corrupt.write_bytes(b"\x80\x04garbage")
    assert cli.main(["models", "import", str(corrupt), "--name", "other"]) == 1
    assert "cannot be loaded as a pickle" in capsys.readouterr().err
    assert "other" not in ModelRegistry(root).list_models()
    assert cli.main(["models", "import", str(path)]) == 2  # no --name


def test_cli_entry_point_in_a_fresh_process(root: Path, model_file: tuple[Path, np.ndarray]) -> None:
    path, _ = model_file
    done = subprocess.run(
        [sys.executable, "-m", "rtml.cli", "models", "import", str(path), "--name", "fresh"],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "registered fresh v1" in done.stdout and ModelRegistry(root).latest("fresh") == "1"
    assert "fresh v1 is the default version" in done.stdout  # a new model's first version serves


def test_dbscan_graph_matches_the_numpy_rule() -> None:
    X, _ = make_blobs(300, 3, centers=4, cluster_std=0.6, random_state=5)
    model = DBSCAN(eps=0.7, min_samples=6).fit(X)
    onnx_bytes, signature, reference = dbscan.convert(model)
    probe = np.concatenate([X, np.random.default_rng(0).uniform(-15, 15, size=(300, 3))]).astype(np.float32)
    served = predict(onnx_bytes, signature, probe)
    assert served.labels is not None and served.labels.tolist() == reference(probe).labels.tolist()  # type: ignore[union-attr]
    assert set(served.labels.tolist()) == {-1, *range(len(set(model.labels_)) - 1)}  # noise and every cluster
    cores = model.core_sample_indices_
    assert served.labels[cores].tolist() == model.labels_[cores].tolist()  # core samples keep their cluster
    noise = np.flatnonzero(model.labels_ == -1)
    assert (served.labels[noise] == -1).mean() > 0.5  # most training noise stays noise under the rule


def test_parity_ties_are_reported_not_refused() -> None:
    signature = Signature("classification", 2, classes=[0, 1], output_label="label", output_probabilities="p")
    proba = np.array([[0.5, 0.5], [0.9, 0.1]])
    original = Outputs(labels=np.array([1, 0]), probabilities=proba)
    tie = parity.compare(
        original, Outputs(labels=np.array([0, 0]), probabilities=proba), signature, "synthetic"
    )
    assert tie.passed and tie.tied_rows == 1 and tie.label_agreement == 0.5
    wrong = parity.compare(
        original, Outputs(labels=np.array([1, 1]), probabilities=proba), signature, "synthetic"
    )
    assert not wrong.passed and wrong.tied_rows == 0


def test_logistic_regression_with_string_classes(root: Path) -> None:
    from importers import import_model

    X, y = make_classification(200, 3, n_informative=2, n_redundant=0, random_state=0)
    model = LogisticRegression().fit(X, np.where(y == 1, "churn", "stay"))
    meta = import_model(model, "strings", ModelRegistry(root)).metadata
    assert meta.classes == ["churn", "stay"]


def test_tracking_uri_credentials_are_not_stored() -> None:
    from importers.mlflow_source import _without_credentials

    assert (
        _without_credentials("https://user:secret@mlflow.example:5000/x") == "https://mlflow.example:5000/x"
    )
    assert _without_credentials("http://127.0.0.1:5000") == "http://127.0.0.1:5000"
