"""Prometheus metrics of a worker process."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

from runtime.fleet import ServedRows

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
