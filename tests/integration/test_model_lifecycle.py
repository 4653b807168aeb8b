"""Live model management on the real stack (issue 10): import, promote, roll back, split, shadow and
retire without a restart, from the command line and over HTTP; every process follows the control
topic within seconds, and every prediction record says which version served it and why."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import joblib
import orjson
import pytest

from runtime.control import ControlView
from runtime.settings import KafkaSettings
from tests.kafka_tools import produce, read_topic
from tests.model_fixtures import DemoModels
from tests.stack_fixtures import RunningStack, StackFactory

MODEL = "iris_classifier"
CONVERGE_S = 5.0


@pytest.fixture(scope="module")
def lifecycle(
    stack_factory: StackFactory, demo_models: DemoModels, tmp_path_factory: pytest.TempPathFactory
) -> RunningStack:
    """A stack of its own over a private registry holding iris_classifier v1 only."""
    registry = demo_models.copy(tmp_path_factory.mktemp("lifecycle-registry"), MODEL)
    return stack_factory(workers=1, models=[MODEL], registry=registry.root)


@pytest.fixture(scope="module")
def iris_source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A scikit-learn model as a user would hand it over (a joblib pickle, converted at import)."""
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    data = load_iris()
    path = tmp_path_factory.mktemp("sources") / "iris.joblib"
    joblib.dump(LogisticRegression(max_iter=500).fit(data.data, data.target), path)
    return path


