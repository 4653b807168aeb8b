"""Feature validation names the offending value and the model's expectation."""

from __future__ import annotations

import math

import pytest

from runtime.errors import InvalidInput
from runtime.features import check_row, check_rows


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ([1.0, 2.0, 3.0], "features has 3 values; model 'iris' v2 expects 4"),
        ([1.0, math.nan, 3.0, 4.0], "features[1] is NaN; model 'iris' v2 expects 4 finite floats"),
        ([1.0, 2.0, math.inf, 4.0], "features[2] is infinite"),
        ([1.0, 2.0, 3.0, "4"], "features[3] is '4'"),
        ([True, 2.0, 3.0, 4.0], "features[0] is True"),
        ("1,2,3,4", "features must be a list of 4 numbers, got str"),
        ([1.0, 2.0, 3.0, "x" * 500], "features[3] is 'xxxxxxxx"),
    ],
)
def test_bad_rows(row: object, message: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        check_row(row, 4, "iris", "2")
    assert message in caught.value.message
    assert len(caught.value.message) < 200  # untrusted values are truncated, not echoed whole


def test_good_rows_pass_and_batches_name_the_row() -> None:
    check_row([1, 2.5, -3, 0], 4, "iris", "1")
    with pytest.raises(InvalidInput, match=r"features_batch\[1\] has 2 values"):
        check_rows([[1, 2, 3, 4], [1, 2]], 4, "iris", "1", "features_batch")


def test_hostile_json_gets_an_error_naming_the_problem_not_a_crash() -> None:
    """Issue 11: an integer too large for a float, and nesting too deep to print, are 422s."""
    with pytest.raises(InvalidInput, match=r"features\[0\] is an integer too large for a float"):
        check_row([10**400, 1.0], 2, "m", "1")
    deep: object = []
    for _ in range(5000):
        deep = [deep]
    with pytest.raises(InvalidInput, match=r"features\[1\] is a JSON array"):
        check_row([1.0, deep], 2, "m", "1")


def test_json_nested_beyond_any_parser_is_a_400() -> None:
    from gateway.v1 import parse_json_object
    from runtime.errors import BadRequest

    body = b'{"features": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    with pytest.raises(BadRequest, match="nested too deeply"):
        parse_json_object(body)
