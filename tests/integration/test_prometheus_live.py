"""A real Prometheus scraping a real stack: every metric the rules and the dashboard read is
exported by the live processes, the workers export their consumer lag, and killing the only
worker of a model fires RtmlNoWorkerConsuming (the rules file with every ``for:`` cut to 5 s,
evaluated every second).

Needs the prometheus binary (Debian package prometheus; .ci/run installs it)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from rtml.infra.process import free_ports
from rtml.stack import Child, wait_http_ok
from tests import observability as obs
from tests.stack_fixtures import RunningStack, StackFactory

MODEL = "iris_classifier"


@dataclass
class Monitored:
    stack: RunningStack
    drift: Child
    drift_metrics_url: str
    prometheus_url: str

    def query(self, expr: str) -> list[dict[str, Any]]:
        url = f"{self.prometheus_url}/api/v1/query?{urllib.parse.urlencode({'query': expr})}"
        with urllib.request.urlopen(url, timeout=5) as response:
            answer = json.load(response)
        assert answer["status"] == "success", answer
        return list(answer["data"]["result"])

    def alerts(self) -> list[dict[str, Any]]:
        with urllib.request.urlopen(f"{self.prometheus_url}/api/v1/alerts", timeout=5) as response:
            return list(json.load(response)["data"]["alerts"])

    def metrics_urls(self) -> list[str]:
        return [f"{self.stack.base_url}/metrics", *self.stack.worker_metrics_urls, self.drift_metrics_url]


def prometheus_binary() -> str:
    path = shutil.which("prometheus")
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail("prometheus missing in CI: .ci/run installs the Debian package prometheus")
        pytest.skip("prometheus not installed (apt-get install -y prometheus); CI runs this test")
    return path


def hostport(url: str) -> str:
    return urllib.parse.urlsplit(url).netloc


def wait_until(what: str, check: Any, timeout_s: float, interval_s: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(interval_s)
    pytest.fail(f"not within {timeout_s:g} s: {what}")


@pytest.fixture(scope="module")
def monitored(stack_factory: StackFactory, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Monitored]:
    binary = prometheus_binary()
    running = stack_factory(workers=1, models=[MODEL])
    drift_port, prometheus_port = free_ports(2)
    tag = running.namespace.tag
    state = tmp_path_factory.mktemp("drift-state")
    drift = running.stack.spawn(
        "drift",
        ["drift"],
        {
            "RTML_DRIFT__METRICS_PORT": str(drift_port),
            "RTML_DRIFT__APP_ID": f"t{tag}-drift",
            "RTML_DRIFT__READER_GROUP": f"t{tag}.drift.reader",
            "RTML_DRIFT__PARTIALS_TOPIC": f"t{tag}.drift.partials",
            "RTML_DRIFT__ALERTS_TOPIC": f"t{tag}.drift.alerts",
            "RTML_DRIFT__DEAD_LETTER_TOPIC": f"t{tag}.drift.dlq",
            "RTML_DRIFT__PARTITIONS": "2",
            "RTML_INFRA__STATE_DIR": str(state),
        },
    )
    drift_url = f"http://127.0.0.1:{drift_port}/metrics"
    wait_http_ok(drift_url, timeout_s=90, child=drift)

    home = tmp_path_factory.mktemp("prometheus")
    rules = obs.rules_file_variant(home / "rtml.rules.yml", for_s=5)
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "900ms", "evaluation_interval": "1s"},
        "rule_files": [str(rules)],
        "scrape_configs": [
            {"job_name": "rtml-gateway", "static_configs": [{"targets": [hostport(running.base_url)]}]},
            {
                "job_name": "rtml-worker",
                "static_configs": [{"targets": [hostport(u) for u in running.worker_metrics_urls]}],
            },
            {"job_name": "rtml-drift", "static_configs": [{"targets": [f"127.0.0.1:{drift_port}"]}]},
        ],
    }
    (home / "prometheus.yml").write_text(yaml.safe_dump(config))
    log = (home / "prometheus.log").open("wb")
    process = subprocess.Popen(
        [
            binary,
            f"--config.file={home / 'prometheus.yml'}",
            f"--storage.tsdb.path={home / 'data'}",
            f"--web.listen-address=127.0.0.1:{prometheus_port}",
            "--storage.tsdb.retention.time=1h",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{prometheus_port}"
    try:
        wait_http_ok(f"{url}/-/ready", timeout_s=60)
        yield Monitored(running, drift, drift_url, url)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
        log.close()
        drift.stop()


def traffic(stack: RunningStack) -> None:
    url = f"{stack.base_url}/api/v1/predict"
    rows = [[5.1, 3.5, 1.4, 0.2], [6.2, 2.9, 4.3, 1.3], [7.7, 3.0, 6.1, 2.3]]
    for row in rows * 2:  # misses, then hits
        answer = httpx.post(url, json={"model_name": MODEL, "features": row}, timeout=10)
        assert answer.status_code == 200, answer.text
    batch = {"model_name": MODEL, "features_batch": rows}
    assert httpx.post(f"{stack.base_url}/api/v1/batch_predict", json=batch, timeout=10).status_code == 200


def live_names(urls: list[str]) -> set[str]:
    names: set[str] = set()
    for url in urls:
        families = list(text_string_to_metric_families(httpx.get(url, timeout=5).text))
        names |= obs.sample_names(families)
        names |= {sample.name for family in families for sample in family.samples}
    return names


def test_every_metric_the_rules_and_dashboard_read_is_exported_live(monitored: Monitored) -> None:
    traffic(monitored.stack)
    used = obs.metric_names(obs.rule_exprs()) | obs.metric_names(obs.dashboard_exprs())
    missing = used - live_names(monitored.metrics_urls()) - obs.PROMETHEUS_BUILTIN
    assert not missing, f"read by rules or dashboard, exported by no process: {sorted(missing)}"
    # ... and Prometheus sees them: every target up, the worker's lag per partition of the model.
    wait_until(
        "every target up",
        lambda: len([r for r in monitored.query('up{job=~"rtml-.*"} == 1')]) == 3,
        timeout_s=30,
    )
    lags = wait_until(
        "consumer lag of every partition",
        lambda: (r := monitored.query(f'rtml_worker_consumer_lag{{model="{MODEL}"}}')) and len(r) == 4 and r,
        timeout_s=30,
    )
    assert {lag["metric"]["partition"] for lag in lags} == {"0", "1", "2", "3"}
    assert all(float(lag["value"][1]) == 0 for lag in lags), lags  # everything sent was served
    held = monitored.query(f'sum(rtml_worker_assigned_partitions{{model="{MODEL}"}})')
    assert float(held[0]["value"][1]) == 4
    assert not [a for a in monitored.alerts() if a["labels"]["alertname"] == "RtmlNoWorkerConsuming"]


def test_killing_the_only_worker_fires_no_worker_consuming(monitored: Monitored) -> None:
    wait_until(
        "the worker's partitions in Prometheus",
        lambda: monitored.query(f'sum(rtml_worker_assigned_partitions{{model="{MODEL}"}}) > 0'),
        timeout_s=30,
    )
    worker = monitored.stack.workers[0]
    worker.process.send_signal(signal.SIGKILL)
    worker.process.wait(10)
    killed = time.monotonic()

    def firing(name: str) -> list[dict[str, Any]]:
        return [a for a in monitored.alerts() if a["labels"]["alertname"] == name and a["state"] == "firing"]

    alerts = wait_until("RtmlNoWorkerConsuming firing", lambda: firing("RtmlNoWorkerConsuming"), timeout_s=60)
    assert [a["labels"]["model"] for a in alerts] == [MODEL]
    assert alerts[0]["labels"]["severity"] == "critical"
    assert alerts[0]["annotations"]["runbook"] == "deploy/OPERATING.md#rtmlnoworkerconsuming"
    down = wait_until("RtmlProcessDown firing", lambda: firing("RtmlProcessDown"), timeout_s=30)
    assert {a["labels"]["job"] for a in down} == {"rtml-worker"}
    print(f"RtmlNoWorkerConsuming fired {time.monotonic() - killed:.1f} s after the kill")
