"""Validation of feature rows against a model's input spec, shared by the gateway
(HTTP answers 422) and the workers (dead letter ``invalid_input``)."""

from __future__ import annotations

import math
from collections.abc import Sequence

from runtime.errors import InvalidInput


def check_row(row: object, n_features: int, model: str, version: str, where: str = "features") -> None:
    """Raise InvalidInput naming the first bad value; ``row`` comes from untrusted JSON."""
    if not isinstance(row, list):
        raise InvalidInput(f"{where} must be a list of {n_features} numbers, got {type(row).__name__}")
    if len(row) != n_features:
        raise InvalidInput(f"{where} has {len(row)} values; model '{model}' v{version} expects {n_features}")
    for index, value in enumerate(row):
        # bool is an int subclass; True as a feature is almost always a caller bug.
        if isinstance(value, bool) or not isinstance(value, int | float):
            shown = _shown(value)
            raise InvalidInput(
                f"{where}[{index}] is {shown}; model '{model}' v{version} expects {n_features} finite floats"
            )
        if isinstance(value, int) and not _fits_float(value):
            raise InvalidInput(
                f"{where}[{index}] is an integer too large for a float; model '{model}' v{version} "
                f"expects {n_features} finite floats"
            )
        if not math.isfinite(value):
            kind = "NaN" if value != value else "infinite"
            raise InvalidInput(
                f"{where}[{index}] is {kind}; model '{model}' v{version} expects {n_features} finite floats"
            )


def _shown(value: object) -> str:
    """The start of a value for an error message; a structure nested too deeply to repr is named."""
    if isinstance(value, list | dict):
        return f"a JSON {'array' if isinstance(value, list) else 'object'}"
    return repr(value)[:40]


def _fits_float(value: int) -> bool:
    try:
        float(value)
    except OverflowError:
        return False
    return True


def check_rows(rows: Sequence[object], n_features: int, model: str, version: str, field: str) -> None:
    for index, row in enumerate(rows):
        check_row(row, n_features, model, version, where=f"{field}[{index}]")
