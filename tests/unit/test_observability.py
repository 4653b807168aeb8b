"""The alert rules, the Grafana dashboard and the metrics behind them agree with the code.

promtool/amtool checks start processes: tests/integration/test_alert_rules.py."""

from __future__ import annotations

import json

import orjson
import pytest
import yaml
from prometheus_client import REGISTRY

import drift.metrics
import gateway.metrics
import workers.metrics
from deploy.grafana import dashboard
from runtime.metric_series import remove_series
from tests import observability as obs
from workers.lag import ConsumerLag, partition_lags

assert gateway.metrics and drift.metrics  # imported for their registrations


def defined_names() -> set[str]:
    return obs.sample_names(REGISTRY.collect()) | obs.PROMETHEUS_BUILTIN


def test_the_rules_and_the_dashboard_read_only_metrics_the_code_defines() -> None:
    used = obs.metric_names(obs.rule_exprs()) | obs.metric_names(obs.dashboard_exprs())
    assert {"up", "rtml_worker_consumer_lag", "rtml_drift_alerts_firing"} <= used  # the parser finds them
    assert not used - defined_names(), "queried but defined nowhere (renamed?)"


def test_every_exported_metric_follows_prometheus_naming() -> None:
    families = [f for f in REGISTRY.collect() if f.name.startswith("rtml_")]
    assert families
    for family in families:
        name, kind = family.name, family.type
        if kind == "gauge":
            assert not name.endswith("_total"), f"{name}: a gauge must not end in _total"
            assert not name.endswith("_seconds") or name.endswith("_timestamp_seconds") or "lag" in name, (
                f"{name}: a gauge holding a time of day ends in _timestamp_seconds"
            )
        assert not name.endswith(("_ms", "_milliseconds", "_minutes", "_bytes_kb")), f"{name}: base units"
    help_texts = {f.name: f.documentation for f in families}
    for name, text in help_texts.items():
        if "Unix" in text:
            assert name.endswith("_timestamp_seconds"), name


def test_the_committed_dashboard_is_fresh() -> None:
    assert dashboard.OUTPUT.read_text() == dashboard.render(), (
        "deploy/grafana/dashboards/rtml.json is stale: run python -m deploy.grafana.dashboard"
    )
    assert dashboard.main(["--check"]) == 0


def test_the_dashboard_has_one_row_per_concern_and_unique_panel_ids() -> None:
    model = json.loads(dashboard.OUTPUT.read_text())
    rows = [p["title"] for p in model["panels"] if p["type"] == "row"]
    assert rows == ["Traffic", "Latency", "Cache", "Workers and lag", "Drift", "Errors"]
    ids = [p["id"] for p in model["panels"]]
    assert len(ids) == len(set(ids))
    for panel in model["panels"]:
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24
        if panel["type"] != "row":
            assert panel["targets"] and all(t["expr"] for t in panel["targets"])


def test_every_alert_says_how_bad_what_and_where_to_look() -> None:
    anchors = obs.runbook_anchors()
    names = [rule["alert"] for rule in obs.rules()]
    assert len(names) == len(set(names))
    expected = {
        "RtmlProcessDown",
        "RtmlNoWorkerConsuming",
        "RtmlConsumerLagGrowing",
        "RtmlHighErrorRate",
        "RtmlHighTimeoutRate",
        "RtmlLatencyP99OverTarget",
        "RtmlCacheDown",
        "RtmlDeadLetters",
        "RtmlDriftCritical",
    }
    assert expected <= set(names)
    for rule in obs.rules():
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}, rule["alert"]
        annotations = rule["annotations"]
        assert annotations["summary"] and annotations["description"], rule["alert"]
        page, _, anchor = annotations["runbook"].partition("#")
        assert page == "deploy/OPERATING.md" and anchor in anchors, (rule["alert"], anchor)


def test_every_alert_has_a_promtool_unit_test_that_sees_it_fire() -> None:
    tests = yaml.safe_load(obs.RULES_TEST.read_text())["tests"]
    fired = {
        case["alertname"] for test in tests for case in test["alert_rule_test"] if case.get("exp_alerts")
    }
    assert {rule["alert"] for rule in obs.rules()} <= fired


def test_prometheus_scrapes_every_process_the_rules_name() -> None:
    config = yaml.safe_load(obs.PROMETHEUS_CONFIG.read_text())
    jobs = {job["job_name"] for job in config["scrape_configs"]}
    assert jobs == {"rtml-gateway", "rtml-worker", "rtml-drift"}
    assert [obs.PROMETHEUS_CONFIG.parent / path for path in config["rule_files"]] == [obs.RULES]


def test_alertmanager_reads_its_secrets_from_files() -> None:
    text = obs.ALERTMANAGER_CONFIG.read_text()
    config = yaml.safe_load(text)
    assert "api_url:" not in text and "routing_key:" not in text and "service_key:" not in text
    assert config["global"]["slack_api_url_file"].startswith("/")
    pagerduty = next(r for r in config["receivers"] if r.get("pagerduty_configs"))
    assert pagerduty["pagerduty_configs"][0]["routing_key_file"].startswith("/")


# ---- consumer lag from librdkafka statistics -------------------------------------------------


