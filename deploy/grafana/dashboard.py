"""The rtml Grafana dashboard, generated from code.

``python -m deploy.grafana.dashboard`` rewrites ``deploy/grafana/dashboards/rtml.json``;
``--check`` exits 1 if the committed file is stale (tests/unit/test_observability.py runs the
same check). Edit the panels here, never the JSON. Grafana loads the file through the dashboard
provider in ``deploy/grafana/provisioning/dashboards/rtml.yml``.

Rows: traffic, latency, cache, workers and lag, drift, errors. Every query reads a metric that
``gateway/metrics.py``, ``workers/metrics.py`` or ``drift/metrics.py`` defines (or ``up``).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

OUTPUT = Path(__file__).resolve().parent / "dashboards" / "rtml.json"
UID = "rtml-overview"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
RATE = "$__rate_interval"
WIDTH = 24


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str = ""


@dataclass(frozen=True)
class Panel:
    title: str
    queries: tuple[Query, ...]
    unit: str = "short"
    description: str = ""
    kind: str = "timeseries"
    width: int = 8
    height: int = 8
    stack: bool = False
    thresholds: tuple[tuple[float, str], ...] = ()


@dataclass(frozen=True)
class Row:
    title: str
    panels: tuple[Panel, ...] = field(default_factory=tuple)


def q(expr: str, legend: str = "") -> Query:
    return Query(expr, legend)


def _model(selector: str = "") -> str:
    """The label filter of the dashboard's model variable, plus ``selector``."""
    inner = 'model=~"$model"' + (f",{selector}" if selector else "")
    return "{" + inner + "}"


SINGLE = _model('endpoint=~"predict|v2_infer"')
HITS = _model('result="hit"')
LOOKED_UP = _model('result!="skipped"')
"""Lookups made (a skipped one is left to the worker under load: gateway/hit_rate.py)."""
PSI = _model('statistic="psi"')
SERVER_ERRORS = _model('status=~"5.."')


