"""Canary ramps on the real stack (issue 10): a healthy candidate is stepped up and promoted on its
own; a candidate that always errors is rolled back on its own, with the reason in the status and
on the events topic."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import threading
import time
from typing import Any

import httpx
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from tests.kafka_tools import read_topic
from tests.model_fixtures import DemoModels
from tests.stack_fixtures import RunningStack, StackFactory

MODEL = "iris_classifier"


def failing_iris_onnx(input_name: str, label: str, probabilities: str) -> bytes:
    """An iris-shaped classifier that answers the all-zeros trial run (so it registers) and fails on
    every real row: it gathers with the first feature as an index, out of bounds from 3 on."""
    index = [
        helper.make_node("Slice", [input_name, "start", "end", "axis"], ["first"]),
        helper.make_node("Squeeze", ["first", "axis"], ["first_flat"]),
        helper.make_node("Cast", ["first_flat"], ["idx"], to=TensorProto.INT64),
        helper.make_node("Gather", ["labels", "idx"], [label], axis=0),
        helper.make_node("Gather", ["eye", "idx"], [probabilities], axis=0),
    ]
    initializers = [
        helper.make_tensor("start", TensorProto.INT64, [1], [0]),
        helper.make_tensor("end", TensorProto.INT64, [1], [1]),
        helper.make_tensor("axis", TensorProto.INT64, [1], [1]),
        helper.make_tensor("labels", TensorProto.INT64, [3], [0, 1, 2]),
        helper.make_tensor("eye", TensorProto.FLOAT, [3, 3], np.eye(3, dtype=np.float32).ravel().tolist()),
    ]
    graph = helper.make_graph(
        index,
        "failing_iris",
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, [None, 4])],
        [
            helper.make_tensor_value_info(label, TensorProto.INT64, [None]),
            helper.make_tensor_value_info(probabilities, TensorProto.FLOAT, [None, 3]),
        ],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return bytes(model.SerializeToString())


@pytest.fixture(scope="module")
def canary_stack(
    stack_factory: StackFactory, demo_models: DemoModels, tmp_path_factory: pytest.TempPathFactory
) -> RunningStack:
    """iris v1 (default), v2 a copy of v1 (healthy), v3 a model that fails on every real row."""
    registry = demo_models.copy(tmp_path_factory.mktemp("canary-registry"), MODEL)
    v1 = registry.metadata(MODEL, "1")
    registry.register(registry.model_path(MODEL, "1").read_bytes(), v1.with_updates(version="2"))
    broken = failing_iris_onnx(v1.input_name, str(v1.output_label), str(v1.output_probabilities))
    registry.register(broken, v1.with_updates(version="3"))
    stack = stack_factory(workers=1, models=[MODEL], registry=registry.root)
    response = admin(stack, "POST", "/promote", {"version": "1"})
    assert response.status_code == 200, response.text
    return stack


def admin(stack: RunningStack, method: str, path: str, body: dict[str, Any] | None = None) -> httpx.Response:
    return httpx.request(method, f"{stack.base_url}/api/v1/admin/models/{MODEL}{path}", json=body, timeout=30)


def traffic_until(stack: RunningStack, done: threading.Event, seconds: float) -> list[int]:
    """Random iris rows (no cache) until ``done`` or ``seconds``; returns the statuses."""
    statuses: list[int] = []
    deadline = time.monotonic() + seconds
    with httpx.Client(timeout=10) as client:
        while not done.is_set() and time.monotonic() < deadline:
            row = [round(random.uniform(4.5, 7.5), 2), 3.0, round(random.uniform(1, 6), 2), 1.0]
            body = {"model_name": MODEL, "features": row, "use_cache": False}
            statuses.append(client.post(f"{stack.base_url}/api/v1/predict", json=body).status_code)
            time.sleep(0.01)
    return statuses


def wait_for_canary_end(stack: RunningStack, timeout_s: float) -> dict[str, Any]:
    done = threading.Event()
    statuses: list[int] = []
    worker = threading.Thread(
        target=lambda: statuses.extend(traffic_until(stack, done, timeout_s)), daemon=True
    )
    worker.start()
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            status = admin(stack, "GET", "/status").json()
            canary = status["policy"]["canary"]
            if canary and canary["status"] != "running":
                return dict(status)
            time.sleep(0.5)
    finally:
        done.set()
        worker.join(timeout=15)
    raise AssertionError(f"the canary did not end within {timeout_s} s: {status['policy']['canary']}")


def test_a_healthy_canary_is_stepped_up_and_promoted_on_its_own(canary_stack: RunningStack) -> None:
    env = {**os.environ, **canary_stack.stack.env}
    done = subprocess.run(
        [sys.executable, "-m", "rtml.cli", "models", "canary", MODEL, "2",
         "--steps", "30,100", "--step-s", "2", "--min-requests", "20"],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "canary of v2 started: 30,100%" in done.stdout
    status = wait_for_canary_end(canary_stack, timeout_s=60)
    assert status["policy"]["canary"]["status"] == "promoted", status["policy"]["canary"]
    assert status["default_version"] == "2"


def test_a_canary_that_always_errors_is_rolled_back_and_says_why(canary_stack: RunningStack) -> None:
    response = admin(
        canary_stack,
        "POST",
        "/canary",
        {"version": "3", "steps": [20, 50, 100], "step_s": 30, "limits": {"min_requests": 10}},
    )
    assert response.status_code == 200, response.text
    status = wait_for_canary_end(canary_stack, timeout_s=60)
    canary = status["policy"]["canary"]
    assert canary["status"] == "rolled_back" and "error rate" in canary["reason"], canary
    assert status["default_version"] == "2"  # never changed by the failed candidate
    events = read_topic(
        canary_stack.bootstrap,
        canary_stack.namespace.events_topic,
        lambda rs: any("rolled back" in r["detail"] for r in rs),
    )
    rolled = [e for e in events if e["action"] == "canary" and "rolled back" in e["detail"]]
    assert rolled and "error rate" in rolled[-1]["detail"] and rolled[-1]["version"] == "3"
    env = {**os.environ, **canary_stack.stack.env}
    human = subprocess.run(
        [sys.executable, "-m", "rtml.cli", "models", "status", MODEL],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert "canary: v3 rolled_back: error rate" in human.stdout, human.stdout
