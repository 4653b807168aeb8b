"""`rtml drift` against a real broker and Redis: alerts fire, resolve, survive restarts; junk is skipped.

Each test runs the real command in a subprocess on its own topics, app id and
Redis prefix, with 10 s windows hopping by 1 s, and writes PredictionRecords
with chosen event times straight to its prediction-log topic.
"""

from __future__ import annotations

import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
import redis

from bench.drift_traffic import Phase, Traffic, timeline
from bench.synthetic_model import synthetic_model
from rtml.stack import Child, Stack
from runtime.drift_state import read_drift_state
from runtime.kafka import TopicSpec, ensure_topics
from runtime.settings import KafkaSettings
from schemas.model_metadata import ModelMetadata
from tests.kafka_tools import committed_lag, produce, read_topic
from tests.stack_fixtures import free_port

MODEL = "drift_synth"
START_MS = 1_700_000_000_000
RATE = 100
"""Records per simulated second: 1000 per 10 s window, over min_samples (500)."""


@dataclass
class DriftRun:
    bootstrap: str
    redis_url: str
    tag: str
    registry: Path
    log_dir: Path
    state_dir: Path
    metrics_port: int

    @property
    def predictions(self) -> str:
        return f"t{self.tag}.predictions"

    @property
    def alerts(self) -> str:
        return f"t{self.tag}.drift.alerts"

    @property
    def prefix(self) -> str:
        return f"t{self.tag}:drift:"

    def env(self) -> dict[str, str]:
        tag = self.tag
        return {
            "RTML_KAFKA__BOOTSTRAP_SERVERS": self.bootstrap,
            "RTML_REDIS__URL": self.redis_url,
            "RTML_REGISTRY__ROOT": str(self.registry),
            "RTML_INFRA__STATE_DIR": str(self.state_dir),
            "RTML_KAFKA__PREDICTIONS_TOPIC": self.predictions,
            "RTML_KAFKA__LOG_PARTITIONS": "2",
            "RTML_DRIFT__APP_ID": f"t{tag}-drift",
            "RTML_DRIFT__READER_GROUP": f"t{tag}.drift.reader",
            "RTML_DRIFT__PARTIALS_TOPIC": f"t{tag}.drift.partials",
            "RTML_DRIFT__ALERTS_TOPIC": self.alerts,
            "RTML_DRIFT__DEAD_LETTER_TOPIC": f"t{tag}.drift.dlq",
            "RTML_DRIFT__PARTITIONS": "2",
            "RTML_DRIFT__WINDOW_S": "10",
            "RTML_DRIFT__STEP_S": "1",
            "RTML_DRIFT__ALLOWED_LATENESS_S": "0",
            "RTML_DRIFT__METRICS_PORT": str(self.metrics_port),
            "RTML_DRIFT__REDIS_PREFIX": self.prefix,
            "RTML_ENV": "test",
        }

    def start(self) -> Child:
        return Stack(env=self.env(), log_dir=self.log_dir).spawn(f"drift-{uuid.uuid4().hex[:4]}", ["drift"])

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as response:
            return str(response.read().decode())


def write_metadata(root: Path, meta: ModelMetadata) -> None:
    target = root / meta.name / meta.version
    target.mkdir(parents=True)
    (target / "metadata.json").write_text(meta.to_json())


@pytest.fixture
def synth() -> tuple[ModelMetadata, Traffic]:
    return synthetic_model(MODEL)


@pytest.fixture
def run(
    kafka_bootstrap: str, redis_url: str, tmp_path: Path, synth: tuple[ModelMetadata, Traffic]
) -> Iterator[DriftRun]:
    write_metadata(tmp_path / "registry", synth[0])
    drift_run = DriftRun(
        kafka_bootstrap,
        redis_url,
        uuid.uuid4().hex[:8],
        tmp_path / "registry",
        tmp_path / "logs",
        tmp_path / "state",
        free_port(),
    )
    topics = [TopicSpec(drift_run.predictions, 2, "request id"), TopicSpec(drift_run.alerts, 1, "alert id")]
    ensure_topics(KafkaSettings(bootstrap_servers=kafka_bootstrap), topics)
    yield drift_run


@pytest.fixture
def started(run: DriftRun) -> Iterator[list[Child]]:
    children: list[Child] = []
    yield children
    for child in children:
        child.stop(20)


def send(
    run: DriftRun, traffic: Traffic, phases: list[Phase], start_ms: int = START_MS, seed: int = 1
) -> None:
    rng = np.random.default_rng(seed)
    values = [value for second in timeline(traffic, phases, RATE, start_ms, rng) for value in second]
    produce(run.bootstrap, run.predictions, values)


