"""Drift statistics: pure functions over histograms and running totals (numpy only).

Shared by the streaming drift detector (``drift/`` in the rtml server) and the
client's offline ``detect_drift``, so both give the same answer on the same data.
Nothing here keeps state or raw events: windows are described by counts, sums,
sums of squares and histogram bins, which add up across sub-windows.

Binning (the convention of rtml model metadata ``FeatureBaseline``)
    ``bin_edges`` has ``bins + 1`` increasing edges; bin ``i`` holds
    ``edges[i] <= x < edges[i + 1]`` but the first and last bins are open-ended.
    :func:`bin_index` (NaN -> -1), :func:`histogram` (NaN excluded).

Running totals
    :func:`totals` -> ``(count, sum, sum_sq)`` of finite values, optionally shifted
    by a reference (``x - shift``; use the baseline mean to avoid cancellation);
    :func:`moments` turns totals back into :class:`Moments` (mean, variance, std).

Distances between distributions (counts or proportions, normalised here)
    :func:`psi`: population stability index, ``sum((a - e) * ln(a / e))`` with
    empty bins floored at ``epsilon``; 0.1 moderate, 0.2 major drift by convention.
    :func:`js_distance`: Jensen-Shannon distance, base 2, in [0, 1] (a metric).
    :func:`mean_shift`: ``(mean - baseline_mean) / baseline_std``.

Tests (each returns :class:`TestResult` ``(statistic, pvalue)``)
    :func:`ks_2samp`: two-sample Kolmogorov-Smirnov on raw samples, p-value from
    the asymptotic Kolmogorov distribution (:func:`kolmogorov_sf`, with Stephens'
    small-sample correction); :func:`ks_from_counts` the same on two histograms
    with shared bins (a lower bound of the raw statistic).
    :func:`chi2_homogeneity`: do two histograms come from one distribution
    (:func:`chi2_sf` for the p-value). :func:`two_proportion_ztest` (rates such
    as missing values) and :func:`mean_shift_ztest` (means), via :func:`normal_sf`.

Multiple testing
    :func:`holm` (family-wise error rate) and :func:`benjamini_hochberg` (false
    discovery rate) return adjusted p-values in the input order.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
ArrayLike = npt.ArrayLike

DEFAULT_EPSILON = 1e-4
"""Floor for empty-bin proportions in :func:`psi`."""
PSI_MODERATE = 0.1
PSI_MAJOR = 0.2

__all__ = [
    "DEFAULT_EPSILON",
    "PSI_MAJOR",
    "PSI_MODERATE",
    "Moments",
    "TestResult",
    "benjamini_hochberg",
    "bin_index",
    "chi2_homogeneity",
    "chi2_sf",
    "histogram",
    "holm",
    "js_distance",
    "kolmogorov_sf",
    "ks_2samp",
    "ks_from_counts",
    "mean_shift",
    "mean_shift_ztest",
    "moments",
    "normal_sf",
    "psi",
    "totals",
    "two_proportion_ztest",
]


@dataclass(frozen=True)
class Moments:
    count: int
    mean: float
    """NaN when count is 0."""
    variance: float
    """Population variance (ddof=0); NaN when count is 0."""

    @property
    def std(self) -> float:
        return math.sqrt(self.variance)


@dataclass(frozen=True)
class TestResult:
    statistic: float
    pvalue: float


# -- binning and totals --------------------------------------------------------

DEFAULT_BINS = 10


def quantile_bin_edges(values: ArrayLike, n_bins: int = DEFAULT_BINS) -> FloatArray:
    """Bin edges of a baseline column, the one rule model metadata, the drift detector and
    ``detect_drift`` share: quantile edges, or one bin per value when a column has at most
    ``n_bins`` distinct values (so a categorical-looking column never collapses into one bin).
    NaNs are ignored; the column must hold at least one number."""
    x = np.asarray(values, dtype=np.float64)
    distinct = np.unique(x[~np.isnan(x)])
    if distinct.size == 0:
        raise ValueError("cannot bin a column with no numeric values")
    if distinct.size == 1:
        return np.array([distinct[0] - 0.5, distinct[0] + 0.5])
    if distinct.size <= n_bins:
        return np.concatenate([distinct[:1], (distinct[:-1] + distinct[1:]) / 2, distinct[-1:]])
    edges: FloatArray = np.unique(np.quantile(x[~np.isnan(x)], np.linspace(0, 1, n_bins + 1)))
    return edges


def bin_index(values: ArrayLike, bin_edges: ArrayLike) -> IntArray:
    """Bin of each value (outer bins open-ended); -1 for NaN."""
    x = np.asarray(values, dtype=np.float64)
    inner = np.asarray(bin_edges, dtype=np.float64)[1:-1]
    index = np.searchsorted(inner, x, side="right").astype(np.int64)
    index[np.isnan(x)] = -1
    return index


def histogram(values: ArrayLike, bin_edges: ArrayLike) -> IntArray:
    """Counts per bin of the non-NaN values (outer bins open-ended)."""
    n_bins = len(np.asarray(bin_edges)) - 1
    index = bin_index(values, bin_edges)
    return np.bincount(index[index >= 0], minlength=n_bins).astype(np.int64)


def totals(values: ArrayLike, shift: float = 0.0) -> tuple[int, float, float]:
    """``(count, sum, sum of squares)`` of the finite values minus ``shift``."""
    x = np.asarray(values, dtype=np.float64)
    x = x[np.isfinite(x)] - shift
    return int(x.size), float(x.sum()), float(np.dot(x, x))


def moments(count: float, total: float, total_sq: float, shift: float = 0.0) -> Moments:
    """Mean and population variance from :func:`totals` (``shift`` added back to the mean)."""
    if count <= 0:
        return Moments(0, math.nan, math.nan)
    centred_mean = total / count
    variance = max(total_sq / count - centred_mean * centred_mean, 0.0)
    return Moments(int(count), centred_mean + shift, variance)


# -- distances -----------------------------------------------------------------


def _normalise(counts: ArrayLike, name: str) -> FloatArray:
    x = np.asarray(counts, dtype=np.float64)
    if x.ndim != 1 or x.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-d array, got shape {x.shape}")
    if not np.all(np.isfinite(x)) or np.any(x < 0):
        raise ValueError(f"{name} must be finite and non-negative: {x.tolist()}")
    total = float(x.sum())
    if total <= 0:
        raise ValueError(f"{name} sums to 0: nothing to compare")
    normalised: FloatArray = x / total
    return normalised


def _pair(expected: ArrayLike, actual: ArrayLike) -> tuple[FloatArray, FloatArray]:
    e, a = _normalise(expected, "expected"), _normalise(actual, "actual")
    if e.shape != a.shape:
        raise ValueError(f"expected has {e.size} bins, actual {a.size}; they must share bins")
    return e, a


def psi(expected: ArrayLike, actual: ArrayLike, epsilon: float = DEFAULT_EPSILON) -> float:
    """Population stability index of ``actual`` against ``expected`` (symmetric, >= 0)."""
    e, a = _pair(expected, actual)
    e = np.maximum(e, epsilon)
    a = np.maximum(a, epsilon)
    e, a = e / e.sum(), a / a.sum()
    return float(max(np.sum((a - e) * np.log(a / e)), 0.0))


def js_distance(p: ArrayLike, q: ArrayLike) -> float:
    """Jensen-Shannon distance (square root of the divergence, base 2), in [0, 1]."""
    a, b = _pair(p, q)
    m = (a + b) / 2

    def kl(x: FloatArray) -> float:
        nz = x > 0
        return float(np.sum(x[nz] * np.log2(x[nz] / m[nz])))

    divergence = (kl(a) + kl(b)) / 2
    return math.sqrt(min(max(divergence, 0.0), 1.0))


def mean_shift(mean: float, baseline_mean: float, baseline_std: float) -> float:
    """Shift of the mean in baseline standard deviations (0 std: 0 if equal, else +-inf)."""
    delta = mean - baseline_mean
    if baseline_std > 0:
        return delta / baseline_std
    return 0.0 if delta == 0 else math.copysign(math.inf, delta)


# -- distributions -------------------------------------------------------------


def normal_sf(z: float) -> float:
    """P(Z > z) for a standard normal."""
    return 0.5 * math.erfc(z / math.sqrt(2))


def kolmogorov_sf(x: float) -> float:
    """P(K > x) for the Kolmogorov distribution (limit of sqrt(n) * D_n)."""
    if x <= 0:
        return 1.0
    if x < 1.18:  # the theta-function form converges fast for small x
        c = -(math.pi**2) / (8 * x * x)
        cdf = math.sqrt(2 * math.pi) / x * sum(math.exp(c * (2 * k - 1) ** 2) for k in range(1, 8))
        return min(max(1.0 - cdf, 0.0), 1.0)
    terms = (2 * (-1) ** (k - 1) * math.exp(-2 * k * k * x * x) for k in range(1, 101))
    return min(max(math.fsum(terms), 0.0), 1.0)


def _gamma_series(a: float, x: float) -> float:
    """Regularised lower incomplete gamma P(a, x) by its series (x < a + 1)."""
    term = total = 1.0 / a
    n = a
    for _ in range(1000):
        n += 1
        term *= x / n
        total += term
        if abs(term) < abs(total) * 1e-15:
            break
    return total * math.exp(-x + a * math.log(x) - math.lgamma(a))


def _gamma_fraction(a: float, x: float) -> float:
    """Regularised upper incomplete gamma Q(a, x) by Lentz's continued fraction (x >= a + 1)."""
    tiny = 1e-300
    b = x + 1 - a
    c, d = 1 / tiny, 1 / b
    h = d
    for i in range(1, 1000):
        an = -i * (i - a)
        b += 2
        d = an * d + b
        d = tiny if abs(d) < tiny else d
        c = b + an / c
        c = tiny if abs(c) < tiny else c
        d = 1 / d
        delta = d * c
        h *= delta
        if abs(delta - 1) < 1e-15:
            break
    return math.exp(-x + a * math.log(x) - math.lgamma(a)) * h


