"""One partial aggregate in, the windows it completes evaluated, alerts out.

:class:`Detector` works on two mappings that the Faust app backs with
changelog-backed tables (tests pass dicts):

- ``steps``: ``model|version|step_ms`` -> encoded :class:`~drift.totals.Totals` of
  one step (the per-step sub-histograms; at most window/step + 1 keys per model
  version: older steps are deleted as windows move on);
- ``states``: ``model|version`` -> encoded :class:`DetectorState` (event-time
  watermark, last evaluated window end, steps held, alert states).

Windows use event time (``predicted_at_ms``): window ``[B - size, B)`` is
evaluated once the reader's watermark passed ``B + allowed_lateness``; a partial
for a step that no future window covers is dropped and counted as late.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from drift.alerting import AlertState, advance, to_alert
from drift.config import Catalog, Plan
from drift.evaluate import WindowReport, evaluate
from drift.totals import Totals, sum_totals
from runtime.clock import Clock, now_ms
from runtime.errors import TotalsMismatch
from schemas.drift import DriftAlert


@dataclass(frozen=True)
class Partial:
    """Totals of one (model, version, step) from one reader batch: a message on the partials topic."""

    model: str
    version: str
    step_ms: int
    watermark_ms: int | None
    """The reader's event-time low watermark when it sent this (None: not known yet)."""
    totals: Totals

    @property
    def key(self) -> bytes:
        return f"{self.model}|{self.version}".encode()

    @property
    def key_pair(self) -> tuple[str, str]:
        return self.model, self.version

    def encode(self) -> bytes:
        head = {
            "model": self.model,
            "version": self.version,
            "step_ms": self.step_ms,
            "watermark_ms": self.watermark_ms,
        }
        return orjson.dumps({**head, "totals": self.totals.to_dict()})

    @classmethod
    def decode(cls, data: bytes) -> Partial:
        try:
            raw = orjson.loads(data)
            watermark = raw["watermark_ms"]
            return cls(
                str(raw["model"]),
                str(raw["version"]),
                int(raw["step_ms"]),
                None if watermark is None else int(watermark),
                Totals.from_dict(raw["totals"]),
            )
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise TotalsMismatch(f"not a partial aggregate: {exc}") from exc


@dataclass
class DetectorState:
    watermark_ms: int | None = None
    last_end_ms: int | None = None
    steps: list[int] = field(default_factory=list)
    alerts: dict[str, AlertState] = field(default_factory=dict)

    def encode(self) -> bytes:
        alerts = {key: state.to_dict() for key, state in self.alerts.items()}
        return orjson.dumps({**self.__dict__, "alerts": alerts})

    @classmethod
    def decode(cls, data: bytes | None) -> DetectorState:
        if not data:
            return cls()
        raw: dict[str, Any] = orjson.loads(data)
        alerts = {key: AlertState.from_dict(value) for key, value in raw.pop("alerts", {}).items()}
        return cls(**raw, alerts=alerts)

    def firing(self) -> dict[str, AlertState]:
        return {key: state for key, state in self.alerts.items() if state.firing}


@dataclass
class Outcome:
    plan: Plan | None = None
    skipped: str | None = None
    """Why the partial was not used: unknown_model, no_baseline, disabled, bad_partial."""
    late_records: int = 0
    reports: list[WindowReport] = field(default_factory=list)
    alerts: list[DriftAlert] = field(default_factory=list)
    firing: dict[str, AlertState] = field(default_factory=dict)


def step_key(model: str, version: str, step_ms: int) -> str:
    return f"{model}|{version}|{step_ms}"


def state_key(model: str, version: str) -> str:
    return f"{model}|{version}"


@dataclass
class Detector:
    catalog: Catalog
    clock: Clock = now_ms

    def on_partial(
        self, partial: Partial, steps: MutableMapping[str, bytes], states: MutableMapping[str, bytes]
    ) -> Outcome:
        plan = self.catalog.lookup(partial.model, partial.version)
        if isinstance(plan, str):
            return Outcome(skipped=plan)
        if not partial.totals.fits(plan.layout):
            return Outcome(plan=plan, skipped="bad_partial")
        key = state_key(plan.model, plan.version)
        state = DetectorState.decode(states.get(key))
        outcome = Outcome(plan=plan)
        if self._is_late(plan, state, partial.step_ms):
            outcome.late_records = partial.totals.count
        elif partial.totals.count:  # an empty partial only moves the watermark
            self._merge(plan, state, partial, steps)
        if partial.watermark_ms is not None:
            state.watermark_ms = max(state.watermark_ms or 0, partial.watermark_ms)
        for end_ms in due_windows(plan, state):
            self._evaluate(plan, state, end_ms, steps, outcome)
        _expire(plan, state, steps)
        states[key] = state.encode()
        outcome.firing = state.firing()
        return outcome

    @staticmethod
    def _is_late(plan: Plan, state: DetectorState, step_ms: int) -> bool:
        return state.last_end_ms is not None and step_ms < horizon(plan, state.last_end_ms)

    @staticmethod
    def _merge(plan: Plan, state: DetectorState, partial: Partial, steps: MutableMapping[str, bytes]) -> None:
        key = step_key(plan.model, plan.version, partial.step_ms)
        held = steps.get(key)
        merged = Totals.decode(held) if held else Totals.empty(plan.layout)
        merged.add(partial.totals)
        steps[key] = merged.encode()
        if partial.step_ms not in state.steps:
            state.steps = sorted([*state.steps, partial.step_ms])

    def _evaluate(
        self,
        plan: Plan,
        state: DetectorState,
        end_ms: int,
        steps: MutableMapping[str, bytes],
        outcome: Outcome,
    ) -> None:
        start_ms = end_ms - plan.window_ms
        held = (
            steps.get(step_key(plan.model, plan.version, s)) for s in state.steps if start_ms <= s < end_ms
        )
        window = sum_totals(plan.layout, (Totals.decode(data) for data in held if data))
        report = evaluate(plan, window, end_ms)
        state.alerts, transitions = advance(state.alerts, report, plan)
        state.last_end_ms = end_ms
        now = self.clock()
        outcome.reports.append(report)
        outcome.alerts.extend(to_alert(t, plan, report, now) for t in transitions)


def horizon(plan: Plan, last_end_ms: int) -> int:
    """Earliest step start that a window after ``last_end_ms`` still covers."""
    return last_end_ms + plan.step_ms - plan.window_ms


def due_windows(plan: Plan, state: DetectorState) -> list[int]:
    """Ends of the windows the watermark has completed, oldest first.

    Every such window is evaluated, however many a batch completes, so a replay
    gives the same alerts as live traffic; windows holding no step at all (before
    the first held step, or a window after the last) are skipped.
    """
    if state.watermark_ms is None or not state.steps:
        return []
    latest = plan.step_of(state.watermark_ms - plan.allowed_lateness_ms)
    latest = min(latest, state.steps[-1] + plan.window_ms)
    first = state.steps[0] + plan.step_ms
    if state.last_end_ms is not None:
        first = max(first, state.last_end_ms + plan.step_ms)
    return list(range(first, latest + 1, plan.step_ms))


def _expire(plan: Plan, state: DetectorState, steps: MutableMapping[str, bytes]) -> None:
    if state.last_end_ms is None:
        return
    oldest = horizon(plan, state.last_end_ms)
    for step_ms in [s for s in state.steps if s < oldest]:
        steps.pop(step_key(plan.model, plan.version, step_ms), None)
    state.steps = [s for s in state.steps if s >= oldest]
