"""Models travel between machines (issue 10): a worker started with an empty models directory,
sharing only Kafka and Redis with the machine that imported the models, serves every promoted
version, fetched from the artifact topic and verified by checksum; a corrupt artifact is refused."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import joblib
import pytest

from rtml.infra.process import free_ports
from rtml.stack import wait_http_ok
from runtime import model_policy
from runtime.control import ControlWriter, read_policies
from runtime.settings import KafkaSettings
from tests.kafka_tools import produce
from tests.model_fixtures import DemoModels
from tests.stack_fixtures import RunningStack, StackFactory

MODEL = "iris_classifier"


@pytest.fixture(scope="module")
def remote(
    stack_factory: StackFactory, demo_models: DemoModels, tmp_path_factory: pytest.TempPathFactory
) -> tuple[RunningStack, Path]:
    """A gateway over a registry with iris v1 and no worker of its own; the worker comes later."""
    registry = demo_models.copy(tmp_path_factory.mktemp("origin-registry"), MODEL)
    stack = stack_factory(workers=0, models=[MODEL], registry=registry.root)
    return stack, tmp_path_factory.mktemp("remote-models")


def rtml(stack: RunningStack, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **stack.stack.env}
    return subprocess.run(
        [sys.executable, "-m", "rtml.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def predict(stack: RunningStack) -> dict[str, object]:
    body = {"model_name": MODEL, "features": [6.1, 2.8, 4.7, 1.2], "use_cache": False}
    response = httpx.post(f"{stack.base_url}/api/v1/predict", json=body, timeout=10)
    assert response.status_code == 200, response.text
    return dict(response.json())


def test_an_empty_worker_fetches_verifies_and_serves_every_promoted_version(
    remote: tuple[RunningStack, Path], tmp_path: Path
) -> None:
    stack, models_dir = remote
    done = rtml(stack, "models", "publish", MODEL)
    assert done.returncode == 0, done.stderr
    (metrics_port,) = free_ports(1)
    worker = stack.stack.spawn(
        "remote-worker",
        ["worker", "--model", MODEL, "--models-dir", str(models_dir)],
        {"RTML_WORKER__METRICS_PORT": str(metrics_port)},
    )
    wait_http_ok(f"http://127.0.0.1:{metrics_port}/metrics", timeout_s=60, child=worker)
    assert predict(stack)["model_version"] == "1"
    assert (models_dir / MODEL / "1" / "model.onnx").is_file()

    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    source = tmp_path / "iris.joblib"
    data = load_iris()
    joblib.dump(LogisticRegression(max_iter=300).fit(data.data, data.target), source)
    done = rtml(stack, "models", "import", str(source), "--name", MODEL, "--promote")
    assert done.returncode == 0, done.stderr
    deadline = time.monotonic() + 5
    while predict(stack)["model_version"] != "2":
        assert time.monotonic() < deadline, "the remote worker does not serve v2 within 5 s"
        time.sleep(0.1)
    local = stack.registry.metadata(MODEL, "2").onnx_sha256
    fetched = (models_dir / MODEL / "2" / "metadata.json").read_text()
    assert local in fetched  # the same bytes, checked against the control plane's checksum


def test_a_corrupt_artifact_is_refused_and_nothing_is_replaced(remote: tuple[RunningStack, Path]) -> None:
    stack, models_dir = remote
    kafka = KafkaSettings(
        bootstrap_servers=stack.bootstrap,
        control_topic=stack.namespace.control_topic,
        model_events_topic=stack.namespace.events_topic,
    )
    artifacts_topic = stack.stack.env["RTML_KAFKA__ARTIFACTS_TOPIC"]
    claimed = "ab" * 32
    # A truncated upload: the manifest promises two chunks, one arrived, and its bytes do not hash
    # to what the control plane records.
    produce(
        stack.bootstrap, artifacts_topic, [b"not an onnx model"], key=f"{MODEL}/3/{claimed}/000000".encode()
    )
    manifest = (
        f'{{"model": "{MODEL}", "version": "3", "onnx_sha256": "{claimed}", "size": 40, "chunks": 2, '
        f'"metadata": "{{}}"}}'
    ).encode()
    produce(stack.bootstrap, artifacts_topic, [manifest], key=f"{MODEL}/3/manifest".encode())
    current = read_policies(kafka).get(MODEL)
    policy = model_policy.published(current, MODEL, ["1", "2"], {"3": claimed}, by="test")
    writer = ControlWriter(kafka, "test-writer")
    try:
        writer.publish(policy, "registered", "3")
    finally:
        writer.close()
    time.sleep(2.0)
    assert not (models_dir / MODEL / "3").exists()
    assert predict(stack)["model_version"] == "2"
    remote_log = next(child for child in stack.stack.children if child.name == "remote-worker").log_tail(60)
    assert "cannot fetch model artifact" in remote_log
