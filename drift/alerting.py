"""The alert state machine: debounce to fire, hysteresis to resolve. Pure functions.

Per (subject, statistic) of a model version, evaluated once per window step:

- not firing: ``over`` (threshold reached and significant, see :mod:`drift.evaluate`)
  for ``debounce_steps`` consecutive steps fires, with the severity of that step;
  any step that is not over starts the count again.
- firing: a step over the critical threshold escalates a warning (a new
  ``firing`` record, same ``alert_id``); ``debounce_steps`` consecutive *clear*
  steps resolve it, clear meaning under ``resolve_ratio`` x the warning
  threshold, or no longer significant (a baseline of a few dozen rows cannot
  keep an alert open); any other step starts that count again.
- windows without a verdict (too few samples) change nothing.

``alert_id`` is derived from the model, version, subject, statistic and the
event-time end of the window that fired it, so a replay produces the same ids.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from typing import Any

from drift.config import Plan
from drift.evaluate import Observation, WindowReport, threshold_of
from runtime.settings import DriftThreshold
from schemas.drift import AlertStatus, BaselineReference, DriftAlert, Severity

_RANK: dict[str | None, int] = {None: 0, "warning": 1, "critical": 2}


@dataclass(frozen=True)
class AlertState:
    over: int = 0
    """Consecutive steps over threshold (while not firing)."""
    under: int = 0
    """Consecutive steps under the resolve level (while firing)."""
    firing: bool = False
    alert_id: str | None = None
    severity: Severity | None = None
    since_ms: int | None = None
    """End of the window that fired the alert."""
    value: float = 0.0
    """Latest value of the statistic while firing."""

    @property
    def idle(self) -> bool:
        return not self.firing and self.over == 0

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v != getattr(_IDLE, k)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AlertState:
        return cls(**data)


_IDLE = AlertState()


@dataclass(frozen=True)
class Transition:
    status: AlertStatus
    severity: Severity
    alert_id: str
    threshold: float
    """As reported: the threshold crossed (firing) or the resolve level (resolved)."""
    observation: Observation


def severity_of(magnitude: float, threshold: DriftThreshold) -> Severity | None:
    if magnitude >= threshold.critical:
        return "critical"
    if magnitude >= threshold.warning:
        return "warning"
    return None


def alert_id(model: str, version: str, key: str, since_ms: int) -> str:
    return hashlib.blake2b(f"{model}|{version}|{key}|{since_ms}".encode(), digest_size=8).hexdigest()


def step(
    state: AlertState, obs: Observation, plan: Plan, threshold: DriftThreshold, end_ms: int
) -> tuple[AlertState, Transition | None]:
    """One window step of one alert."""
    severity = severity_of(obs.magnitude, threshold)
    significant = obs.p_adjusted is not None and obs.p_adjusted <= plan.family_alpha
    over = severity is not None and significant
    if not state.firing:
        if not over or severity is None:
            return _IDLE, None
        if state.over + 1 < plan.debounce_steps:
            return replace(state, over=state.over + 1), None
        new_id = alert_id(plan.model, plan.version, obs.key, end_ms)
        fired = AlertState(firing=True, alert_id=new_id, severity=severity, since_ms=end_ms, value=obs.value)
        return fired, _transition("firing", severity, fired, _level(obs, threshold, severity), obs)
    if over and severity is not None and _RANK[severity] > _RANK[state.severity]:
        escalated = replace(state, severity=severity, under=0, value=obs.value)
        return escalated, _transition("firing", severity, escalated, _level(obs, threshold, severity), obs)
    resolve_level = plan.resolve_ratio * threshold.warning
    if obs.magnitude >= resolve_level and significant:
        return replace(state, under=0, value=obs.value), None
    if state.under + 1 < plan.debounce_steps:
        return replace(state, under=state.under + 1, value=obs.value), None
    level = resolve_level + obs.threshold_offset()
    return _IDLE, _transition("resolved", state.severity or "warning", state, level, obs)


def _level(obs: Observation, threshold: DriftThreshold, severity: Severity) -> float:
    base = threshold.critical if severity == "critical" else threshold.warning
    return base + obs.threshold_offset()


def _transition(
    status: AlertStatus, severity: Severity, state: AlertState, level: float, obs: Observation
) -> Transition:
    assert state.alert_id is not None
    return Transition(status, severity, state.alert_id, level, obs)


def advance(
    states: dict[str, AlertState], report: WindowReport, plan: Plan
) -> tuple[dict[str, AlertState], list[Transition]]:
    """Every alert of a model version through one window; idle states are dropped."""
    if not report.sufficient:
        return states, []
    out = dict(states)
    transitions = []
    for obs in report.observations:
        threshold = threshold_of(plan, obs.statistic)
        if threshold is None or obs.p_adjusted is None:
            continue
        new_state, transition = step(states.get(obs.key, _IDLE), obs, plan, threshold, report.end_ms)
        if new_state.idle:
            out.pop(obs.key, None)
        else:
            out[obs.key] = new_state
        if transition is not None:
            transitions.append(transition)
    return out, transitions


def to_alert(transition: Transition, plan: Plan, report: WindowReport, emitted_at_ms: int) -> DriftAlert:
    obs = transition.observation
    baseline = BaselineReference(
        model=plan.model,
        version=plan.version,
        onnx_sha256=plan.onnx_sha256,
        count=_baseline_count(plan, obs),
        value=obs.baseline_value,
    )
    return DriftAlert(
        alert_id=transition.alert_id,
        event_id=f"{transition.alert_id}:{transition.status}:{transition.severity}",
        status=transition.status,
        severity=transition.severity,
        model=plan.model,
        version=plan.version,
        subject=obs.subject,
        subject_kind=obs.kind,
        statistic=obs.statistic,
        value=obs.value,
        threshold=transition.threshold,
        p_value=obs.p_adjusted,
        window_start_ms=report.start_ms,
        window_end_ms=report.end_ms,
        sample_count=report.sample_count,
        baseline=baseline,
        message=describe(transition, plan, report),
        emitted_at_ms=emitted_at_ms,
    )


def _baseline_count(plan: Plan, obs: Observation) -> int:
    for subject in plan.layout.numeric:
        if (subject.name, subject.kind) == (obs.subject, obs.kind):
            return subject.baseline.count
    categorical = plan.layout.categorical
    return categorical.baseline_count if categorical is not None else 0


def describe(transition: Transition, plan: Plan, report: WindowReport) -> str:
    obs = transition.observation
    what = f"{plan.model} v{plan.version} {obs.kind} '{obs.subject}'"
    window = f"window of {report.sample_count} records ending at {report.end_ms} ms"
    if transition.status == "firing":
        compared = f"{obs.statistic} {obs.value:.4g} reached {transition.threshold:.4g}"
        return f"[{transition.severity.upper()}] {what}: {compared}; {window}"
    stayed = f"{obs.statistic} {obs.value:.4g} stayed under {transition.threshold:.4g}"
    return f"[RESOLVED] {what}: {stayed} for {plan.debounce_steps} steps; {window}"
