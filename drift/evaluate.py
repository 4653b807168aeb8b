"""Window totals + baseline -> statistics, each with a p-value, Holm-corrected per window.

Per feature: ``psi`` and ``js_distance`` of its baseline bins, ``mean_shift`` in
baseline standard deviations, ``missing_rate`` and ``out_of_range_rate``. Per
output: ``psi`` / ``js_distance`` of the predicted-class distribution
(classifiers) or of the value histogram (regressors, plus ``mean_shift``), and of
the top-class confidence when the baseline has it.

An observation is *over* when its magnitude reaches the warning threshold and
its Holm-adjusted p-value is at most ``family_alpha``: the effect must be large
(threshold) and not noise (test), with every statistic of every subject of the
window counted as one family of tests. A window with fewer than ``min_samples``
records gives no verdict.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace

import numpy as np

from drift.config import Plan
from drift.layout import CategoricalSubject, NumericSubject, SubjectKind
from drift.totals import Totals
from rtml_client import stats
from runtime.settings import DriftThreshold
from schemas.drift import Statistic


@dataclass(frozen=True)
class Observation:
    subject: str
    kind: SubjectKind
    statistic: Statistic
    value: float
    """As reported (mean shift keeps its sign)."""
    magnitude: float
    """What the thresholds apply to: |mean shift|, missing-rate increase over the baseline, else value."""
    count: int
    """Values the statistic was computed from."""
    baseline_value: float | None = None
    p_value: float | None = None
    """Raw p-value of the statistic's test."""
    p_adjusted: float | None = None
    """Holm-adjusted over the window's alertable observations (None: not alertable)."""

    @property
    def key(self) -> str:
        return f"{self.kind}|{self.subject}|{self.statistic}"

    def threshold_offset(self) -> float:
        """Added to thresholds when reported: the missing-rate threshold is an increase over the baseline."""
        if self.statistic == "missing_rate":
            return self.baseline_value or 0.0
        return 0.0


@dataclass(frozen=True)
class WindowReport:
    model: str
    version: str
    start_ms: int
    end_ms: int
    sample_count: int
    sufficient: bool
    observations: tuple[Observation, ...]


def threshold_of(plan: Plan, statistic: Statistic) -> DriftThreshold | None:
    threshold: DriftThreshold | None = getattr(plan.thresholds, statistic)
    return threshold


def evaluate(plan: Plan, window: Totals, end_ms: int) -> WindowReport:
    """All statistics of one window ``[end_ms - window, end_ms)``."""
    sufficient = window.count >= plan.min_samples
    observed = list(_numeric(plan, window))
    categorical = plan.layout.categorical
    if categorical is not None and window.classes.sum() > 0:
        observed.extend(_categorical(categorical, window.classes))
    adjusted = _holm(plan, observed) if sufficient else observed
    return WindowReport(
        plan.model, plan.version, end_ms - plan.window_ms, end_ms, window.count, sufficient, tuple(adjusted)
    )


def _holm(plan: Plan, observed: list[Observation]) -> list[Observation]:
    alertable = [
        i
        for i, o in enumerate(observed)
        if o.p_value is not None
        and threshold_of(plan, o.statistic) is not None
        and o.count >= plan.min_samples
    ]
    if not alertable:
        return observed
    adjusted = stats.holm([observed[i].p_value or 0.0 for i in alertable])
    out = list(observed)
    for i, p in zip(alertable, adjusted, strict=True):
        out[i] = replace(observed[i], p_adjusted=float(p))
    return out


def _numeric(plan: Plan, window: Totals) -> Iterator[Observation]:
    for j, subject in enumerate(plan.layout.numeric):
        n = int(window.present[j])
        if subject.kind == "feature" and window.count:
            yield _missing_rate(subject, int(window.missing[j]), window.count)
        if n == 0:
            continue
        yield from _distribution(subject, plan.layout.bins_of(j, window.bins), n)
        if subject.source != "confidence":
            yield _mean_shift(subject, n, float(window.sums[j]), float(window.sums_sq[j]))
        if subject.kind == "feature":
            yield _out_of_range(subject, int(window.below[j] + window.above[j]), n)


def _distribution(subject: NumericSubject, counts: np.ndarray, n: int) -> Iterator[Observation]:
    b = subject.baseline
    expected = np.asarray(b.bin_proportions, dtype=np.float64)
    p_value = stats.chi2_homogeneity(counts, expected * b.count).pvalue if b.count > 0 else None
    for statistic, value in _distances(expected, counts):
        yield Observation(subject.name, subject.kind, statistic, value, value, n, None, p_value)


def _distances(expected: np.ndarray, observed: np.ndarray) -> tuple[tuple[Statistic, float], ...]:
    return (("psi", stats.psi(expected, observed)), ("js_distance", stats.js_distance(expected, observed)))


def _mean_shift(subject: NumericSubject, n: int, total: float, total_sq: float) -> Observation:
    b = subject.baseline
    mean = stats.moments(n, total, total_sq, shift=b.mean).mean
    shift = stats.mean_shift(mean, b.mean, b.std)
    test = stats.mean_shift_ztest(mean, n, b.mean, b.std, b.count or None) if b.std > 0 else None
    p_value = test.pvalue if test is not None else None
    return Observation(subject.name, subject.kind, "mean_shift", shift, abs(shift), n, b.mean, p_value)


def _missing_rate(subject: NumericSubject, missing: int, total: int) -> Observation:
    b = subject.baseline
    rate = missing / total
    rows = b.count / (1 - b.missing_rate) if b.missing_rate < 1 else float(b.count)
    test = stats.two_proportion_ztest(missing, total, b.missing_rate * rows, rows) if rows > 0 else None
    p_value = test.pvalue if test is not None else None
    increase = rate - b.missing_rate
    return Observation(
        subject.name, subject.kind, "missing_rate", rate, increase, total, b.missing_rate, p_value
    )


def _out_of_range(subject: NumericSubject, outside: int, n: int) -> Observation:
    b = subject.baseline
    rate = outside / n
    p_value = stats.two_proportion_ztest(outside, n, 0, b.count).pvalue if b.count > 0 else None
    return Observation(subject.name, subject.kind, "out_of_range_rate", rate, rate, n, 0.0, p_value)


def _categorical(subject: CategoricalSubject, counts: np.ndarray) -> Iterator[Observation]:
    known = len(subject.classes)
    expected = np.append(np.asarray(subject.proportions, dtype=np.float64), 0.0)
    observed = counts.astype(np.float64)
    if counts[known] == 0:  # no unknown labels: compare the known classes only
        expected, observed = expected[:known], observed[:known]
    n = int(observed.sum())
    p_value = None
    if subject.baseline_count > 0 and n > 0:
        p_value = stats.chi2_homogeneity(observed, expected * subject.baseline_count).pvalue
    for statistic, value in _distances(expected, observed):
        yield Observation(subject.name, "output", statistic, value, value, n, None, p_value)