def chi2_sf(x: float, df: float) -> float:
    """P(X > x) for a chi-square distribution with ``df`` degrees of freedom."""
    if df <= 0:
        raise ValueError(f"df must be positive, got {df}")
    a, half = df / 2, x / 2
    if half <= 0:
        return 1.0
    if half < a + 1:
        return min(max(1.0 - _gamma_series(a, half), 0.0), 1.0)
    return min(max(_gamma_fraction(a, half), 0.0), 1.0)


# -- tests ---------------------------------------------------------------------


def _ks_pvalue(d: float, n: float, m: float) -> float:
    en = math.sqrt(n * m / (n + m))
    return kolmogorov_sf((en + 0.12 + 0.11 / en) * d)


def ks_2samp(a: ArrayLike, b: ArrayLike) -> TestResult:
    """Two-sample KS on raw samples (NaN dropped); asymptotic two-sided p-value."""
    x = np.sort(np.asarray(a, dtype=np.float64))
    y = np.sort(np.asarray(b, dtype=np.float64))
    x, y = x[~np.isnan(x)], y[~np.isnan(y)]
    if x.size == 0 or y.size == 0:
        raise ValueError(f"ks_2samp needs two non-empty samples, got {x.size} and {y.size} values")
    points = np.concatenate([x, y])
    cdf_x = np.searchsorted(x, points, side="right") / x.size
    cdf_y = np.searchsorted(y, points, side="right") / y.size
    d = float(np.max(np.abs(cdf_x - cdf_y)))
    return TestResult(d, _ks_pvalue(d, x.size, y.size))


