"""Running totals of one model version over a span of event time (a step, or a window).

Counts, sums, sums of squares and histogram bins only, never raw events, so a
window is the element-wise sum of its steps and memory is bounded by
bins x subjects x steps. Sums are of ``x - baseline mean`` (see
:func:`rtml_client.stats.moments`). Encoded with orjson for Kafka and tables.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from drift.layout import Layout
from rtml_client.stats import FloatArray, IntArray
from runtime.errors import TotalsMismatch

_INT_FIELDS = ("bins", "present", "missing", "below", "above", "classes")
_FLOAT_FIELDS = ("sums", "sums_sq")


@dataclass
class Totals:
    count: int
    """Records."""
    bins: IntArray
    """Histogram counts of every numeric subject, concatenated in layout order."""
    present: IntArray
    """Non-missing values per numeric subject."""
    missing: IntArray
    """Missing (null/NaN) values per numeric subject."""
    below: IntArray
    """Values under the baseline minimum, per numeric subject."""
    above: IntArray
    """Values over the baseline maximum, per numeric subject."""
    sums: FloatArray
    """Sum of (x - baseline mean) per numeric subject."""
    sums_sq: FloatArray
    """Sum of (x - baseline mean)^2 per numeric subject."""
    classes: IntArray
    """Predicted-class counts (last slot: labels not in the model's classes)."""
    first_ms: int = 0
    """Earliest event time counted (0: none)."""
    last_ms: int = 0
    """Latest event time counted (0: none)."""

    @classmethod
    def empty(cls, layout: Layout) -> Totals:
        s = layout.n_numeric

        def ints(size: int) -> IntArray:
            return np.zeros(size, dtype=np.int64)

        return cls(
            count=0,
            bins=ints(layout.total_bins),
            present=ints(s),
            missing=ints(s),
            below=ints(s),
            above=ints(s),
            sums=np.zeros(s, dtype=np.float64),
            sums_sq=np.zeros(s, dtype=np.float64),
            classes=ints(layout.n_classes),
        )

    def add(self, other: Totals) -> None:
        """Add ``other`` into this one, in place."""
        for name in (*_INT_FIELDS, *_FLOAT_FIELDS):
            mine, theirs = getattr(self, name), getattr(other, name)
            if mine.shape != theirs.shape:
                raise TotalsMismatch(f"{name} has {theirs.size} slots; expected {mine.size}")
            mine += theirs
        if other.count:
            self.first_ms = min(self.first_ms or other.first_ms, other.first_ms)
            self.last_ms = max(self.last_ms, other.last_ms)
        self.count += other.count

    def fits(self, layout: Layout) -> bool:
        expected = {"bins": layout.total_bins, "classes": layout.n_classes}
        sizes = {name: getattr(self, name).size for name in (*_INT_FIELDS, *_FLOAT_FIELDS)}
        return all(sizes[n] == expected.get(n, layout.n_numeric) for n in sizes)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"count": self.count, "first_ms": self.first_ms, "last_ms": self.last_ms}
        for name in (*_INT_FIELDS, *_FLOAT_FIELDS):
            out[name] = getattr(self, name).tolist()
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Totals:
        try:
            totals = cls(
                count=int(data["count"]),
                first_ms=int(data["first_ms"]),
                last_ms=int(data["last_ms"]),
                sums=_floats(data["sums"]),
                sums_sq=_floats(data["sums_sq"]),
                **{name: _ints(data[name]) for name in _INT_FIELDS},
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise TotalsMismatch(f"not a totals record: {exc}") from exc
        if any(getattr(totals, name).ndim != 1 for name in (*_INT_FIELDS, *_FLOAT_FIELDS)):
            raise TotalsMismatch("totals arrays must be flat")
        return totals

    def encode(self) -> bytes:
        return orjson.dumps(self.to_dict())

    @classmethod
    def decode(cls, data: bytes) -> Totals:
        try:
            return cls.from_dict(orjson.loads(data))
        except orjson.JSONDecodeError as exc:
            raise TotalsMismatch(f"not JSON: {exc}") from exc


def _ints(values: Any) -> IntArray:
    return np.asarray(values, dtype=np.int64)


def _floats(values: Any) -> FloatArray:
    return np.asarray(values, dtype=np.float64)


def sum_totals(layout: Layout, parts: Iterable[Totals]) -> Totals:
    """The element-wise sum of ``parts`` (a window from its steps)."""
    window = Totals.empty(layout)
    for part in parts:
        window.add(part)
    return window