def alerts_until(run: DriftRun, done: Any, child: Child, timeout_s: float = 60.0) -> list[dict[str, Any]]:
    def until(alerts: list[dict[str, Any]]) -> bool:
        assert child.alive, child.log_tail()
        return bool(done(alerts))

    return read_topic(run.bootstrap, run.alerts, until, timeout_s=timeout_s)


def resolved(subject: str) -> Any:
    return lambda alerts: any(a["status"] == "resolved" and a["subject"] == subject for a in alerts)


def at(seconds: float) -> int:
    return START_MS + round(seconds * 1000)


def wait_for(condition: Any, timeout_s: float, child: Child) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert child.alive, child.log_tail()
        if condition():
            return
        time.sleep(0.5)
    raise AssertionError(f"condition not met in {timeout_s}s\n{child.log_tail()}")


def test_a_shifted_feature_fires_within_the_window_and_resolves(
    run: DriftRun, synth: tuple[ModelMetadata, Traffic], started: list[Child]
) -> None:
    _meta, traffic = synth
    send(run, traffic, [Phase(40), Phase(25, {"score": 1.0}), Phase(40)])
    started.append(run.start())

    alerts = alerts_until(run, resolved("score"), started[0])

    assert alerts, started[0].log_tail()
    assert all(a["window_end_ms"] > at(40) for a in alerts), "alert on undrifted traffic"
    features = {a["subject"] for a in alerts if a["subject_kind"] == "feature"}
    assert features == {"score"}
    first = min((a for a in alerts if a["status"] == "firing"), key=lambda a: a["window_end_ms"])
    assert first["subject"] == "score" and first["window_end_ms"] - at(40) <= 10_000
    assert {"model", "version", "statistic", "value", "threshold", "severity", "sample_count"} <= first.keys()
    fired = {a["alert_id"] for a in alerts if a["status"] == "firing" and a["subject"] == "score"}
    cleared = {a["alert_id"] for a in alerts if a["status"] == "resolved"}
    assert fired and fired <= cleared | _still_clearing(alerts)
    assert all(a["window_end_ms"] > at(65) for a in alerts if a["status"] == "resolved")
    assert len({a["event_id"] for a in alerts}) == len(alerts), "duplicate state changes"


def _still_clearing(alerts: list[dict[str, Any]]) -> set[str]:
    """Alerts of the same episode may resolve a step after the first resolved record was read."""
    return {a["alert_id"] for a in alerts if a["status"] == "firing" and a["statistic"] != "psi"}


def test_state_in_redis_and_prometheus(
    run: DriftRun, synth: tuple[ModelMetadata, Traffic], started: list[Child]
) -> None:
    _meta, traffic = synth
    send(run, traffic, [Phase(15), Phase(20, {"amount": 2.0})])
    child = run.start()
    started.append(child)
    client = redis.Redis.from_url(run.redis_url)

    def firing() -> bool:
        state = read_drift_state(client, run.prefix, MODEL)
        return isinstance(state, dict) and bool(state["versions"]["1"]["firing"])

    wait_for(firing, 60, child)
    state = read_drift_state(client, run.prefix, MODEL)
    assert isinstance(state, dict)
    version = state["versions"]["1"]
    assert version["window"]["sample_count"] >= 500 and version["window"]["sufficient"]
    assert any(f["subject"] == "amount" for f in version["firing"])
    psi = next(s for s in version["statistics"] if s["subject"] == "amount" and s["statistic"] == "psi")
    assert psi["value"] > 0.2 and psi["critical"] == 0.2
    assert 0 < client.ttl(f"{run.prefix}{MODEL}") <= 3600
    text = run.metrics()
    labels = f'kind="feature",model="{MODEL}",statistic="psi",subject="amount",version="1"'
    assert f"rtml_drift_statistic{{{labels}}}" in text
    assert f'rtml_drift_alerts_firing{{model="{MODEL}",severity="critical",version="1"}}' in text
    # The probes beside /metrics (drift/probes.py): the log reader is polling.
    for path, body in (
        ("health", {"status": "ok", "problems": {}}),
        ("ready", {"status": "ready", "reasons": []}),
    ):
        with urllib.request.urlopen(f"http://127.0.0.1:{run.metrics_port}/{path}", timeout=5) as response:
            assert response.status == 200 and orjson.loads(response.read()) == body, path