def ks_from_counts(counts_a: ArrayLike, counts_b: ArrayLike) -> TestResult:
    """KS between two histograms with shared bins (counts, not proportions)."""
    a = np.asarray(counts_a, dtype=np.float64)
    b = np.asarray(counts_b, dtype=np.float64)
    pa, pb = _pair(a, b)
    d = float(np.max(np.abs(np.cumsum(pa) - np.cumsum(pb))))
    return TestResult(d, _ks_pvalue(d, float(a.sum()), float(b.sum())))


def chi2_homogeneity(counts_a: ArrayLike, counts_b: ArrayLike) -> TestResult:
    """Chi-square test that two histograms (counts, shared bins) share one distribution."""
    a = np.asarray(counts_a, dtype=np.float64)
    b = np.asarray(counts_b, dtype=np.float64)
    _pair(a, b)
    used = (a + b) > 0
    a, b = a[used], b[used]
    if a.size < 2:
        return TestResult(0.0, 1.0)
    n_a, n_b = a.sum(), b.sum()
    pooled = (a + b) / (n_a + n_b)
    expected_a, expected_b = pooled * n_a, pooled * n_b
    stat = float(np.sum((a - expected_a) ** 2 / expected_a) + np.sum((b - expected_b) ** 2 / expected_b))
    return TestResult(stat, chi2_sf(stat, a.size - 1))


