"""Drift detector throughput: can ``rtml drift`` keep up with the prediction log at full rate?

Two measurements against a real broker, on a private prediction-log topic:

1. **drain**: ``records`` PredictionRecords of the widest demo model
   (fraud_detector, 30 features; a synthetic 5-feature model if it is not
   registered) are written first; then ``rtml drift`` starts and the rate is the
   records divided by the time from the reader group's first commit to its
   last (lag 0); start-up is not counted.
2. **steady**: records are produced at ``rate``/s for ``seconds`` while the app
   runs; the reader group's lag is sampled each second and must stay flat
   (bounded, not growing) and drain to 0 at the end.

Plus the false-positive measurement without Kafka (:func:`false_positives`):
undrifted traffic from the synthetic model's data-generating process through the
detector at test (10 s / 1 s, min 500) and default (5 min / 30 s) windows.

    .venv/bin/python -m bench.drift_throughput   # prints the JSON result
"""

from __future__ import annotations

import json
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from confluent_kafka import Producer

from bench.drift_traffic import Phase, Replay, timeline
from bench.synthetic_model import synthetic_model
from drift.config import Catalog
from drift.evaluate import threshold_of
from rtml.stack import Stack
from runtime.kafka import TopicSpec, ensure_topics
from runtime.kafka import committed_lag as kafka_lag
from runtime.registry import ModelRegistry
from runtime.settings import DriftSettings, KafkaSettings
from schemas.model_metadata import ModelMetadata

PARTITIONS = 4


def _model(registry_root: Path, scratch: Path) -> ModelMetadata:
    registry = ModelRegistry(registry_root)
    if "fraud_detector" in registry.list_models():
        return registry.metadata("fraud_detector", registry.latest("fraud_detector"))
    meta, _traffic = synthetic_model("drift_synth")
    (scratch / meta.name / meta.version).mkdir(parents=True)
    (scratch / meta.name / meta.version / "metadata.json").write_text(meta.to_json())
    return meta


def _encode(meta: ModelMetadata, n: int, start_ms: int, per_ms: float, seed: int) -> list[bytes]:
    """Rows resampled around the baseline means (values do not matter for throughput)."""
    rng = np.random.default_rng(seed)
    assert meta.baseline is not None
    means = np.array([meta.baseline.features[f].mean for f in meta.feature_names])
    stds = np.array([meta.baseline.features[f].std for f in meta.feature_names])
    rows = (means + stds * rng.normal(size=(n, meta.n_features))).tolist()
    labels = (meta.classes or [0])[0]
    head = {"schema_version": 1, "row": 0, "model": meta.name, "version": meta.version, "prediction": labels}
    tail = {"from_cache": False, "source": "kafka", "served_by": "worker", "probabilities": None}
    return [
        orjson.dumps(
            {**head, **tail, "request_id": f"b{seed}-{i}", "features": row, "probability": 0.9,
             "predicted_at_ms": start_ms + int(i / per_ms)}
        )
        for i, row in enumerate(rows)
    ]  # fmt: skip


def _producer(bootstrap: str) -> Producer:
    return Producer(
        {"bootstrap.servers": bootstrap, "linger.ms": 5, "compression.type": "lz4", "acks": "all",
         "queue.buffering.max.messages": 2_000_000, "batch.size": 1_000_000}
    )  # fmt: skip


def _send(producer: Producer, topic: str, values: list[bytes]) -> None:
    for value in values:
        while True:
            try:
                producer.produce(topic, value)
                break
            except BufferError:
                producer.poll(0.01)
    producer.poll(0)


def _env(bootstrap: str, registry: Path, state: Path, tag: str) -> dict[str, str]:
    return {
        "RTML_KAFKA__BOOTSTRAP_SERVERS": bootstrap,
        "RTML_REDIS__ENABLED": "false",
        "RTML_REGISTRY__ROOT": str(registry),
        "RTML_INFRA__STATE_DIR": str(state),
        "RTML_KAFKA__PREDICTIONS_TOPIC": f"b{tag}.predictions",
        "RTML_KAFKA__LOG_PARTITIONS": str(PARTITIONS),
        "RTML_DRIFT__APP_ID": f"b{tag}-drift",
        "RTML_DRIFT__READER_GROUP": f"b{tag}.drift.reader",
        "RTML_DRIFT__PARTIALS_TOPIC": f"b{tag}.drift.partials",
        "RTML_DRIFT__ALERTS_TOPIC": f"b{tag}.drift.alerts",
        "RTML_DRIFT__DEAD_LETTER_TOPIC": f"b{tag}.drift.dlq",
        "RTML_LOG_LEVEL": "WARNING",
    }


def committed_lag(bootstrap: str, group: str, topic: str) -> int:
    """Messages in ``topic`` not yet committed by ``group`` (all partitions)."""
    return kafka_lag(KafkaSettings(bootstrap_servers=bootstrap), group, topic)


def _wait_drained(bootstrap: str, group: str, topic: str, timeout_s: float) -> tuple[float | None, float]:
    """(time of the first commit, time lag reached 0), monotonic seconds."""
    first, deadline = None, time.monotonic() + timeout_s
    total = committed_lag(bootstrap, group, topic)
    while time.monotonic() < deadline:
        lag = committed_lag(bootstrap, group, topic)
        if first is None and lag < total:
            first = time.monotonic()
        if lag == 0:
            return first, time.monotonic()
        time.sleep(0.2)
    raise TimeoutError(f"drift reader still {lag} records behind after {timeout_s}s")


