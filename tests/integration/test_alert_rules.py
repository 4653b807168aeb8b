"""promtool and amtool on deploy/: the Prometheus config, the alert rules and their unit tests, the
dashboard's PromQL, and Alertmanager's routing (the pure-Python checks: tests/unit/test_observability.py);
and on what the compose stack mounts: compose/prometheus.yml with deploy/'s rules, and the
Alertmanager config (the static wiring checks: tests/unit/test_compose.py).

Needs the Debian packages prometheus (promtool) and prometheus-alertmanager (amtool); .ci/run
installs them. Outside CI a machine without them skips, saying so; in CI a missing tool fails."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests import observability as obs
from tests.paths import REPO_ROOT

COMPOSE_DIR = REPO_ROOT / "compose"
COMPOSE_PROMETHEUS = COMPOSE_DIR / "prometheus.yml"


def tool(name: str, package: str) -> str:
    path = shutil.which(name)
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{name} missing in CI: .ci/run installs the Debian package {package}")
        pytest.skip(f"{name} not installed (apt-get install -y {package}); CI runs this test")
    return path


def run(*args: str) -> str:
    done = subprocess.run(args, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, f"{' '.join(args)}:\n{done.stdout}\n{done.stderr}"
    return done.stdout + done.stderr


def test_the_prometheus_config_and_its_rules_are_valid() -> None:
    promtool = tool("promtool", "prometheus")
    out = run(promtool, "check", "config", str(obs.PROMETHEUS_CONFIG))
    assert f"{len(obs.rules())} rules found" in out


def test_the_alert_rules_pass_their_unit_tests() -> None:
    promtool = tool("promtool", "prometheus")
    assert "SUCCESS" in run(promtool, "test", "rules", str(obs.RULES_TEST))


def test_every_dashboard_query_is_valid_promql(tmp_path: Path) -> None:
    promtool = tool("promtool", "prometheus")
    # Grafana's variables, as Grafana would substitute them.
    exprs = [e.replace("$__rate_interval", "5m").replace("$model", ".*") for e in obs.dashboard_exprs()]
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [{"record": f"dashboard:q{i}", "expr": e} for i, e in enumerate(exprs)],
            }
        ]
    }
    path = tmp_path / "dashboard.rules.yml"
    path.write_text(yaml.safe_dump(rules))
    assert f"{len(exprs)} rules found" in run(promtool, "check", "rules", str(path))


def test_the_alertmanager_config_is_valid_and_routes_by_severity() -> None:
    amtool = tool("amtool", "prometheus-alertmanager")
    assert "SUCCESS" in run(amtool, "check-config", str(obs.ALERTMANAGER_CONFIG))

    def receivers(*labels: str) -> str:
        out = run(amtool, "config", "routes", "test", f"--config.file={obs.ALERTMANAGER_CONFIG}", *labels)
        return out.splitlines()[0].strip()

    assert receivers("alertname=RtmlProcessDown", "severity=critical") == "pagerduty-oncall,slack-oncall"
    assert receivers("alertname=RtmlCacheDown", "severity=warning") == "slack-oncall"
    assert receivers("alertname=RtmlDriftCritical", "severity=warning", "category=drift") == "slack-models"
    assert receivers("alertname=RtmlDriftWarning", "severity=info", "category=drift") == "slack-models"


def compose_mounted_config(image: str) -> Path:
    """The checkout's file the compose service running ``image`` reads as ``--config.file``."""
    services = yaml.safe_load((COMPOSE_DIR / "docker-compose.yml").read_text())["services"]
    (service,) = [s for s in services.values() if str(s.get("image", "")).startswith(f"{image}:")]
    (config,) = [arg.split("=", 1)[1] for arg in service["command"] if arg.startswith("--config.file=")]
    sources = [str(v).split(":")[0] for v in service["volumes"] if str(v).split(":")[1:2] == [config]]
    assert len(sources) == 1, f"{image}: {config} is not bind-mounted"
    return (COMPOSE_DIR / sources[0]).resolve()


def test_the_compose_prometheus_config_and_its_rules_are_valid() -> None:
    """compose/prometheus.yml names the rules by a path relative to itself that is the same on the
    host and in the container, so promtool checks the very files Prometheus loads there."""
    promtool = tool("promtool", "prometheus")
    assert compose_mounted_config("prom/prometheus") == COMPOSE_PROMETHEUS
    out = run(promtool, "check", "config", str(COMPOSE_PROMETHEUS))
    assert f"{len(obs.rules())} rules found" in out
    assert str(obs.RULES.relative_to(REPO_ROOT)) in out  # deploy/'s rule file, not a copy


def test_the_compose_alertmanager_config_is_valid() -> None:
    amtool = tool("amtool", "prometheus-alertmanager")
    config = compose_mounted_config("prom/alertmanager")
    assert config == obs.ALERTMANAGER_CONFIG
    assert "SUCCESS" in run(amtool, "check-config", str(config))
