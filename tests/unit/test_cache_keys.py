"""Cache keys: same features -> same key; model, version or any value differs -> different key."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from runtime.cache_keys import (
    cache_key,
    cache_keys,
    decode_value,
    encode_value,
    invalidation_pattern,
    version_tag,
)

finite = st.floats(allow_nan=False, allow_infinity=False, width=64)
rows = st.lists(finite, min_size=1, max_size=32)


@given(rows)
def test_key_is_deterministic_and_ignores_int_float_spelling(row: list[float]) -> None:
    assert cache_key("p:", "m", "1", row) == cache_key("p:", "m", "1", list(row))
    integral = [float(int(v)) for v in row if abs(v) < 2**52]
    if integral:
        assert cache_key("p:", "m", "1", integral) == cache_key("p:", "m", "1", [int(v) for v in integral])


@given(rows)
def test_negative_zero_equals_zero(row: list[float]) -> None:
    flipped = [-0.0 if v == 0 else v for v in row]
    assert cache_key("p:", "m", "1", row) == cache_key("p:", "m", "1", flipped)


@given(rows, st.integers(min_value=0, max_value=31), finite)
def test_any_changed_value_changes_the_key(row: list[float], index: int, value: float) -> None:
    index %= len(row)
    changed = list(row)
    changed[index] = value
    same = row[index] == value or (row[index] == 0 and value == 0)
    assert (cache_key("p:", "m", "1", row) == cache_key("p:", "m", "1", changed)) == same


@given(rows)
def test_model_and_version_are_part_of_the_key(row: list[float]) -> None:
    keys = {cache_key("p:", model, version, row) for model in ("a", "b") for version in ("1", "2")}
    assert len(keys) == 4


@given(
    st.one_of(st.integers(-(2**63), 2**63 - 1), st.text(max_size=8)),
    st.one_of(st.none(), st.lists(finite, max_size=5)),
)
def test_values_round_trip(label: int | str, probabilities: list[float] | None) -> None:
    assert decode_value(encode_value(label, probabilities)) == (label, probabilities)


@given(
    st.integers(min_value=1, max_value=8).flatmap(
        lambda n: st.lists(st.lists(finite, min_size=n, max_size=n), min_size=1, max_size=6)
    )
)
def test_batched_keys_equal_single_keys(batch: list[list[float]]) -> None:
    assert cache_keys("p:", "m", "3", batch) == [cache_key("p:", "m", "3", row) for row in batch]


def test_a_replaced_artifact_never_shares_keys_with_the_old_one() -> None:
    row = [5.1, 3.5, 1.4, 0.2]
    old, new = version_tag("1", "a" * 64), version_tag("1", "b" * 64)
    assert old == "1." + "a" * 16
    assert cache_key("p:", "m", old, row) != cache_key("p:", "m", new, row)


def test_invalidation_patterns_cover_a_model_or_one_version_and_escape_globs() -> None:
    assert invalidation_pattern("rtml:p:", "iris") == "rtml:p:iris:*"
    assert invalidation_pattern("rtml:p:", "iris", "1") == "rtml:p:iris:1.*"
    assert invalidation_pattern("t*:p:", "a[b]", "2") == "t\\*:p:a\\[b\\]:2.*"


def test_key_precision_lets_near_identical_rows_share_a_key_on_both_sides() -> None:
    near, far = [5.1234, 3.5, 1.4, 0.2], [5.1249, 3.5, 1.4, 0.2]
    assert cache_key("p:", "m", "1", near, 2) == cache_key("p:", "m", "1", far, 2)
    assert cache_key("p:", "m", "1", near) != cache_key("p:", "m", "1", far)  # off by default
    assert cache_key("p:", "m", "1", near, 3) != cache_key("p:", "m", "1", far, 3)
    # The workers' batch path and the gateway's single-row path agree, rounding included.
    batch = np.array([near, far, [2.675, 0.0, -0.0, 1e-9]])
    assert cache_keys("p:", "m", "1", batch, 2) == [cache_key("p:", "m", "1", list(row), 2) for row in batch]


@pytest.mark.parametrize(
    "raw",
    [b"", b"not json", b"{}", b"[1]", b"[1, 2, 3]", b'[true, null]', b'[[1], null]', b'[1, "x"]',
     b'[1, [0.5, "a"]]', b"\xff\xfe"],
)  # fmt: skip
def test_a_corrupt_cached_value_reads_as_a_miss(raw: bytes) -> None:
    assert decode_value(raw) is None
