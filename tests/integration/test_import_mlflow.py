"""MLflow registry import against a real ``mlflow server`` (SQLite backend, local artifact store)."""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from sklearn.datasets import make_classification
from sklearn.ensemble import RandomForestClassifier

from importers import ImportOptions, import_model
from runtime.errors import SourceNotFound
from runtime.registry import ModelRegistry
from tests.stack_fixtures import free_port

MLFLOW_MISSING = importlib.util.find_spec("mlflow") is None
pytestmark = [
    pytest.mark.skipif(
        MLFLOW_MISSING, reason="mlflow not installed (pip install 'rtml[mlflow]'): MLflow cases skipped"
    ),
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),  # mlflow's dependencies
    pytest.mark.filterwarnings("ignore::FutureWarning"),
    pytest.mark.filterwarnings("ignore::UserWarning"),
    pytest.mark.timeout(300),
]


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``mlflow server`` on a free loopback port; stopped by its process group id at the end."""
    root = tmp_path_factory.mktemp("mlflow")
    port = free_port()
    command = [
        sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
        "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
        "--artifacts-destination", str(root / "artifacts"), "--workers", "1",
    ]  # fmt: skip
    log = open(root / "server.log", "wb")  # noqa: SIM115  # closed below
    server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, server, root / "server.log")
        yield url
    finally:
        os.killpg(server.pid, signal.SIGTERM)  # the group this fixture started (server + its workers)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=10)
        log.close()


def _wait_healthy(url: str, server: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"mlflow server exited with {server.returncode}: {log.read_text()[-2000:]}")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"mlflow server not healthy after 120 s: {log.read_text()[-2000:]}")


@pytest.fixture(scope="module")
def logged(mlflow_server: str) -> tuple[str, RandomForestClassifier, np.ndarray]:
    """A RandomForest logged in a run and registered as 'churn-model' v1, alias 'champion'."""
    import mlflow

    mlflow.set_tracking_uri(mlflow_server)
    X, y = make_classification(300, 5, n_informative=3, random_state=0)
    X = X.astype(np.float32)
    model = RandomForestClassifier(20, max_depth=6, random_state=0).fit(X, y)
    mlflow.set_experiment("rtml-import-test")
    with mlflow.start_run() as run:
        mlflow.sklearn.log_model(
            model,
            name="model",
            registered_model_name="churn-model",
            input_example=X[:5],
            skops_trusted_types=["sklearn.tree._tree.Tree"],  # MLflow 3 stores sklearn models with skops
        )
    mlflow.MlflowClient().set_registered_model_alias("churn-model", "champion", "1")
    return run.info.run_id, model, X


@pytest.fixture
def tracking(mlflow_server: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    return mlflow_server


def test_import_by_version_keeps_run_id_and_version(
    tracking: str, logged: tuple[str, RandomForestClassifier, np.ndarray], tmp_path: Path
) -> None:
    run_id, model, X = logged
    registry = ModelRegistry(tmp_path)
    result = import_model("models:/churn-model/1", "churn", registry)
    meta = registry.verify("churn", "1")
    assert (
        meta == result.metadata and meta.task == "classification" and meta.source_format == "mlflow-sklearn"
    )
    assert meta.source is not None and meta.source.mlflow is not None
    source = meta.source.mlflow
    assert (source.model_name, source.version, source.run_id, source.flavor) == (
        "churn-model",
        "1",
        run_id,
        "sklearn",
    )
    assert source.tracking_uri == tracking and source.alias is None
    assert result.report.passed and result.report.sample == "model_statistics"  # seeded by the input example
    import onnxruntime as ort

    session = ort.InferenceSession(str(registry.model_path("churn", "1")), providers=["CPUExecutionProvider"])
    labels, proba = session.run(["label", "probabilities"], {"float_input": X[:40]})
    assert labels.tolist() == model.predict(X[:40]).tolist()
    np.testing.assert_allclose(proba, model.predict_proba(X[:40]), atol=1e-4)


def test_import_by_alias(
    tracking: str, logged: tuple[str, RandomForestClassifier, np.ndarray], tmp_path: Path
) -> None:
    result = import_model(
        "models:/churn-model@champion", "churn", ModelRegistry(tmp_path), ImportOptions(version="3")
    )
    source = result.metadata.source
    assert source is not None and source.mlflow is not None
    assert (source.mlflow.alias, source.mlflow.version, result.metadata.version) == ("champion", "1", "3")


def test_unknown_mlflow_version_is_refused(tracking: str, logged: object, tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path)
    with pytest.raises(SourceNotFound, match="'churn-model' version 9 not found"):
        import_model("models:/churn-model/9", "churn", registry)
    with pytest.raises(SourceNotFound, match="'churn-model' @nobody not found"):
        import_model("models:/churn-model@nobody", "churn", registry)
    assert not registry.root.exists() or registry.list_models() == []


def test_follow_imports_and_promotes_as_the_alias_moves(
    tracking: str,
    logged: tuple[str, RandomForestClassifier, np.ndarray],
    kafka_bootstrap: str,
    tmp_path: Path,
) -> None:
    """`rtml models follow models:/churn-model@champion --once`, run as a cron job would, against
    the real MLflow server and Kafka: import + promote, promote an earlier import when the alias
    moves back, and nothing when it stays."""
    import mlflow

    from runtime.control import read_policies
    from runtime.settings import KafkaSettings

    tag = uuid.uuid4().hex[:8]
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": tracking,
        "RTML_REGISTRY__ROOT": str(tmp_path / "models"),
        "RTML_KAFKA__BOOTSTRAP_SERVERS": kafka_bootstrap,
        "RTML_KAFKA__CONTROL_TOPIC": f"t{tag}.control",
        "RTML_KAFKA__MODEL_EVENTS_TOPIC": f"t{tag}.model-events",
        "RTML_KAFKA__ARTIFACTS_TOPIC": f"t{tag}.artifacts",
    }
    kafka = KafkaSettings(bootstrap_servers=kafka_bootstrap, control_topic=f"t{tag}.control")

    def follow_once() -> str:
        done = subprocess.run(
            [sys.executable, "-m", "rtml.cli", "models", "follow", "models:/churn-model@champion",
             "--name", "churn", "--once"],
            env=env, capture_output=True, text=True, timeout=240, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-2000:]
        return done.stdout

    def default() -> str | None:
        policy = read_policies(kafka).get("churn")
        return policy.default if policy else None

    assert "imported as churn v1, promoted" in follow_once() and default() == "1"
    assert "already serves" in follow_once()

    _run_id, model, X = logged
    with mlflow.start_run():
        mlflow.sklearn.log_model(
            model, name="model", registered_model_name="churn-model", input_example=X[:5],
            skops_trusted_types=["sklearn.tree._tree.Tree"],
        )  # fmt: skip
    client = mlflow.MlflowClient()
    newest = max(int(v.version) for v in client.search_model_versions("name='churn-model'"))
    client.set_registered_model_alias("churn-model", "champion", str(newest))
    try:
        assert "imported as churn v2, promoted" in follow_once() and default() == "2"
    finally:
        client.set_registered_model_alias("churn-model", "champion", "1")  # as the other tests expect
    assert "promoted churn v1" in follow_once() and default() == "1"
