"""What the alert rules and the Grafana dashboard query, for the tests that check them against the
code (tests/unit/test_observability.py) and against live processes (tests/integration)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from deploy.grafana import dashboard
from tests.paths import REPO_ROOT

DEPLOY = REPO_ROOT / "deploy"
RULES = DEPLOY / "prometheus" / "rules" / "rtml.rules.yml"
RULES_TEST = DEPLOY / "prometheus" / "rules" / "rtml.rules.test.yml"
PROMETHEUS_CONFIG = DEPLOY / "prometheus" / "prometheus.yml"
ALERTMANAGER_CONFIG = DEPLOY / "alertmanager" / "alertmanager.yml"
OPERATING = DEPLOY / "OPERATING.md"

# A metric name in PromQL: rtml_... or up, not a label value in quotes (those are rtml-... or
# free text) and not a function or keyword.
_NAME = re.compile(r'(?<![\w"=~.-])(rtml_[a-z0-9_]+|up)(?![\w(])')
_QUOTED = re.compile(r'"(?:[^"\\]|\\.)*"')
PROMETHEUS_BUILTIN = frozenset({"up"})


def rules() -> list[dict[str, Any]]:
    """Every alerting rule of the rules file (group order)."""
    document = yaml.safe_load(RULES.read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def rule_exprs() -> list[str]:
    return [str(rule["expr"]) for rule in rules()]


def dashboard_exprs() -> list[str]:
    return dashboard.queries()


def metric_names(exprs: Iterable[str]) -> set[str]:
    """The series names a set of PromQL expressions read (label values left out)."""
    names: set[str] = set()
    for expr in exprs:
        names.update(_NAME.findall(_QUOTED.sub('""', expr)))
    return names


def sample_names(families: Iterable[Any]) -> set[str]:
    """Every series name a set of metric families can expose (``_total``, ``_bucket``, ...)."""
    suffixes = {
        "counter": ("_total", "_created"),
        "histogram": ("_bucket", "_sum", "_count", "_created"),
        "summary": ("", "_sum", "_count", "_created"),
        "gauge": ("",),
        "info": ("_info",),
    }
    return {family.name + suffix for family in families for suffix in suffixes.get(family.type, ("",))}


def runbook_anchors() -> set[str]:
    """GitHub-style anchors of the headings of deploy/OPERATING.md."""
    anchors = set()
    for line in OPERATING.read_text().splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            anchors.add(re.sub(r"[^a-z0-9 _-]", "", title).replace(" ", "-"))
    return anchors


def rules_file_variant(path: Path, for_s: int) -> Path:
    """The rules file with every ``for:`` shortened to ``for_s`` seconds (live tests)."""
    document = yaml.safe_load(RULES.read_text())
    for group in document["groups"]:
        group["interval"] = "1s"
        for rule in group["rules"]:
            if "for" in rule:
                rule["for"] = f"{for_s}s"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path