def cli(stack: RunningStack, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **stack.stack.env}
    return subprocess.run(
        [sys.executable, "-m", "rtml.cli", "models", *args],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def predict(stack: RunningStack, **extra: Any) -> dict[str, Any]:
    row = [round(random.uniform(4, 8), 3), 3.0, round(random.uniform(1, 6), 3), 1.0]
    body = {"model_name": MODEL, "features": row, **extra}
    response = httpx.post(f"{stack.base_url}/api/v1/predict", json=body, timeout=10)
    assert response.status_code == 200, response.text
    return dict(response.json())


def admin(stack: RunningStack, method: str, path: str, body: dict[str, Any] | None = None) -> httpx.Response:
    url = f"{stack.base_url}/api/v1/admin/models/{MODEL}{path}"
    return httpx.request(method, url, json=body, timeout=30)


def served_version_within(stack: RunningStack, version: str, timeout_s: float = CONVERGE_S) -> float:
    """Seconds until the gateway answers with ``version`` (fails past ``timeout_s``)."""
    started = time.monotonic()
    while (answer := predict(stack))["model_version"] != version:
        assert time.monotonic() - started < timeout_s, f"still v{answer['model_version']}, not v{version}"
        time.sleep(0.05)
    return time.monotonic() - started


def direct(stack: RunningStack, **extra: Any) -> str:
    request_id = f"direct-{uuid.uuid4().hex[:10]}"
    value = orjson.dumps(
        {"request_id": request_id, "model": MODEL, "features": [[5.0, 3.0, 4.0, 1.0]], **extra}
    )
    produce(stack.bootstrap, stack.request_topic(MODEL), [value])
    return request_id


def records_of(stack: RunningStack, request_ids: set[str], count: int) -> list[dict[str, Any]]:
    records = read_topic(
        stack.bootstrap,
        stack.namespace.predictions_topic,
        lambda rs: sum(r["request_id"] in request_ids for r in rs) >= count,
    )
    return [r for r in records if r["request_id"] in request_ids]


@pytest.fixture
def policy_reset(lifecycle: RunningStack) -> Iterator[None]:
    yield
    admin(lifecycle, "DELETE", "/traffic")


def test_import_waits_for_promote_then_everyone_follows_promote_and_rollback(
    lifecycle: RunningStack, iris_source: Path
) -> None:
    assert predict(lifecycle)["model_version"] == "1"
    done = cli(lifecycle, "import", str(iris_source), "--name", MODEL)
    assert done.returncode == 0, done.stderr
    assert "v2 serves nothing until `rtml models promote iris_classifier 2`" in done.stdout
    time.sleep(1.0)  # long enough for the control record to reach every process
    assert {predict(lifecycle)["model_version"] for _ in range(20)} == {"1"}

    done = cli(lifecycle, "promote", MODEL, "2")
    assert done.returncode == 0, done.stderr
    assert "promoted v2 (was v1)" in done.stdout
    waited = served_version_within(lifecycle, "2")
    answer = predict(lifecycle)
    assert (answer["model_version"], answer["route"]) == ("2", "default")
    # Direct producers are routed by the worker, which follows the same topic.
    request_id = direct(lifecycle)
    (record,) = records_of(lifecycle, {request_id}, 1)
    assert (record["version"], record["route"]) == ("2", "default")

    response = admin(lifecycle, "POST", "/rollback")
    assert response.status_code == 200, response.text
    assert (
        response.json()["policy"]["default"] == "1"
        and "rolled back from v2 to v1" in response.json()["change"]
    )
    assert predict(lifecycle)["model_version"] == "1"  # read-your-writes on the gateway that took it
    request_id = direct(lifecycle)
    deadline = time.monotonic() + CONVERGE_S
    while (record := records_of(lifecycle, {request_id}, 1)[0])["version"] != "1":
        assert time.monotonic() < deadline, "the worker still serves v2 after the rollback"
        request_id = direct(lifecycle)
    print(f"gateway followed the promote in {waited:.2f} s")


def test_a_named_version_is_served_while_it_is_registered_and_pinned_in_the_log(
    lifecycle: RunningStack,
) -> None:
    answer = predict(lifecycle, model_version="2")
    assert (answer["model_version"], answer["route"]) == ("2", "pinned")
    request_id = direct(lifecycle, version="2")
    (record,) = records_of(lifecycle, {request_id}, 1)
    assert (record["version"], record["route"]) == ("2", "pinned")


@pytest.mark.usefixtures("policy_reset")
def test_a_50_50_split_lands_within_45_to_55_percent_and_sticks_per_routing_key(
    lifecycle: RunningStack,
) -> None:
    response = admin(lifecycle, "PUT", "/traffic", {"split": {"1": 50, "2": 50}})
    assert response.status_code == 200, response.text
    assert response.json()["policy"]["split"] == {"1": 50, "2": 50}
    counts: Counter[str] = Counter()
    with httpx.Client(timeout=10) as client:
        for _ in range(2000):
            body = {"model_name": MODEL, "features": [5.1, 3.5, 1.4, 0.2]}
            answer = client.post(f"{lifecycle.base_url}/api/v1/predict", json=body).json()
            assert answer["route"] == "split"
            counts[answer["model_version"]] += 1
    assert 900 <= counts["2"] <= 1100, counts
    for key in ("alice", "bob", "carol"):
        assert len({predict(lifecycle, routing_key=key)["model_version"] for _ in range(10)}) == 1


@pytest.mark.usefixtures("policy_reset")
def test_shadow_predictions_go_to_the_log_and_never_change_an_answer(lifecycle: RunningStack) -> None:
    response = admin(lifecycle, "PUT", "/traffic", {"shadow": {"2": 100}})
    assert response.status_code == 200, response.text
    time.sleep(1.0)  # the worker mirrors, and follows the topic on its own
    answers = [predict(lifecycle, use_cache=False) for _ in range(5)]
    assert {a["model_version"] for a in answers} == {"1"}
    ids = {a["request_id"] for a in answers} | {direct(lifecycle)}
    records = records_of(lifecycle, ids, 2 * len(ids))
    by_route = Counter((r["version"], r["route"]) for r in records)
    assert by_route == {("1", "default"): len(ids), ("2", "shadow"): len(ids)}, by_route


def test_bad_changes_are_refused_with_what_exists_and_change_nothing(lifecycle: RunningStack) -> None:
    before = admin(lifecycle, "GET", "/status").json()["revision"]
    missing = admin(lifecycle, "POST", "/promote", {"version": "9"})
    assert missing.status_code == 404 and "registered versions: 1, 2" in missing.json()["error"]["message"]
    weights = admin(lifecycle, "PUT", "/traffic", {"split": {"1": 60, "2": 30}})
    assert weights.status_code == 422 and "sum to 100" in weights.json()["error"]["message"]
    default = admin(lifecycle, "POST", "/retire", {"version": "1"})
    assert default.status_code == 409 and "is the default" in default.json()["error"]["message"]
    done = cli(lifecycle, "traffic", MODEL, "--split", "1=50,7=50")
    assert done.returncode == 1 and "no version '7'" in done.stderr and "nothing changed" in done.stderr
    unknown = httpx.post(
        f"{lifecycle.base_url}/api/v1/admin/models/nope/promote", json={"version": "1"}, timeout=10
    )
    assert unknown.status_code == 404 and MODEL in unknown.json()["error"]["message"]
    assert admin(lifecycle, "GET", "/status").json()["revision"] == before


def test_status_shows_policy_loaded_versions_and_traffic_share(lifecycle: RunningStack) -> None:
    for _ in range(20):
        predict(lifecycle, use_cache=False)
    deadline = time.monotonic() + 10
    while True:
        done = cli(lifecycle, "status", MODEL, "--json")
        assert done.returncode == 0, done.stderr
        status = orjson.loads(done.stdout)
        if status["workers"] and status["traffic"]["share_percent"].get("1"):
            break
        assert time.monotonic() < deadline, status
        time.sleep(1)
    assert status["default_version"] == "1" and status["versions"]["1"]["state"] == "default"
    assert status["versions"]["1"]["loaded_by"] and status["versions"]["2"]["loaded_by"]
    human = cli(lifecycle, "status", MODEL)
    assert "default v1" in human.stdout and "loaded by" in human.stdout


def test_retired_versions_serve_nothing_and_a_later_process_sees_the_same_state(
    lifecycle: RunningStack,
) -> None:
    response = admin(lifecycle, "POST", "/retire", {"version": "2"})
    assert response.status_code == 200, response.text
    pinned = httpx.post(
        f"{lifecycle.base_url}/api/v1/predict",
        json={"model_name": MODEL, "model_version": "2", "features": [5.0, 3.0, 4.0, 1.0]},
        timeout=10,
    )
    assert pinned.status_code == 404 and "available versions: 1" in pinned.json()["error"]["message"]
    info = httpx.get(f"{lifecycle.base_url}/api/v1/models/{MODEL}", timeout=10).json()
    assert info["default_version"] == "1" and info["versions"] == ["1"] and info["policy"]["retired"] == ["2"]
    # A process started now reads the same state from the compacted topic.
    view = ControlView(
        KafkaSettings(bootstrap_servers=lifecycle.bootstrap, control_topic=lifecycle.namespace.control_topic),
        "test-late",
    )
    view.start(timeout_s=20)
    try:
        policy = view.policy(MODEL)
        assert policy is not None and policy.default == "1" and policy.retired == ["2"]
    finally:
        view.stop()
    events = read_topic(
        lifecycle.bootstrap,
        lifecycle.namespace.events_topic,
        lambda rs: any(r["action"] == "retired" for r in rs),
    )
    actions = [e["action"] for e in events if e["model"] == MODEL]
    assert {"registered", "promoted", "rolled_back", "traffic", "retired"} <= set(actions), actions