def stats(topic: str, partitions: dict[int, dict[str, int | bool]]) -> dict[str, object]:
    rows: dict[str, dict[str, int | bool]] = {"-1": {"partition": -1, "desired": False}}
    for number, fields in partitions.items():
        rows[str(number)] = {"partition": number, "desired": True, **fields}
    return {"type": "consumer", "topics": {topic: {"partitions": rows}}}


def test_lag_is_the_high_watermark_minus_the_position_of_assigned_partitions() -> None:
    doc = stats(
        "t",
        {
            0: {
                "hi_offset": 100,
                "ls_offset": 90,
                "app_offset": 40,
                "committed_offset": 30,
                "stored_offset": 35,
            },
            1: {
                "hi_offset": 10,
                "app_offset": -1001,
                "committed_offset": -1001,
                "stored_offset": -1001,
                "lo_offset": 2,
            },
            2: {"hi_offset": -1, "app_offset": 5},  # no fetch answered yet
            3: {"hi_offset": 50, "app_offset": 60},  # position past a stale watermark: 0, never negative
        },
    )
    doc["topics"]["t"]["partitions"]["4"] = {"partition": 4, "desired": False, "hi_offset": 9}  # type: ignore[index]
    assert partition_lags(doc, "t") == {"0": 60, "1": 8, "2": None, "3": 0}
    assert partition_lags(doc, "t", read_committed=True)["0"] == 50
    assert partition_lags(doc, "other") == {}


def value(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


def test_revoked_partitions_and_a_closed_consumer_leave_no_series() -> None:
    lag = ConsumerLag("lag_model", "t")
    two = {0: {"hi_offset": 10, "app_offset": 4}, 1: {"hi_offset": 7, "app_offset": 7}}
    lag.on_stats(orjson.dumps(stats("t", two)).decode())
    assert value("rtml_worker_consumer_lag", model="lag_model", partition="0") == 6
    assert value("rtml_worker_consumer_lag", model="lag_model", partition="1") == 0
    assert value("rtml_worker_assigned_partitions", model="lag_model") == 2
    assert value("rtml_worker_consumer_stats_timestamp_seconds", model="lag_model")
    lag.on_stats(orjson.dumps(stats("t", {1: two[1]})).decode())
    assert value("rtml_worker_consumer_lag", model="lag_model", partition="0") is None
    assert value("rtml_worker_assigned_partitions", model="lag_model") == 1
    lag.on_stats("not json")  # logged, nothing changes
    assert value("rtml_worker_assigned_partitions", model="lag_model") == 1
    lag.close()
    assert value("rtml_worker_consumer_lag", model="lag_model", partition="1") is None
    assert value("rtml_worker_assigned_partitions", model="lag_model") is None


def test_an_unloaded_version_leaves_no_series_and_other_versions_keep_theirs() -> None:
    workers.metrics.ROWS.labels("retire_model", "1", "http", "default").inc(3)
    workers.metrics.ROWS.labels("retire_model", "2", "kafka", "split").inc()
    workers.metrics.CACHE.labels("retire_model", "1", "hit").inc()
    workers.metrics.SHADOW_ERRORS.labels("retire_model", "1").inc()
    workers.metrics.forget_version("retire_model", "1")
    for family in REGISTRY.collect():
        for sample in family.samples:
            labels = sample.labels
            assert not (labels.get("model") == "retire_model" and labels.get("version") == "1"), sample
    assert (
        value("rtml_worker_rows_total", model="retire_model", version="2", source="kafka", route="split") == 1
    )


def test_the_gateway_forgets_retired_versions() -> None:
    gateway.metrics.REQUESTS.labels("predict", "gw_retire", "1", "200").inc()
    gateway.metrics.CACHE.labels("gw_retire", "1", "miss").inc()
    gateway.metrics.forget_version("gw_retire", "1")
    assert (
        value("rtml_gateway_requests_total", endpoint="predict", model="gw_retire", version="1", status="200")
        is None
    )
    assert value("rtml_gateway_cache_total", model="gw_retire", version="1", result="miss") is None


def test_remove_series_matches_a_subset_of_the_labels_of_a_histogram() -> None:
    workers.metrics.BATCH_SECONDS.labels("hist_model").observe(0.01)
    assert remove_series(workers.metrics.BATCH_SECONDS, ("model",), model="hist_model") == 1
    assert value("rtml_worker_batch_seconds_count", model="hist_model") is None
    assert remove_series(workers.metrics.BATCH_SECONDS, ("model",), model="hist_model") == 0


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        (
            'sum by (model) (rate(rtml_gateway_requests_total{status=~"5.."}[5m]))',
            {"rtml_gateway_requests_total"},
        ),
        ('up{job=~"rtml-.*"} == 0', {"up"}),
        ('histogram_quantile(0.99, sum by (le) (rate(rtml_x_bucket{endpoint="up"}[1m])))', {"rtml_x_bucket"}),
        ("time() - rtml_drift_watermark_timestamp_seconds", {"rtml_drift_watermark_timestamp_seconds"}),
    ],
)
def test_the_promql_name_finder(expr: str, names: set[str]) -> None:
    assert obs.metric_names([expr]) == names
