"""Scenario (d): direct Kafka producers, predictions per second reaching the predictions topic.

Request messages (no ``reply_to``) are encoded up front, produced as fast as a
confluent-kafka Producer takes them, and served by the running workers. The
workers' ``rtml_worker_rows_total`` tells when they are done; then the
predictions topic is read from the offsets it had before producing, and the
rate is the records counted over the span of their timestamps (first -> last,
the log producer's CreateTime). A short pilot run sizes N so the measured run
takes about ``target_s`` seconds, bounded by ``max_predictions``.
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import orjson
from confluent_kafka import Consumer, Producer, TopicPartition

from bench.machine import CpuProbe
from bench.observe import Snapshot, mean_batch_rows, worker_dead_letters, worker_rows
from schemas.messages import PredictionRecord
from schemas.model_metadata import ModelMetadata

PILOT_PREDICTIONS = 4000
MIN_PREDICTIONS = 5000
SIZING_ROUNDS = 2
ENCODE_CHUNK = 4096


@dataclass(frozen=True)
class DirectResult:
    model: str
    rows_per_message: int
    messages: int
    predictions_expected: int
    predictions_seen: int
    produce_s: float
    """Time to hand every message to the producer and flush it."""
    span_s: float
    """First -> last prediction record timestamp."""
    predictions_per_s: float
    end_to_end_per_s: float
    """Predictions over first produce -> last record (includes producing)."""
    mean_batch_rows: float | None
    dead_letters: int
    """Request messages the workers dead-lettered (rtml_worker_dead_letters_total delta)."""
    messages_seen: int
    """Request ids with a prediction record for each of their rows (records are keyed by request id)."""
    unaccounted: int
    """Messages neither seen on the predictions topic nor dead-lettered (0 = every request accounted)."""
    complete: bool
    other_cpu_share: float
    """CPU taken by processes other than the bench meanwhile, share of the whole machine."""
    cpu_ms_per_prediction: float | None
    """CPU of gateway + workers + broker + Redis from first produce to the last row served, per
    prediction seen (the bench's producer and reader are not counted)."""
    cpu: dict[str, Any] | None
    """:meth:`bench.machine.CpuUsage.per_unit` of that CPU, per prediction, by process."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class DirectTarget:
    """Where to produce, where predictions land, and how to read the workers' progress."""

    bootstrap: str
    request_topic: str
    predictions_topic: str
    snapshot: Callable[[], Snapshot]
    probe: CpuProbe


def encode_requests(meta: ModelMetadata, messages: int, rows: int, prefix: str, seed: int) -> list[bytes]:
    """``messages`` PredictRequest JSON values of ``rows`` unique rows each, drawn around the
    model's training baseline (mean, std per feature), rounded to 4 decimals."""
    rng = np.random.default_rng(seed)
    mean, std = feature_stats(meta)
    out: list[bytes] = []
    for start in range(0, messages, ENCODE_CHUNK):
        count = min(ENCODE_CHUNK, messages - start)
        block = np.round(rng.normal(mean, std, size=(count, rows, meta.n_features)), 4)
        for offset in range(count):
            out.append(
                orjson.dumps(
                    {
                        "schema_version": 1,
                        "request_id": f"{prefix}{start + offset}",
                        "model": meta.name,
                        "features": block[offset],
                    },
                    option=orjson.OPT_SERIALIZE_NUMPY,
                )
            )
    return out


def feature_stats(meta: ModelMetadata) -> tuple[np.ndarray, np.ndarray]:
    if meta.baseline is None:
        return np.zeros(meta.n_features), np.ones(meta.n_features)
    stats = [meta.baseline.features[name] for name in meta.feature_names]
    return np.array([s.mean for s in stats]), np.array([max(s.std, 1e-3) for s in stats])


def produce_all(bootstrap: str, topic: str, values: list[bytes]) -> float:
    """Produce every value as fast as the client takes them; returns seconds until flushed.

    Each message is keyed (by its index), as a producer of events keys them by entity: the hash
    partitioner spreads them evenly over the partitions. Unkeyed, librdkafka's sticky partitioner
    sends each whole batch (thousands of messages in a burst like this one) to one partition, so
    one worker gets up to twice its share and the measured rate is that worker's alone."""
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "linger.ms": 5,
            "batch.num.messages": 10000,
            "queue.buffering.max.messages": 1_000_000,
            "queue.buffering.max.kbytes": 1_048_576,
            "compression.type": "lz4",
            "acks": 1,
        }
    )
    started = time.monotonic()
    for index, value in enumerate(values):
        key = b"%d" % index
        while True:
            try:
                producer.produce(topic, value, key)
                break
            except BufferError:
                producer.poll(0.01)
    if producer.flush(60) != 0:
        raise RuntimeError(f"could not deliver every request message to {topic}")
    return time.monotonic() - started


