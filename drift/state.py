"""What the drift app publishes per model version: the latest window statistics and firing
alerts (the Redis layout, read and write, is :mod:`runtime.drift_state`, which the gateway reads
without loading the statistics code)."""

from __future__ import annotations

import logging
from typing import Any

from drift.alerting import AlertState
from drift.config import Plan
from drift.evaluate import Observation, WindowReport, threshold_of
from runtime.drift_state import DriftState

log = logging.getLogger(__name__)


def version_state(plan: Plan, report: WindowReport, firing: dict[str, AlertState], now_ms: int) -> DriftState:
    return {
        "model": report.model,
        "version": report.version,
        "window": {
            "start_ms": report.start_ms,
            "end_ms": report.end_ms,
            "sample_count": report.sample_count,
            "sufficient": report.sufficient,
        },
        "evaluated_at_ms": now_ms,
        "statistics": [_statistic(plan, obs) for obs in report.observations],
        "firing": [_firing(key, state) for key, state in sorted(firing.items())],
    }


def _statistic(plan: Plan, obs: Observation) -> dict[str, Any]:
    threshold = threshold_of(plan, obs.statistic)
    offset = obs.threshold_offset()
    return {
        "subject": obs.subject,
        "kind": obs.kind,
        "statistic": obs.statistic,
        "value": obs.value,
        "count": obs.count,
        "p_value": obs.p_value,
        "p_adjusted": obs.p_adjusted,
        "warning": None if threshold is None else threshold.warning + offset,
        "critical": None if threshold is None else threshold.critical + offset,
    }


def _firing(key: str, state: AlertState) -> dict[str, Any]:
    kind, subject, statistic = key.split("|", 2)
    return {
        "alert_id": state.alert_id,
        "subject": subject,
        "kind": kind,
        "statistic": statistic,
        "severity": state.severity,
        "since_ms": state.since_ms,
        "value": state.value,
    }
