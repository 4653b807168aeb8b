"""Prometheus metrics of a worker process."""

from __future__ import annotations

from typing import get_args

from prometheus_client import Counter, Gauge, Histogram

from runtime.fleet import ServedRows
from runtime.metric_series import remove_series
from schemas.messages import DeadLetterReason

SERVED = ServedRows()
"""Rows answered per model, version and route, for the fleet heartbeat (runtime/fleet.py)."""

MESSAGES = Counter("rtml_worker_messages_total", "Request messages consumed", ["model", "outcome"])
ROWS = Counter(
    "rtml_worker_rows_total",
    "Rows predicted, by version and route (default, split, pinned, canary, shadow)",
    ["model", "version", "source", "route"],
)
SHADOW_ERRORS = Counter(
    "rtml_worker_shadow_errors_total", "Mirrored requests a shadow version failed on", ["model", "version"]
)
CACHE = Counter(
    "rtml_worker_cache_total", "Cache lookups by model, version and result", ["model", "version", "result"]
)
CACHE_ERRORS = Counter("rtml_worker_cache_errors_total", "Redis failures (served uncached)", ["operation"])
DEAD_LETTERS = Counter("rtml_worker_dead_letters_total", "Messages dead-lettered", ["model", "reason"])
BATCH_ROWS = Histogram(
    "rtml_worker_batch_rows",
    "Rows per ONNX Runtime call",
    ["model"],
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024),
)
INFERENCE_SECONDS = Histogram(
    "rtml_worker_inference_seconds",
    "ONNX Runtime time per batch",
    ["model"],
    buckets=(0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1),
)
BATCH_SECONDS = Histogram(
    "rtml_worker_batch_seconds",
    "Time to serve one consumed batch, decode to durable log",
    ["model"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
)
REPLY_ERRORS = Counter("rtml_worker_reply_errors_total", "Replies that could not be delivered", [])
REDELIVERIES = Counter("rtml_worker_rewinds_total", "Batches re-read after a failed durable write", ["model"])
CONSUMER_LAG = Gauge(
    "rtml_worker_consumer_lag",
    "Requests in a partition this worker has not taken yet: high watermark minus the consumer's "
    "position (librdkafka statistics, refreshed every statistics.interval.ms)",
    ["model", "partition"],
)
ASSIGNED_PARTITIONS = Gauge(
    "rtml_worker_assigned_partitions",
    "Request-topic partitions this worker's consumer holds (0: in the group but given none)",
    ["model"],
)
STATS_TIMESTAMP = Gauge(
    "rtml_worker_consumer_stats_timestamp_seconds",
    "When the consumer's lag was last refreshed (Unix time)",
    ["model"],
)

BY_VERSION = (
    (ROWS, ("model", "version", "source", "route")),
    (SHADOW_ERRORS, ("model", "version")),
    (CACHE, ("model", "version", "result")),
)
"""Series labelled with a model version: removed when this worker unloads the version."""
BY_MODEL = (
    (CONSUMER_LAG, ("model", "partition")),
    (ASSIGNED_PARTITIONS, ("model",)),
    (STATS_TIMESTAMP, ("model",)),
)
"""Series of a model's consumer: removed when its loop stops (a stopped loop reports no lag)."""


def start_model(model: str) -> None:
    """Export a model's error counters at 0 from the start: Prometheus's ``increase``/``rate``
    cannot see the first event of a series that appears with it (the alert rules rely on them)."""
    for reason in get_args(DeadLetterReason):
        DEAD_LETTERS.labels(model, reason)
    REDELIVERIES.labels(model)
    MESSAGES.labels(model, "served")


def forget_version(model: str, version: str) -> None:
    """Stop exporting a version this worker no longer serves (retired, or dropped from the registry)."""
    for metric, labelnames in BY_VERSION:
        remove_series(metric, labelnames, model=model, version=version)


def forget_consumer(model: str) -> None:
    for metric, labelnames in BY_MODEL:
        remove_series(metric, labelnames, model=model)