def end_offsets(bootstrap: str, topic: str) -> list[TopicPartition]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-{uuid.uuid4().hex}"})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        result = []
        for partition in sorted(partitions):
            _low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
            result.append(TopicPartition(topic, partition, high))
        return result
    finally:
        consumer.close()


@dataclass
class _Seen:
    count: int = 0
    first_ms: int | None = None
    last_ms: int | None = None
    sample: bytes | None = None
    keys: dict[bytes, int] = field(default_factory=dict)
    """Records per request id."""

    def add(self, key: bytes, timestamp_ms: int, value: bytes | None) -> None:
        self.count += 1
        self.keys[key] = self.keys.get(key, 0) + 1
        self.first_ms = timestamp_ms if self.first_ms is None else min(self.first_ms, timestamp_ms)
        self.last_ms = timestamp_ms if self.last_ms is None else max(self.last_ms, timestamp_ms)
        if self.sample is None:
            self.sample = value


def read_predictions(
    bootstrap: str, start: list[TopicPartition], key_prefix: bytes, expected: int, timeout_s: float
) -> _Seen:
    """Count records keyed ``key_prefix*`` from ``start`` until ``expected`` are seen (or the timeout)."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bench-reader-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "fetch.max.bytes": 52_428_800,
        }
    )
    consumer.assign(start)
    seen, deadline = _Seen(), time.monotonic() + timeout_s
    try:
        while seen.count < expected and time.monotonic() < deadline:
            for message in consumer.consume(10000, 0.5):
                key = message.key()
                if message.error() is None and key is not None and key.startswith(key_prefix):
                    seen.add(key, message.timestamp()[1], message.value())
    finally:
        consumer.close()
    return seen


def wait_for_rows(
    snapshot: Callable[[], Snapshot],
    model: str,
    before: Snapshot,
    rows: int,
    timeout_s: float,
    rows_per_message: int = 1,
) -> Snapshot:
    """Poll worker metrics until ``rows`` more kafka-sourced rows are served or dead-lettered
    (dead letters count messages: ``rows_per_message`` rows each)."""
    deadline = time.monotonic() + timeout_s
    while True:
        now = snapshot()
        served = worker_rows(now, model, "kafka") - worker_rows(before, model, "kafka")
        dead = worker_dead_letters(now, model) - worker_dead_letters(before, model)
        if (now.complete and served + dead * rows_per_message >= rows) or time.monotonic() >= deadline:
            return now
        time.sleep(0.25)


def complete_snapshot(snapshot: Callable[[], Snapshot], attempts: int = 5) -> Snapshot:
    """A snapshot every worker answered (the last try's, incomplete, after ``attempts``)."""
    for _ in range(attempts - 1):
        taken = snapshot()
        if taken.complete:
            return taken
    return snapshot()


def measure(
    target: DirectTarget, meta: ModelMetadata, messages: int, rows: int, timeout_s: float
) -> DirectResult:
    prefix = f"bench-{uuid.uuid4().hex[:8]}-"
    values = encode_requests(meta, messages, rows, prefix, seed=uuid.uuid4().int & 0xFFFFFFFF)
    start = end_offsets(target.bootstrap, target.predictions_topic)
    before = complete_snapshot(target.snapshot)
    began_ms = time.time() * 1000
    cpu_before = target.probe.read()
    produce_s = produce_all(target.bootstrap, target.request_topic, values)
    expected = messages * rows
    after = wait_for_rows(target.snapshot, meta.name, before, expected, timeout_s, rows)
    cpu_after = target.probe.read()
    other_cpu_share = CpuProbe.other_share(cpu_before, cpu_after)
    dead = int(worker_dead_letters(after, meta.name) - worker_dead_letters(before, meta.name))
    wanted = max(1, expected - dead * rows)
    seen = read_predictions(target.bootstrap, start, prefix.encode(), wanted, timeout_s=30)
    _check_sample(seen.sample, meta.name)
    span_s = ((seen.last_ms or 0) - (seen.first_ms or 0)) / 1000
    cpu = CpuProbe.usage(cpu_before, cpu_after).per_unit(seen.count, "prediction")
    messages_seen = sum(1 for count in seen.keys.values() if count >= rows)
    return DirectResult(
        model=meta.name,
        rows_per_message=rows,
        messages=messages,
        predictions_expected=expected,
        predictions_seen=seen.count,
        produce_s=produce_s,
        span_s=span_s,
        predictions_per_s=(seen.count - 1) / span_s if span_s > 0 else 0.0,
        end_to_end_per_s=seen.count / max(1e-3, ((seen.last_ms or 0) - began_ms) / 1000),
        mean_batch_rows=mean_batch_rows(before, after, meta.name),
        dead_letters=dead,
        messages_seen=messages_seen,
        unaccounted=messages - messages_seen - dead,
        complete=seen.count >= expected,
        other_cpu_share=other_cpu_share,
        cpu_ms_per_prediction=cpu["ms_per_unit"],
        cpu=cpu,
    )


def _check_sample(sample: bytes | None, model: str) -> None:
    if sample is None:
        raise RuntimeError(f"no prediction record of model {model} reached the predictions topic")
    record = PredictionRecord.model_validate_json(sample)
    if record.model != model or record.source != "kafka":
        raise RuntimeError(f"unexpected prediction record: {record}")


def run_direct(
    target: DirectTarget,
    meta: ModelMetadata,
    rows: int,
    target_s: float,
    max_predictions: int,
    repeat: int = 1,
) -> list[DirectResult]:
    """A pilot sizes N for about ``target_s`` seconds of work; the run is sized again once if its
    span falls short of 70% of ``target_s`` and N is below ``max_predictions``. ``repeat - 1`` more
    runs with the same N follow; returns every measured run (the pilot is not one)."""
    result = measure(target, meta, max(1, PILOT_PREDICTIONS // rows), rows, timeout_s=30)
    # The pilot is too short for its first->last span to mean much: size from its end-to-end rate
    # (which includes producing, so it errs low); later rounds from the measured rate.
    rate = max(result.end_to_end_per_s, 1.0)
    for _ in range(SIZING_ROUNDS):
        predictions = min(max_predictions, max(MIN_PREDICTIONS, int(rate * target_s * 1.1)))
        messages = max(1, math.ceil(predictions / rows))
        timeout_s = min(120.0, max(20.0, 4 * messages * rows / rate))
        result = measure(target, meta, messages, rows, timeout_s)
        if result.span_s >= 0.7 * target_s or predictions >= max_predictions:
            break
        rate = max(result.predictions_per_s, 1.0)
    results = [result]
    for _ in range(repeat - 1):
        results.append(measure(target, meta, result.messages, rows, timeout_s))
    return results


def median_run(results: list[DirectResult]) -> DirectResult:
    """The run with the median rate (the lower middle one for an even count)."""
    ranked = sorted(results, key=lambda r: r.predictions_per_s)
    return ranked[(len(ranked) - 1) // 2]