ROWS: tuple[Row, ...] = (
    Row(
        "Traffic",
        (
            Panel(
                "Requests per second by model",
                (q(f"sum by (model) (rate(rtml_gateway_requests_total{_model()}[{RATE}]))", "{{model}}"),),
                unit="reqps",
                stack=True,
            ),
            Panel(
                "Requests per second by status",
                (q(f"sum by (status) (rate(rtml_gateway_requests_total{_model()}[{RATE}]))", "{{status}}"),),
                unit="reqps",
                stack=True,
            ),
            Panel(
                "Rows predicted by version and route",
                (
                    q(
                        f"sum by (model, version, route) (rate(rtml_worker_rows_total{_model()}[{RATE}]))",
                        "{{model}} v{{version}} {{route}}",
                    ),
                ),
                unit="rowsps",
                description="Worker-side predictions (cache misses and direct Kafka requests), by "
                "the route that chose the version: default, split, pinned, canary, shadow.",
            ),
            Panel(
                "Requests in flight (gateway)",
                (q("sum by (instance) (rtml_gateway_in_flight_requests)", "{{instance}}"),),
                description="Requests waiting for a worker reply; beyond gateway.max_in_flight: 503.",
            ),
            Panel(
                "Request messages consumed",
                (
                    q(
                        f"sum by (model, outcome) (rate(rtml_worker_messages_total{_model()}[{RATE}]))",
                        "{{model}} {{outcome}}",
                    ),
                ),
                unit="reqps",
            ),
        ),
    ),
    Row(
        "Latency",
        (
            Panel(
                "Gateway latency p50 / p99 (single predictions)",
                tuple(
                    q(
                        f"histogram_quantile({quantile}, sum by (model, le) (rate("
                        f"rtml_gateway_request_seconds_bucket{SINGLE}"
                        f"[{RATE}])))",
                        f"{{{{model}}}} p{label}",
                    )
                    for quantile, label in ((0.5, "50"), (0.99, "99"))
                ),
                unit="s",
                thresholds=((0.05, "red"),),
                description="Target: p99 <= 50 ms (alert RtmlLatencyP99OverTarget).",
            ),
            Panel(
                "Gateway latency p99 by endpoint",
                (
                    q(
                        "histogram_quantile(0.99, sum by (endpoint, le) (rate("
                        f"rtml_gateway_request_seconds_bucket{_model()}[{RATE}])))",
                        "{{endpoint}}",
                    ),
                ),
                unit="s",
            ),
            Panel(
                "Worker batch time p99 (decode to durable log)",
                (
                    q(
                        "histogram_quantile(0.99, sum by (model, le) (rate("
                        f"rtml_worker_batch_seconds_bucket{_model()}[{RATE}])))",
                        "{{model}}",
                    ),
                ),
                unit="s",
            ),
            Panel(
                "ONNX Runtime time per call p99",
                (
                    q(
                        "histogram_quantile(0.99, sum by (model, le) (rate("
                        f"rtml_worker_inference_seconds_bucket{_model()}[{RATE}])))",
                        "{{model}}",
                    ),
                ),
                unit="s",
            ),
            Panel(
                "Mean rows per ONNX Runtime call",
                (
                    q(
                        f"sum by (model) (rate(rtml_worker_batch_rows_sum{_model()}[{RATE}])) / "
                        f"sum by (model) (rate(rtml_worker_batch_rows_count{_model()}[{RATE}]))",
                        "{{model}}",
                    ),
                ),
                description="Micro-batching at work: 1 when idle, up to worker.max_batch_rows under load.",
            ),
        ),
    ),
    Row(
        "Cache",
        (
            Panel(
                "Gateway cache hit ratio",
                (
                    q(
                        f"sum by (model) (rate(rtml_gateway_cache_total{HITS}[{RATE}])) / "
                        f"sum by (model) (rate(rtml_gateway_cache_total{LOOKED_UP}[{RATE}]))",
                        "{{model}}",
                    ),
                ),
                unit="percentunit",
            ),
            Panel(
                "Cache lookups by result (gateway, workers)",
                (
                    q(
                        f"sum by (result) (rate(rtml_gateway_cache_total{_model()}[{RATE}]))",
                        "gateway {{result}}",
                    ),
                    q(
                        f"sum by (result) (rate(rtml_worker_cache_total{_model()}[{RATE}]))",
                        "worker {{result}}",
                    ),
                ),
                unit="ops",
            ),
            Panel(
                "Redis failures (served uncached)",
                (
                    q(
                        f"sum by (instance) (rate(rtml_gateway_cache_errors_total[{RATE}]))",
                        "gateway {{instance}}",
                    ),
                    q(
                        f"sum by (instance, operation) (rate(rtml_worker_cache_errors_total[{RATE}]))",
                        "worker {{instance}} {{operation}}",
                    ),
                ),
                unit="ops",
                description="Non-zero: Redis is down or slow (alert RtmlCacheDown); answers stay correct.",
            ),
        ),
    ),
    Row(
        "Workers and lag",
        (
            Panel(
                "Consumer lag by model",
                (q(f"sum by (model) (rtml_worker_consumer_lag{_model()})", "{{model}}"),),
                description="Requests in the topic not yet taken by a worker (high watermark - position).",
            ),
            Panel(
                "Consumer lag by partition",
                (
                    q(
                        f"max by (model, partition, instance) (rtml_worker_consumer_lag{_model()})",
                        "{{model}}/{{partition}} {{instance}}",
                    ),
                ),
            ),
            Panel(
                "Partitions held per worker",
                (
                    q(
                        f"sum by (model, instance) (rtml_worker_assigned_partitions{_model()})",
                        "{{model}} {{instance}}",
                    ),
                ),
                stack=True,
                description="A model whose total drops to nothing has no consumer (RtmlNoWorkerConsuming).",
            ),
            Panel(
                "Seconds since the worker loop last polled",
                (
                    q(
                        "time() - max by (model, instance) "
                        f"(rtml_worker_consumer_stats_timestamp_seconds{_model()})",
                        "{{model}} {{instance}}",
                    ),
                ),
                unit="s",
                thresholds=((60, "red"),),
            ),
            Panel(
                "Processes up",
                (q('sum by (job) (up{job=~"rtml-.*"})', "{{job}}"),),
                kind="stat",
            ),
        ),
    ),
    Row(
        "Drift",
        (
            Panel(
                "Drift alerts firing",
                (
                    q(
                        f"sum by (model, version, severity) (rtml_drift_alerts_firing{_model()})",
                        "{{model}} v{{version}} {{severity}}",
                    ),
                ),
                stack=True,
            ),
            Panel(
                "PSI per feature and output (latest window)",
                (
                    q(
                        f"max by (model, version, subject) (rtml_drift_statistic{PSI})",
                        "{{model}} v{{version}} {{subject}}",
                    ),
                ),
                thresholds=((0.1, "orange"), (0.2, "red")),
            ),
            Panel(
                "Records in the latest window",
                (
                    q(
                        f"max by (model, version) (rtml_drift_window_samples{_model()})",
                        "{{model}} v{{version}}",
                    ),
                ),
                description="Fewer than drift.min_samples (500): the window is not judged.",
            ),
            Panel(
                "Prediction-log records read by result",
                (q(f"sum by (result) (rate(rtml_drift_records_total[{RATE}]))", "{{result}}"),),
                unit="ops",
            ),
            Panel(
                "Drift event-time watermark behind now",
                (q("time() - max(rtml_drift_watermark_timestamp_seconds)", "watermark"),),
                unit="s",
                description="Grows while there is no traffic (event time stands still) or the app is behind.",
            ),
        ),
    ),
    Row(
        "Errors",
        (
            Panel(
                "5xx answers by model and status",
                (
                    q(
                        f"sum by (model, status) (rate(rtml_gateway_requests_total{SERVER_ERRORS}[{RATE}]))",
                        "{{model}} {{status}}",
                    ),
                ),
                unit="reqps",
            ),
            Panel(
                "Timeouts (504) and Kafka unavailable (503)",
                (
                    q(
                        f"sum by (model) (rate(rtml_gateway_timeouts_total{_model()}[{RATE}]))",
                        "504 {{model}}",
                    ),
                    q(
                        f"sum by (model) (rate(rtml_gateway_unavailable_total{_model()}[{RATE}]))",
                        "503 {{model}}",
                    ),
                ),
                unit="reqps",
            ),
            Panel(
                "Dead letters by reason",
                (
                    q(
                        f"sum by (model, reason) (rate(rtml_worker_dead_letters_total{_model()}[{RATE}]))",
                        "{{model}} {{reason}}",
                    ),
                ),
                unit="ops",
            ),
            Panel(
                "Worker delivery problems",
                (
                    q(
                        f"sum by (model) (rate(rtml_worker_rewinds_total{_model()}[{RATE}]))",
                        "rewinds {{model}}",
                    ),
                    q(f"sum(rate(rtml_worker_reply_errors_total[{RATE}]))", "reply errors"),
                    q(
                        f"sum by (model, version) (rate(rtml_worker_shadow_errors_total{_model()}[{RATE}]))",
                        "shadow errors {{model}} v{{version}}",
                    ),
                ),
                unit="ops",
            ),
            Panel(
                "Gateway and drift app problems",
                (
                    q(f"sum(rate(rtml_gateway_late_replies_total[{RATE}]))", "late replies"),
                    q(f"sum(rate(rtml_gateway_log_errors_total[{RATE}]))", "log records lost"),
                    q(f"sum by (stage) (rate(rtml_drift_errors_total[{RATE}]))", "drift {{stage}}"),
                ),
                unit="ops",
            ),
        ),
    ),
)