Alternative = Literal["greater", "less", "two-sided"]


def _z_pvalue(z: float, alternative: Alternative) -> float:
    if alternative == "greater":
        return normal_sf(z)
    if alternative == "less":
        return normal_sf(-z)
    return min(2 * normal_sf(abs(z)), 1.0)


def two_proportion_ztest(
    successes_a: float, n_a: float, successes_b: float, n_b: float, alternative: Alternative = "greater"
) -> TestResult:
    """Pooled z-test of rate a against rate b; ``greater``: is rate a higher?"""
    if n_a <= 0 or n_b <= 0:
        raise ValueError(f"both samples need observations, got n_a={n_a}, n_b={n_b}")
    pooled = (successes_a + successes_b) / (n_a + n_b)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n_a + 1 / n_b))
    diff = successes_a / n_a - successes_b / n_b
    if se == 0:
        return TestResult(0.0, 1.0)
    z = diff / se
    return TestResult(z, _z_pvalue(z, alternative))


def mean_shift_ztest(
    mean: float, count: float, baseline_mean: float, baseline_std: float, baseline_count: float | None = None
) -> TestResult:
    """Two-sided z-test of a window mean against the baseline mean (baseline std as sigma)."""
    if count <= 0:
        raise ValueError(f"count must be positive, got {count}")
    inverse_n = 1 / count + (1 / baseline_count if baseline_count else 0.0)
    se = baseline_std * math.sqrt(inverse_n)
    if se == 0:
        return TestResult(0.0, 1.0 if mean == baseline_mean else 0.0)
    z = (mean - baseline_mean) / se
    return TestResult(z, _z_pvalue(z, "two-sided"))


# -- multiple testing ----------------------------------------------------------


def _checked(pvalues: Sequence[float] | FloatArray) -> FloatArray:
    p = np.asarray(pvalues, dtype=np.float64)
    if p.ndim != 1 or np.any(np.isnan(p)) or np.any((p < 0) | (p > 1)):
        raise ValueError(f"p-values must be a 1-d array in [0, 1]: {p.tolist()}")
    return p


def holm(pvalues: Sequence[float] | FloatArray) -> FloatArray:
    """Holm-Bonferroni adjusted p-values (controls the family-wise error rate)."""
    p = _checked(pvalues)
    m = p.size
    order = np.argsort(p, kind="stable")
    scaled = np.minimum(p[order] * (m - np.arange(m)), 1.0)
    adjusted = np.empty(m, dtype=np.float64)
    adjusted[order] = np.maximum.accumulate(scaled) if m else scaled
    return adjusted


def benjamini_hochberg(pvalues: Sequence[float] | FloatArray) -> FloatArray:
    """Benjamini-Hochberg adjusted p-values (controls the false discovery rate)."""
    p = _checked(pvalues)
    m = p.size
    order = np.argsort(p, kind="stable")
    scaled = np.minimum(p[order] * m / np.arange(1, m + 1), 1.0)
    adjusted = np.empty(m, dtype=np.float64)
    adjusted[order] = np.minimum.accumulate(scaled[::-1])[::-1] if m else scaled
    return adjusted
