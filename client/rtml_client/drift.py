"""Offline drift report between two samples of features, computed with :mod:`rtml_client.stats`
(the statistics module the live drift detector uses too, so both agree on the same data).

Per feature: PSI and Jensen-Shannon distance over quantile bins of the baseline, the two-sample
KS statistic and p-value (Holm-adjusted across features), and the mean shift in baseline
standard deviations. A feature has drifted when the change is both material and significant:
its PSI reaches ``psi_threshold`` *and* its adjusted KS p-value is at most ``alpha``. PSI alone
flags noise on small samples (its expected value without drift is about
``(bins - 1) * (1/n + 1/m)``); the KS p-value alone flags negligible differences on very large
ones. The defaults (PSI 0.1, alpha 0.01) are those of rtml's live drift detector (its PSI
warning threshold and family alpha), which applies the same "large and significant" rule.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from rtml_client import stats
from rtml_client.results import DriftReport

Matrix = npt.NDArray[np.float64]
N_BINS = 10


@dataclass(frozen=True)
class DriftThresholds:
    psi_threshold: float = stats.PSI_MODERATE
    alpha: float = 0.01
    n_bins: int = N_BINS


def detect_drift(
    baseline: Matrix, current: Matrix, feature_names: Sequence[str], thresholds: DriftThresholds
) -> DriftReport:
    """``baseline`` and ``current`` are 2-d float arrays with the same columns (NaN = missing)."""
    columns = [_feature(baseline[:, i], current[:, i], thresholds.n_bins) for i in range(baseline.shape[1])]
    adjusted = stats.holm([column["ks_pvalue"] for column in columns]).tolist()
    features: dict[str, dict[str, Any]] = {}
    for name, column, pvalue in zip(feature_names, columns, adjusted, strict=True):
        drifted = column["psi"] >= thresholds.psi_threshold and pvalue <= thresholds.alpha
        features[name] = {**column, "ks_pvalue_adjusted": pvalue, "drifted": bool(drifted)}
    drifted_names = [name for name, feature in features.items() if feature["drifted"]]
    return DriftReport(
        overall_drift=bool(drifted_names),
        drifted_features=drifted_names,
        n_drifted=len(drifted_names),
        drift_share=len(drifted_names) / max(len(features), 1),
        n_baseline=int(baseline.shape[0]),
        n_current=int(current.shape[0]),
        features=features,
        thresholds={**thresholds.__dict__, "multiple_testing": "holm"},
    )


def _feature(baseline: Matrix, current: Matrix, n_bins: int) -> dict[str, Any]:
    base = baseline[~np.isnan(baseline)]
    now = current[~np.isnan(current)]
    if base.size == 0 or now.size == 0:
        raise ValueError(f"a feature has no values (baseline {base.size}, current {now.size})")
    edges = quantile_edges(base, n_bins)
    expected, actual = stats.histogram(base, edges), stats.histogram(now, edges)
    ks = stats.ks_2samp(base, now)
    base_moments = stats.moments(*stats.totals(base))
    current_moments = stats.moments(*stats.totals(now))
    return {
        "psi": stats.psi(expected, actual),
        "js_distance": stats.js_distance(expected, actual),
        "ks_statistic": ks.statistic,
        "ks_pvalue": ks.pvalue,
        "mean_shift": stats.mean_shift(current_moments.mean, base_moments.mean, base_moments.std),
        "baseline_mean": base_moments.mean,
        "current_mean": current_moments.mean,
        "missing_rate": 1.0 - now.size / max(current.size, 1),
    }


def quantile_edges(values: Matrix, n_bins: int = N_BINS) -> Matrix:
    """Bin edges of a baseline column, as rtml model metadata (``FeatureBaseline``) builds them."""
    return stats.quantile_bin_edges(values, n_bins)