def _panel_json(panel: Panel, panel_id: int, x: int, y: int) -> dict[str, Any]:
    steps: list[dict[str, Any]] = [{"color": "green", "value": None}]
    steps += [{"color": color, "value": value} for value, color in panel.thresholds]
    custom: dict[str, Any] = {}
    if panel.kind == "timeseries":
        custom = {
            "drawStyle": "line",
            "fillOpacity": 10,
            "lineWidth": 1,
            "showPoints": "never",
            "stacking": {"group": "A", "mode": "normal" if panel.stack else "none"},
            "thresholdsStyle": {"mode": "line" if panel.thresholds else "off"},
        }
    return {
        "id": panel_id,
        "type": panel.kind,
        "title": panel.title,
        "description": panel.description,
        "datasource": DATASOURCE,
        "gridPos": {"h": panel.height, "w": panel.width, "x": x, "y": y},
        "fieldConfig": {
            "defaults": {
                "unit": panel.unit,
                "custom": custom,
                "thresholds": {"mode": "absolute", "steps": steps},
            },
            "overrides": [],
        },
        "options": {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True}}
        if panel.kind == "timeseries"
        else {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False}},
        "targets": [
            {
                "refId": chr(ord("A") + index),
                "datasource": DATASOURCE,
                "expr": query.expr,
                "legendFormat": query.legend,
            }
            for index, query in enumerate(panel.queries)
        ],
    }