def run(
    bootstrap: str,
    registry_root: Path,
    out_dir: Path,
    records: int = 200_000,
    rate: int = 20_000,
    seconds: int = 30,
) -> dict[str, Any]:
    """Drain and steady-rate measurements; the drift app's log goes to ``out_dir``."""
    tag = uuid.uuid4().hex[:8]
    scratch = Path(tempfile.mkdtemp(prefix="drift-bench-"))
    meta = _model(registry_root, scratch / "registry")
    registry = registry_root if meta.name == "fraud_detector" else scratch / "registry"
    env = _env(bootstrap, registry, scratch / "state", tag)
    topic, group = env["RTML_KAFKA__PREDICTIONS_TOPIC"], env["RTML_DRIFT__READER_GROUP"]
    ensure_topics(KafkaSettings(bootstrap_servers=bootstrap), [TopicSpec(topic, PARTITIONS, "request id")])
    producer, start_ms = _producer(bootstrap), 1_700_000_000_000
    _send(producer, topic, _encode(meta, records, start_ms, per_ms=rate / 1000, seed=1))
    assert producer.flush(120) == 0
    stack = Stack(env=env, log_dir=out_dir)
    child = stack.spawn(f"drift-bench-{tag}", ["drift"])
    try:
        first, done = _wait_drained(bootstrap, group, topic, timeout_s=300)
        drain_rate = records / (done - (first or done) + 1e-9) if first else None
        steady = _steady(
            producer, topic, group, bootstrap, meta, rate, seconds, start_ms + records * 1000 // rate
        )
        alive = child.alive
    finally:
        stack.stop_all()
    return {
        "model": meta.name,
        "features": meta.n_features,
        "partitions": PARTITIONS,
        "drain": {"records": records, "records_per_s": round(drain_rate or 0)},
        "steady": steady,
        "drift_app_alive": alive,
    }


def _steady(
    producer: Producer,
    topic: str,
    group: str,
    bootstrap: str,
    meta: ModelMetadata,
    rate: int,
    seconds: int,
    t0: int,
) -> dict[str, Any]:
    encoded = [_encode(meta, rate, t0 + s * 1000, per_ms=rate / 1000, seed=100 + s) for s in range(seconds)]
    lags, sent, started = [], 0, time.monotonic()
    for second, values in enumerate(encoded):
        _send(producer, topic, values)
        sent += len(values)
        producer.poll(0)
        pause = started + second + 1 - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        lags.append(committed_lag(bootstrap, group, topic))
    elapsed = time.monotonic() - started
    producer.flush(60)
    _first, done = _wait_drained(bootstrap, group, topic, timeout_s=120)
    return {
        "target_records_per_s": rate,
        "offered_records_per_s": round(sent / elapsed),
        "seconds": seconds,
        "lag_samples": lags,
        "max_lag": max(lags),
        "lag_last_third_mean": round(float(np.mean(lags[-max(1, seconds // 3) :]))),
        "drained_after_s": round(done - started - elapsed, 1),
    }


def false_positives(hours: float = 3.0, test_minutes: float = 50.0) -> dict[str, Any]:
    """Alerts and over-threshold observations on undrifted traffic, without Kafka."""
    out: dict[str, Any] = {}
    small = DriftSettings(window_s=10, step_s=1, allowed_lateness_s=0)
    cases = {
        "test_windows_10s_1s_min_samples": (small, 50, test_minutes * 60),
        "default_windows_5min_30s": (DriftSettings(allowed_lateness_s=0), 20, hours * 3600),
    }
    for task in ("classification", "regression"):
        meta, traffic = synthetic_model(f"fpr_{task}", task=task)  # type: ignore[arg-type]
        for name, (drift, rate, secs) in cases.items():
            catalog = Catalog.build({meta.name: {"1": meta}}, drift)
            plan = catalog.lookup(meta.name, "1")
            assert not isinstance(plan, str)
            run_ = Replay(catalog).run(
                timeline(traffic, [Phase(secs)], rate, 0, np.random.default_rng(3)), per_batch=10
            )
            observed = [
                o for r in run_.reports if r.sufficient for o in r.observations if o.p_adjusted is not None
            ]
            over = [o for o in observed if o.magnitude >= (threshold_of(plan, o.statistic) or _never).warning]
            out[f"{task}/{name}"] = {
                "windows": sum(r.sufficient for r in run_.reports),
                "samples_per_window": rate * drift.window_s,
                "tests": len(observed),
                "over_threshold": len(over),
                "over_threshold_and_significant": sum(
                    1 for o in over if (o.p_adjusted or 1) <= drift.family_alpha
                ),
                "raw_p_below_alpha": sum(1 for o in observed if (o.p_value or 1) <= drift.family_alpha),
                "alerts": len(run_.alerts),
            }
    return out


class _Never:
    warning = float("inf")


_never = _Never()


def main() -> None:
    import os

    from bench.paths import REPO_ROOT
    from bench.services import Infra
    from runtime.settings import load_settings

    out = REPO_ROOT / "bench" / "out"
    # The broker of KAFKA_BOOTSTRAP_SERVERS, else this checkout's local one, started here if it
    # is not running (``make bench`` runs this after bench.run, which stops what it started).
    settings = load_settings()
    services = Infra.up(settings) if not os.environ.get("KAFKA_BOOTSTRAP_SERVERS") else None
    try:
        bootstrap = services.bootstrap if services else os.environ["KAFKA_BOOTSTRAP_SERVERS"]
        result = {
            "throughput": run(bootstrap, REPO_ROOT / "models", out),
            "false_positives": false_positives(),
        }
    finally:
        if services is not None:
            services.down(settings)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
