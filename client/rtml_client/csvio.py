"""CSV plumbing for :meth:`BatchPredictor.predict_from_csv`: map columns to the model's features,
parse rows one at a time, and format output rows. Nothing here holds more than one chunk."""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from rtml_client.errors import InvalidInput
from rtml_client.results import Label


@dataclass(frozen=True)
class ColumnMap:
    """Which input column feeds each model feature, and how that was decided."""

    indices: tuple[int, ...]
    mode: str  # "name" (header matches the model's feature names), "explicit" or "position"
    header: tuple[str, ...]

    @property
    def width(self) -> int:
        return len(self.header)


def map_columns(
    header: Sequence[str],
    feature_names: Sequence[str] | None,
    n_features: int,
    explicit: Sequence[str] | None,
) -> ColumnMap:
    """By ``explicit`` column names, else by the model's feature names, else by position when
    the file has exactly ``n_features`` columns; otherwise an error naming what is missing."""
    columns = {name.strip(): i for i, name in enumerate(header)}
    if explicit is not None:
        return ColumnMap(_indices(columns, explicit, "feature_columns"), "explicit", tuple(header))
    if feature_names and all(name in columns for name in feature_names):
        return ColumnMap(_indices(columns, feature_names, "model features"), "name", tuple(header))
    if len(header) == n_features:
        return ColumnMap(tuple(range(n_features)), "position", tuple(header))
    missing = [name for name in feature_names or [] if name not in columns]
    raise InvalidInput(
        f"CSV columns {list(columns)[:20]} do not match the model: missing feature columns {missing[:20]} "
        f"and the file has {len(header)} columns, not {n_features}; pass feature_columns=[...]"
    )


def _indices(columns: dict[str, int], names: Sequence[str], what: str) -> tuple[int, ...]:
    missing = [name for name in names if name not in columns]
    if missing:
        raise InvalidInput(f"{what} {missing[:20]} are not CSV columns; the header has {list(columns)[:20]}")
    return tuple(columns[name] for name in names)


def parse_row(fields: Sequence[str], columns: ColumnMap) -> list[float] | str:
    """The feature values of one row, or a message saying why the row cannot be sent."""
    if len(fields) != columns.width:
        return f"has {len(fields)} fields; the header has {columns.width}"
    values = []
    for index in columns.indices:
        text = fields[index].strip()
        try:
            value = float(text)
        except ValueError:
            return f"column {columns.header[index]!r} value {text[:40]!r} is not a number"
        if not math.isfinite(value):
            return f"column {columns.header[index]!r} value {text[:40]!r} is not a finite number"
        values.append(value)
    return values


@dataclass
class RowOutcome:
    """What happened to one row: a prediction (with probabilities for classifiers) or an error."""

    prediction: Label | None = None
    probabilities: list[float] | None = None
    error: str | None = None


@dataclass
class Chunk:
    """Up to ``chunk_size`` consecutive rows; only the parsable ones are sent."""

    lines: list[int] = field(default_factory=list)  # each row's line number in the file (header: 1)
    fields: list[list[str]] = field(default_factory=list)
    parsed: list[list[float] | str] = field(default_factory=list)

    def sendable(self) -> list[list[float]]:
        return [row for row in self.parsed if not isinstance(row, str)]

    def outcomes(self, sent: list[RowOutcome]) -> Iterator[RowOutcome]:
        """One outcome per row, in row order: local parse errors merged with the sent rows' outcomes."""
        answers = iter(sent)
        for row in self.parsed:
            yield RowOutcome(error=row) if isinstance(row, str) else next(answers)


def output_header(header: Sequence[str], classes: Sequence[Any] | None) -> list[str]:
    probability_columns = [f"probability_{label}" for label in classes or []]
    return [*header, "prediction", "probability", *probability_columns, "error"]


def output_row(fields: Sequence[str], outcome: RowOutcome, n_classes: int, width: int) -> list[Any]:
    """The input fields (padded or cut to the header's width, so the output stays rectangular),
    then prediction, best probability, per-class probabilities and the error message."""
    fields = [*fields[:width], *[""] * (width - len(fields))]
    probabilities = list(outcome.probabilities or [])
    best = max(probabilities) if probabilities else None
    padded = (probabilities + [None] * n_classes)[:n_classes]
    prediction = "" if outcome.prediction is None else outcome.prediction
    cells = ["" if p is None else p for p in padded]
    return [*fields, prediction, "" if best is None else best, *cells, outcome.error or ""]


class CountingLines:
    """Iterates the lines of a text stream, counting characters read (progress for big files)."""

    def __init__(self, lines: Iterable[str]) -> None:
        self._lines = iter(lines)
        self.chars = 0

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        line = next(self._lines)
        self.chars += len(line)
        return line