def build() -> dict[str, Any]:
    """The dashboard as Grafana's JSON model (schemaVersion 39: Grafana 10 and later)."""
    panels: list[dict[str, Any]] = []
    next_id, y = 1, 0
    for row in ROWS:
        panels.append(
            {
                "id": next_id,
                "type": "row",
                "title": row.title,
                "collapsed": False,
                "gridPos": {"h": 1, "w": WIDTH, "x": 0, "y": y},
                "panels": [],
            }
        )
        next_id, y, x, row_height = next_id + 1, y + 1, 0, 0
        for panel in row.panels:
            if x + panel.width > WIDTH:
                x, y, row_height = 0, y + row_height, 0
            panels.append(_panel_json(panel, next_id, x, y))
            next_id, x, row_height = next_id + 1, x + panel.width, max(row_height, panel.height)
        y += row_height
    return {
        "uid": UID,
        "title": "rtml: serving overview",
        "description": "Generated by deploy/grafana/dashboard.py; do not edit by hand. "
        "What to watch and what each alert means: deploy/OPERATING.md.",
        "tags": ["rtml"],
        "timezone": "browser",
        "editable": False,
        "graphTooltip": 1,
        "refresh": "30s",
        "schemaVersion": 39,
        "version": 1,
        "time": {"from": "now-3h", "to": "now"},
        "templating": {
            "list": [
                {
                    "name": "datasource",
                    "label": "Data source",
                    "type": "datasource",
                    "query": "prometheus",
                    "current": {},
                    "hide": 0,
                },
                {
                    "name": "model",
                    "label": "Model",
                    "type": "query",
                    "datasource": DATASOURCE,
                    "query": {"query": "label_values(rtml_gateway_requests_total, model)", "refId": "model"},
                    "definition": "label_values(rtml_gateway_requests_total, model)",
                    "includeAll": True,
                    "allValue": ".*",
                    "multi": True,
                    "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
                    "refresh": 2,
                    "sort": 1,
                    "hide": 0,
                },
            ]
        },
        "annotations": {"list": []},
        "links": [],
        "panels": panels,
    }


def render() -> str:
    return json.dumps(build(), indent=2, sort_keys=True) + "\n"


def queries() -> list[str]:
    """Every PromQL expression the dashboard runs (panels and variables)."""
    exprs = [query.expr for row in ROWS for panel in row.panels for query in panel.queries]
    return [*exprs, "rtml_gateway_requests_total"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy.grafana.dashboard", description=__doc__)
    parser.add_argument("--check", action="store_true", help="exit 1 if the committed JSON is stale")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        current = args.output.read_text() if args.output.exists() else ""
        if current != text:
            print(f"{args.output} is stale: run python -m deploy.grafana.dashboard", file=sys.stderr)
            return 1
        return 0
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