def window_end(run: DriftRun, client: redis.Redis) -> int:
    """End of the latest evaluated window (the one ending at T needs an event at or after T)."""
    state = read_drift_state(client, run.prefix, MODEL)
    return int(state["versions"]["1"]["window"]["end_ms"]) if isinstance(state, dict) else 0


def test_restarts_keep_windows_and_alert_state(
    run: DriftRun, synth: tuple[ModelMetadata, Traffic], started: list[Child]
) -> None:
    _meta, traffic = synth
    client = redis.Redis.from_url(run.redis_url)
    send(run, traffic, [Phase(30), Phase(20, {"score": 1.0})])
    first = run.start()
    started.append(first)
    fired = alerts_until(run, lambda alerts: any(a["subject"] == "score" for a in alerts), first)
    wait_for(lambda: window_end(run, client) == at(49), 60, first)
    assert first.stop(20) == 0, first.log_tail()

    send(run, traffic, [Phase(2, {"score": 1.0})], start_ms=at(50), seed=2)
    second = run.start()
    started.append(second)
    wait_for(lambda: window_end(run, client) == at(51), 60, second)
    state = read_drift_state(client, run.prefix, MODEL)
    assert isinstance(state, dict)
    assert state["versions"]["1"]["window"]["sample_count"] == 10 * RATE, "window state lost on restart"
    send(run, traffic, [Phase(40)], start_ms=at(52), seed=3)
    alerts = alerts_until(run, resolved("score"), second)
    wait_for(lambda: window_end(run, client) == at(91), 60, second)
    assert second.stop(20) == 0, second.log_tail()

    third = run.start()
    started.append(third)
    send(run, traffic, [Phase(20)], start_ms=at(92), seed=4)
    wait_for(lambda: window_end(run, client) == at(111), 60, third)
    final = read_topic(run.bootstrap, run.alerts, lambda _: False, timeout_s=3)

    score_fired = {a["alert_id"] for a in fired if a["subject"] == "score"}
    assert {a["alert_id"] for a in alerts if a["status"] == "resolved"} >= score_fired
    firing = [a for a in final if a["status"] == "firing"]
    assert len({(a["subject"], a["statistic"]) for a in firing}) == len({a["alert_id"] for a in firing})
    assert len({a["event_id"] for a in final}) == len(final), "an alert fired or resolved twice"
    assert all(a["window_end_ms"] <= at(92) for a in final), "alerts after the episode ended"


JUNK = [
    b"not json",
    b"[1, 2, 3]",
    b'{"model": "drift_synth"}',
    b'{"model": "drift_synth", "version": "1", "features": [1, 2], "predicted_at_ms": 1700000000000}',
    b'{"model": "drift_synth", "version": "1", "features": [1, 2, 3, 4, "x"], "predicted_at_ms": 17000}',
    b'{"model": "drift_synth", "version": "1", "features": [1, 2, 3, 4, 5], "predicted_at_ms": "soon"}',
]
UNKNOWN = b'{"model": "nobody", "version": "1", "features": [1.0], "predicted_at_ms": 1700000000000}'


def test_undrifted_traffic_and_junk_never_alert_or_crash(
    run: DriftRun, synth: tuple[ModelMetadata, Traffic], started: list[Child]
) -> None:
    _meta, traffic = synth
    rng = np.random.default_rng(5)
    seconds = list(timeline(traffic, [Phase(300)], RATE, START_MS, rng))
    values = [value for second in seconds for value in second]
    junk = JUNK * 20 + [UNKNOWN] * 30
    for i, item in enumerate(junk):
        values.insert(i * (len(values) // len(junk)), item)
    produce(run.bootstrap, run.predictions, values)
    child = run.start()
    started.append(child)
    client = redis.Redis.from_url(run.redis_url)

    wait_for(lambda: window_end(run, client) == at(299), 90, child)
    wait_for(
        lambda: committed_lag(run.bootstrap, f"t{run.tag}.drift.reader", run.predictions) == 0, 30, child
    )

    assert read_topic(run.bootstrap, run.alerts, lambda _: False, timeout_s=3) == []
    text = run.metrics()
    assert 'rtml_drift_records_total{result="bad_payload"} 120.0' in text
    assert 'rtml_drift_records_total{result="unknown_model"} 30.0' in text
    assert f'rtml_drift_records_total{{result="accepted"}} {300 * RATE}.0' in text
    evaluations = f'rtml_drift_evaluations_total{{model="{MODEL}",verdict="sufficient",version="1"}}'
    assert evaluations in text
