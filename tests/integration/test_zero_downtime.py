"""Zero downtime, proven (issue 10): steady HTTP and direct-Kafka load while the model's policy
changes twenty times (promote, roll back, split, clear, a version imported and promoted mid-run).
Every HTTP request gets a 200 from a version that was serving at that moment, and every direct
request ends as a log record; nothing is dead-lettered and nothing waits for a model load."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import orjson
import pytest
from confluent_kafka import Producer

from tests.kafka_tools import read_topic
from tests.model_fixtures import DemoModels
from tests.stack_fixtures import RunningStack, StackFactory

MODEL = "iris_classifier"
CONVERGE_S = 5.0
MAX_LOAD_S = 60.0
"""Bound on the load threads, whatever happens to the changes."""


@dataclass
class Answer:
    sent: float
    received: float
    status: int
    version: str | None
    route: str | None


@dataclass
class Load:
    stop: threading.Event = field(default_factory=threading.Event)
    answers: list[Answer] = field(default_factory=list)
    direct_ids: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def http_load(stack: RunningStack, load: Load) -> None:
    deadline = time.monotonic() + MAX_LOAD_S
    body = {"model_name": MODEL, "features": [5.9, 3.0, 5.1, 1.8], "use_cache": False}
    with httpx.Client(timeout=10) as client:
        while not load.stop.is_set() and time.monotonic() < deadline:
            sent = time.monotonic()
            try:
                response = client.post(f"{stack.base_url}/api/v1/predict", json=body)
            except httpx.HTTPError as exc:
                load.errors.append(repr(exc))
                continue
            answer = response.json() if response.status_code == 200 else {}
            load.answers.append(
                Answer(
                    sent,
                    time.monotonic(),
                    response.status_code,
                    answer.get("model_version"),
                    answer.get("route"),
                )
            )


def direct_load(stack: RunningStack, load: Load) -> None:
    producer = Producer({"bootstrap.servers": stack.bootstrap, "enable.idempotence": True, "linger.ms": 5})
    deadline = time.monotonic() + MAX_LOAD_S
    while not load.stop.is_set() and time.monotonic() < deadline:
        request_id = f"zd-{uuid.uuid4().hex[:12]}"
        value = orjson.dumps({"request_id": request_id, "model": MODEL, "features": [[6.0, 2.9, 4.5, 1.5]]})
        producer.produce(stack.request_topic(MODEL), value)
        load.direct_ids.append(request_id)
        producer.poll(0)
        time.sleep(0.01)
    assert producer.flush(15) == 0


@pytest.fixture(scope="module")
def zd_stack(
    stack_factory: StackFactory, demo_models: DemoModels, tmp_path_factory: pytest.TempPathFactory
) -> RunningStack:
    registry = demo_models.copy(tmp_path_factory.mktemp("zd-registry"), MODEL)
    v1 = registry.metadata(MODEL, "1")
    registry.register(registry.model_path(MODEL, "1").read_bytes(), v1.with_updates(version="2"))
    return stack_factory(workers=2, models=[MODEL], registry=registry.root)


def change(
    stack: RunningStack, method: str, path: str, body: dict[str, object] | None = None
) -> dict[str, object]:
    response = httpx.request(
        method, f"{stack.base_url}/api/v1/admin/models/{MODEL}{path}", json=body, timeout=30
    )
    assert response.status_code == 200, response.text
    return dict(response.json()["policy"])


def serving(policy: dict[str, object]) -> set[str]:
    split = policy.get("split") or {}
    assert isinstance(split, dict)
    return {str(v) for v, share in split.items() if share} or {str(policy["default"])}


def test_twenty_policy_changes_under_load_lose_nothing(zd_stack: RunningStack, tmp_path: Path) -> None:
    stack = zd_stack
    v2 = stack.registry.metadata(MODEL, "2")
    changes: list[Callable[[], dict[str, object]]] = [
        lambda: change(stack, "POST", "/promote", {"version": "2"}),
        lambda: change(stack, "POST", "/rollback"),
        lambda: change(stack, "PUT", "/traffic", {"split": {"1": 50, "2": 50}}),
        lambda: change(stack, "DELETE", "/traffic"),
        lambda: change(stack, "PUT", "/traffic", {"shadow": {"2": 50}}),
        lambda: change(stack, "POST", "/promote", {"version": "2"}),
        lambda: change(stack, "PUT", "/traffic", {"split": {"1": 20, "2": 80}}),
        lambda: change(stack, "POST", "/rollback"),
        lambda: change(stack, "DELETE", "/traffic"),
    ]
    change(stack, "POST", "/promote", {"version": "1"})  # the registry's highest (v2) served until now
    timeline: list[tuple[float, set[str]]] = [(0.0, {"1"})]
    load = Load()
    threads = [
        threading.Thread(target=http_load, args=(stack, load), daemon=True),
        threading.Thread(target=http_load, args=(stack, load), daemon=True),
        threading.Thread(target=direct_load, args=(stack, load), daemon=True),
    ]
    for thread in threads:
        thread.start()
    try:
        time.sleep(1.0)
        for index in range(20):
            began = time.monotonic()  # the gateway may route by the new policy from here on
            if index == 10:  # a version registered mid-run: loaded and warmed before it can serve
                stack.registry.register(
                    stack.registry.model_path(MODEL, "1").read_bytes(), v2.with_updates(version="3")
                )
                policy = change(stack, "POST", "/promote", {"version": "3"})
            else:
                policy = changes[index % len(changes)]()
            timeline.append((began, serving(policy)))
            time.sleep(0.4)
        time.sleep(1.0)
    finally:
        load.stop.set()
        for thread in threads:
            thread.join(timeout=30)

    assert not load.errors, load.errors[:3]
    assert len(load.answers) > 200, f"only {len(load.answers)} HTTP answers"
    failed = [a for a in load.answers if a.status != 200]
    assert not failed, f"{len(failed)} non-200 answers, e.g. {failed[:3]}"
    for answer in load.answers:
        # Valid: the version served (default or split arm) by a policy in force at some moment
        # between the request's routing (up to CONVERGE_S before, as processes follow) and its answer.
        allowed = {
            version
            for start, versions in timeline
            if start <= answer.received and _until(timeline, start) >= answer.sent - CONVERGE_S
            for version in versions
        }
        assert answer.version in allowed, (answer, allowed)
    slowest = max(a.received - a.sent for a in load.answers)
    assert slowest < 2.0, f"a request took {slowest:.2f} s: something waited"

    wanted = set(load.direct_ids)
    records = read_topic(
        stack.bootstrap,
        stack.namespace.predictions_topic,
        lambda rs: wanted <= {r["request_id"] for r in rs if r.get("route") != "shadow"},
        timeout_s=60,
    )
    logged = {r["request_id"] for r in records if r.get("route") != "shadow"}
    assert not wanted - logged, f"{len(wanted - logged)} of {len(wanted)} direct requests never logged"
    dead = read_topic(stack.bootstrap, stack.namespace.dlq_topic, lambda rs: False, timeout_s=3)
    assert not dead, dead[:2]
    latencies = sorted(a.received - a.sent for a in load.answers)
    worst = max(load.answers, key=lambda a: a.received - a.sent)
    since_change = min((worst.sent - t for t, _ in timeline[1:] if t <= worst.sent), default=-1.0)
    print(
        f"{len(load.answers)} HTTP answers, {len(wanted)} direct requests; latency p50 "
        f"{latencies[len(latencies) // 2] * 1000:.1f} ms, "
        f"p99 {latencies[int(len(latencies) * 0.99)] * 1000:.0f} ms, "
        f"slowest {slowest * 1000:.0f} ms (v{worst.version}, {since_change:.2f} s after a change)"
    )


def _until(timeline: list[tuple[float, set[str]]], start: float) -> float:
    later = [t for t, _ in timeline if t > start]
    return min(later) if later else float("inf")
