"""Prometheus metrics of the gateway."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from runtime.fleet import ServedRows
from runtime.metric_series import Series, remove_series

REQUESTS = Counter(
    "rtml_gateway_requests_total", "Prediction requests answered", ["endpoint", "model", "version", "status"]
)
LATENCY = Histogram(
    "rtml_gateway_request_seconds",
    "Time to answer a prediction request",
    ["endpoint", "model"],
    buckets=(0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
CACHE = Counter(
    "rtml_gateway_cache_total",
    "Gateway cache lookups by model, version and result (skipped: left to the worker, gateway/hit_rate.py)",
    ["model", "version", "result"],
)
CACHE_ERRORS = Counter("rtml_gateway_cache_errors_total", "Redis failures (served uncached)", [])
IN_FLIGHT = Gauge("rtml_gateway_in_flight_requests", "Requests waiting for a worker reply")
TIMEOUTS = Counter(
    "rtml_gateway_timeouts_total", "Requests answered 504 (no reply by the deadline)", ["model"]
)
UNAVAILABLE = Counter(
    "rtml_gateway_unavailable_total", "Requests answered 503 (Kafka unreachable)", ["model"]
)
LATE_REPLIES = Counter(
    "rtml_gateway_late_replies_total", "Replies with no waiting request (late or unknown)", []
)
LOG_ERRORS = Counter(
    "rtml_gateway_log_errors_total", "Prediction-log records the gateway failed to write", []
)
REPLY_HEARTBEAT_ERRORS = Counter(
    "rtml_gateway_reply_heartbeat_errors_total",
    "Heartbeats of this gateway's reply topic that failed (others may take it for gone)",
    [],
)
REPLY_TOPICS_DELETED = Counter(
    "rtml_gateway_reply_topics_deleted_total", "Orphaned reply topics of gone gateways deleted here", []
)

REQUEST_SERIES = Series(REQUESTS)
LATENCY_SERIES = Series(LATENCY)
CACHE_SERIES = Series(CACHE)
"""The per-request series, looked up once (runtime/metric_series.py)."""

SERVED = ServedRows()
"""Cache hits answered here, per model, version and route, for the fleet heartbeat (the workers
count what they answer)."""


def start_model(model: str) -> None:
    """Export a model's error counters at 0 once it is known: Prometheus's ``increase``/``rate``
    cannot see the first event of a series that appears with it (the alert rules rely on them)."""
    TIMEOUTS.labels(model)
    UNAVAILABLE.labels(model)


def forget_version(model: str, version: str) -> None:
    """Stop exporting a version the gateway no longer serves (retired or gone from the registry)."""
    remove_series(REQUESTS, ("endpoint", "model", "version", "status"), model=model, version=version)
    remove_series(CACHE, ("model", "version", "result"), model=model, version=version)
    REQUEST_SERIES.forget()
    CACHE_SERIES.forget()
