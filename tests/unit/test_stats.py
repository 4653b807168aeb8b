"""Property tests of the pure drift maths (rtml_client.stats); scipy serves as an oracle only."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy import stats as sp

from rtml_client import stats

FAST = settings(max_examples=150, deadline=None)
finite = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)
counts = st.lists(st.integers(0, 10_000), min_size=2, max_size=12).filter(lambda c: sum(c) > 0)


@st.composite
def count_pairs(draw: st.DrawFn) -> tuple[list[int], list[int]]:
    n = draw(st.integers(2, 12))
    pair = st.lists(st.integers(0, 10_000), min_size=n, max_size=n).filter(lambda c: sum(c) > 0)
    return draw(pair), draw(pair)


@st.composite
def edges(draw: st.DrawFn) -> list[float]:
    points = draw(st.lists(st.floats(-1e3, 1e3, allow_nan=False), min_size=2, max_size=11, unique=True))
    return sorted(points)


pvalues = st.lists(st.floats(0, 1, allow_nan=False), min_size=0, max_size=30)


# -- binning and totals ----------------------------------------------------------------------


@FAST
@given(
    # Values on a 1e-3 grid: two distinct values closer than a float can halve have no midpoint.
    st.lists(st.one_of(finite.map(lambda v: round(v, 3)), st.just(math.nan)), max_size=300).filter(
        lambda v: any(not math.isnan(x) for x in v)
    )
)
def test_quantile_bin_edges_are_increasing_and_give_few_valued_columns_a_bin_per_value(
    values: list[float],
) -> None:
    bin_edges = stats.quantile_bin_edges(values, n_bins=10)
    present = np.asarray([v for v in values if not math.isnan(v)])
    assert np.all(np.diff(bin_edges) > 0)
    assert bin_edges[0] <= present.min() and present.max() <= bin_edges[-1]
    distinct = np.unique(present)
    if distinct.size <= 10:
        counts = stats.histogram(present, bin_edges)
        assert counts.size == max(distinct.size, 1)
        assert np.all(counts == [np.sum(present == v) for v in distinct])


def test_quantile_bin_edges_refuse_a_column_without_numbers() -> None:
    with pytest.raises(ValueError, match="no numeric values"):
        stats.quantile_bin_edges([math.nan, math.nan])


@FAST
@given(edges(), st.lists(st.one_of(finite, st.just(math.nan)), max_size=200))
def test_histogram_counts_every_non_nan_value_once(bin_edges: list[float], values: list[float]) -> None:
    counted = stats.histogram(values, bin_edges)
    assert counted.shape == (len(bin_edges) - 1,)
    assert counted.sum() == sum(not math.isnan(v) for v in values)


@FAST
@given(edges(), st.lists(finite, max_size=100))
def test_bin_index_matches_the_half_open_bin_rule(bin_edges: list[float], values: list[float]) -> None:
    last = len(bin_edges) - 2
    for value, index in zip(values, stats.bin_index(values, bin_edges), strict=True):
        low_ok = index == 0 or bin_edges[index] <= value
        high_ok = index == last or value < bin_edges[index + 1]
        assert low_ok and high_ok


def test_bin_index_marks_nan_as_minus_one() -> None:
    assert stats.bin_index([math.nan, 0.5], [0.0, 1.0, 2.0]).tolist() == [-1, 0]


@FAST
@given(st.lists(st.floats(-1e3, 1e3), min_size=1, max_size=200), st.integers(1, 199), finite)
def test_totals_of_parts_add_up_to_the_moments_of_the_whole(
    values: list[float], cut: int, shift: float
) -> None:
    shift = shift / 1e3
    parts = [stats.totals(values[:cut], shift), stats.totals(values[cut:], shift)]
    n, s, ss = (sum(column) for column in zip(*parts, strict=True))
    merged = stats.moments(n, s, ss, shift)
    assert merged.count == len(values)
    assert merged.mean == pytest.approx(np.mean(values), abs=1e-6)
    assert merged.variance == pytest.approx(np.var(values), rel=1e-6, abs=1e-4)


def test_moments_of_nothing_are_nan() -> None:
    empty = stats.moments(0, 0.0, 0.0)
    assert empty.count == 0 and math.isnan(empty.mean) and math.isnan(empty.variance)


def test_shifted_totals_avoid_cancellation() -> None:
    values = 1e9 + np.array([0.0, 1.0, 2.0])
    centred = stats.moments(*stats.totals(values, 1e9), shift=1e9)
    assert centred.variance == pytest.approx(2 / 3)


# -- distances ---------------------------------------------------------------------------------


@FAST
@given(count_pairs())
def test_psi_is_non_negative_symmetric_and_zero_on_itself(pair: tuple[list[int], list[int]]) -> None:
    a, b = pair
    assert stats.psi(a, b) >= 0
    assert stats.psi(a, b) == pytest.approx(stats.psi(b, a), rel=1e-9, abs=1e-12)
    assert stats.psi(a, a) == pytest.approx(0.0, abs=1e-12)


@FAST
@given(count_pairs())
def test_psi_does_not_depend_on_scale(pair: tuple[list[int], list[int]]) -> None:
    a, b = pair
    assert stats.psi(a, b) == pytest.approx(stats.psi(np.array(a) * 7.0, np.array(b) / 3.0), rel=1e-9)


def test_psi_of_a_one_std_shift_is_major() -> None:
    rng = np.random.default_rng(1)
    bin_edges = np.quantile(rng.normal(size=10_000), np.linspace(0, 1, 11))
    base = stats.histogram(rng.normal(size=10_000), bin_edges)
    assert stats.psi(base, stats.histogram(rng.normal(size=2000), bin_edges)) < stats.PSI_MODERATE
    assert stats.psi(base, stats.histogram(rng.normal(1.0, size=2000), bin_edges)) > stats.PSI_MAJOR


@FAST
@given(count_pairs())
def test_js_distance_is_bounded_and_matches_scipy(pair: tuple[list[int], list[int]]) -> None:
    a, b = pair
    d = stats.js_distance(a, b)
    assert 0.0 <= d <= 1.0
    assert d == pytest.approx(stats.js_distance(b, a), abs=1e-12)
    assert d == pytest.approx(float(sp_jensenshannon(a, b)), abs=1e-7)


def sp_jensenshannon(a: list[int], b: list[int]) -> float:
    from scipy.spatial.distance import jensenshannon

    return float(jensenshannon(a, b, base=2))


@FAST
@given(st.integers(2, 8).flatmap(lambda n: st.tuples(*[arrays(np.float64, n, elements=st.floats(0, 1))] * 3)))
def test_js_distance_obeys_the_triangle_inequality(triple: tuple[np.ndarray, ...]) -> None:
    p, q, r = (x + 1e-3 for x in triple)
    assert stats.js_distance(p, r) <= stats.js_distance(p, q) + stats.js_distance(q, r) + 1e-9


@pytest.mark.parametrize("bad", [[0, 0], [-1, 2], [math.nan, 1.0], []])
def test_distances_refuse_unusable_histograms(bad: list[float]) -> None:
    with pytest.raises(ValueError):
        stats.psi(bad, [1] * max(len(bad), 1))


def test_histograms_with_different_bins_are_refused() -> None:
    with pytest.raises(ValueError, match="share bins"):
        stats.js_distance([1, 2], [1, 2, 3])


def test_mean_shift_in_standard_deviations() -> None:
    assert stats.mean_shift(12.0, 10.0, 2.0) == 1.0
    assert stats.mean_shift(5.0, 5.0, 0.0) == 0.0
    assert stats.mean_shift(6.0, 5.0, 0.0) == math.inf


# -- distributions and tests ---------------------------------------------------------------


@FAST
@given(st.floats(0.01, 4.0))
def test_kolmogorov_sf_matches_scipy(x: float) -> None:
    assert stats.kolmogorov_sf(x) == pytest.approx(float(sp.kstwobign.sf(x)), abs=1e-9)


@FAST
@given(st.floats(0.0, 500.0), st.integers(1, 120))
def test_chi2_sf_matches_scipy(x: float, df: int) -> None:
    assert stats.chi2_sf(x, df) == pytest.approx(float(sp.chi2.sf(x, df)), rel=1e-7, abs=1e-12)


@FAST
@given(st.floats(-8, 8))
def test_normal_sf_matches_scipy(z: float) -> None:
    assert stats.normal_sf(z) == pytest.approx(float(sp.norm.sf(z)), rel=1e-9, abs=1e-15)


@FAST
@given(
    arrays(np.float64, st.integers(20, 300), elements=st.floats(-100, 100)),
    arrays(np.float64, st.integers(20, 300), elements=st.floats(-100, 100)),
)
def test_ks_2samp_statistic_matches_scipy_and_pvalue_is_close(a: np.ndarray, b: np.ndarray) -> None:
    ours = stats.ks_2samp(a, b)
    theirs = sp.ks_2samp(a, b, method="asymp")
    assert ours.statistic == pytest.approx(theirs.statistic, abs=1e-12)
    assert 0.0 <= ours.pvalue <= 1.0
    assert ours.pvalue == pytest.approx(theirs.pvalue, abs=0.06)


def test_ks_2samp_detects_a_shift_and_accepts_the_same_distribution() -> None:
    rng = np.random.default_rng(7)
    assert stats.ks_2samp(rng.normal(size=800), rng.normal(size=900)).pvalue > 0.01
    assert stats.ks_2samp(rng.normal(size=800), rng.normal(0.3, size=900)).pvalue < 1e-6


def test_ks_from_counts_bounds_the_raw_statistic() -> None:
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=500), rng.normal(0.4, size=700)
    bin_edges = np.quantile(np.concatenate([a, b]), np.linspace(0, 1, 11))
    binned = stats.ks_from_counts(stats.histogram(a, bin_edges), stats.histogram(b, bin_edges))
    assert 0 < binned.statistic <= stats.ks_2samp(a, b).statistic + 1e-12


@FAST
@given(count_pairs())
def test_chi2_homogeneity_matches_scipy_contingency(pair: tuple[list[int], list[int]]) -> None:
    a, b = pair
    ours = stats.chi2_homogeneity(a, b)
    table = np.array([a, b])
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2 or (table.sum(axis=1) == 0).any():
        assert ours.pvalue <= 1.0
        return
    theirs = sp.chi2_contingency(table, correction=False)
    assert ours.statistic == pytest.approx(theirs.statistic, rel=1e-7, abs=1e-9)
    assert ours.pvalue == pytest.approx(theirs.pvalue, rel=1e-6, abs=1e-12)


def test_two_proportion_ztest_one_sided() -> None:
    assert stats.two_proportion_ztest(60, 500, 10, 500).pvalue < 1e-6
    assert stats.two_proportion_ztest(10, 500, 60, 500).pvalue > 0.99
    assert stats.two_proportion_ztest(0, 500, 0, 500).pvalue == 1.0


def test_mean_shift_ztest_is_two_sided() -> None:
    up = stats.mean_shift_ztest(10.5, 400, 10.0, 2.0)
    down = stats.mean_shift_ztest(9.5, 400, 10.0, 2.0)
    assert up.pvalue == pytest.approx(down.pvalue) and up.statistic == pytest.approx(5.0)


# -- multiple testing ----------------------------------------------------------------------


@FAST
@given(pvalues)
def test_holm_is_bounded_monotone_and_matches_its_definition(p: list[float]) -> None:
    adjusted = stats.holm(p)
    m = len(p)
    assert np.all(adjusted >= np.asarray(p) - 1e-15) and np.all(adjusted <= 1.0)
    order = np.argsort(p, kind="stable")
    expected = np.maximum.accumulate([min(1.0, (m - i) * p[j]) for i, j in enumerate(order)]) if m else []
    assert adjusted[order] == pytest.approx(np.asarray(expected), abs=1e-12)


@FAST
@given(pvalues)
def test_bh_is_bounded_and_no_stricter_than_holm(p: list[float]) -> None:
    bh, hm = stats.benjamini_hochberg(p), stats.holm(p)
    assert np.all(bh >= np.asarray(p) - 1e-15) and np.all(bh <= 1.0)
    assert np.all(bh <= hm + 1e-12)


def test_bh_known_values() -> None:
    assert stats.benjamini_hochberg([0.01, 0.04, 0.03, 0.2]).tolist() == pytest.approx(
        [0.04, 0.05333333, 0.05333333, 0.2]
    )


def test_corrections_refuse_nan() -> None:
    with pytest.raises(ValueError):
        stats.holm([0.1, math.nan])
