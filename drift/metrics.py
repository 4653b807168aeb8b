"""Prometheus metrics of the drift app (``drift.metrics_port``), for dashboards and Alertmanager.

``rtml_drift_statistic`` holds the latest window's value of every statistic, so
Alertmanager rules can replace the app's own alerts, e.g.
``rtml_drift_statistic{statistic="psi"} > 0.2``; ``rtml_drift_alerts_firing``
counts the app's firing alerts per model version and severity.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from drift.alerting import AlertState
from drift.evaluate import WindowReport
from schemas.drift import DriftAlert

RECORDS = Counter(
    "rtml_drift_records_total",
    "Prediction-log records read: accepted, unknown_model, no_baseline, disabled, bad_payload, late",
    ["result"],
)
BATCHES = Counter("rtml_drift_batches_total", "Prediction-log batches aggregated", [])
BATCH_SECONDS = Histogram(
    "rtml_drift_batch_seconds",
    "Time to decode and aggregate one batch of prediction-log records",
    [],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
PARTIALS = Counter("rtml_drift_partials_total", "Partial aggregates processed, by outcome", ["result"])
WATERMARK = Gauge(
    "rtml_drift_watermark_timestamp_seconds", "Event-time low watermark of the log reader (Unix time)"
)
STATISTIC = Gauge(
    "rtml_drift_statistic",
    "Latest window value of a drift statistic",
    ["model", "version", "subject", "kind", "statistic"],
)
WINDOW_SAMPLES = Gauge("rtml_drift_window_samples", "Records in the latest window", ["model", "version"])
WINDOW_END = Gauge(
    "rtml_drift_window_end_timestamp_seconds",
    "Event-time end of the latest evaluated window (Unix time)",
    ["model", "version"],
)
EVALUATIONS = Counter(
    "rtml_drift_evaluations_total", "Windows evaluated, by verdict", ["model", "version", "verdict"]
)
FIRING = Gauge("rtml_drift_alerts_firing", "Drift alerts currently firing", ["model", "version", "severity"])
ALERTS = Counter(
    "rtml_drift_alerts_total", "Alert records emitted", ["model", "version", "status", "severity"]
)
ERRORS = Counter("rtml_drift_errors_total", "Failures that were logged and skipped", ["stage"])


def observe_report(report: WindowReport) -> None:
    labels = {"model": report.model, "version": report.version}
    verdict = "sufficient" if report.sufficient else "insufficient"
    EVALUATIONS.labels(verdict=verdict, **labels).inc()
    WINDOW_SAMPLES.labels(**labels).set(report.sample_count)
    WINDOW_END.labels(**labels).set(report.end_ms / 1000)
    for obs in report.observations:
        STATISTIC.labels(subject=obs.subject, kind=obs.kind, statistic=obs.statistic, **labels).set(obs.value)


def observe_alerts(model: str, version: str, alerts: list[DriftAlert], firing: dict[str, AlertState]) -> None:
    for alert in alerts:
        ALERTS.labels(model, version, alert.status, alert.severity).inc()
    for severity in ("warning", "critical"):
        count = sum(1 for state in firing.values() if state.severity == severity)
        FIRING.labels(model, version, severity).set(count)
