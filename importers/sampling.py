"""Rows for the parity check: the user's sample, else rows drawn from statistics the
model carries (:class:`SampleHints`), else a synthetic sample from the input spec."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any, Literal

import numpy as np

from importers.model import SampleHints
from runtime.errors import BadSample

SampleSource = Literal["user", "model_statistics", "synthetic"]
DEFAULT_ROWS = 256


def read_csv(
    path: Path, n_features: int, feature_names: list[str] | None
) -> tuple[np.ndarray, list[str] | None]:
    """Rows of a CSV file as float32 and its header (None without one). Empty cells are NaN.

    With a header that names every feature of the model, columns are picked by name
    (extra columns, e.g. the target, are ignored); otherwise it needs n_features columns."""
    try:
        with open(path, newline="") as f:
            table = [row for row in csv.reader(f) if row]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise BadSample(f"sample {path}: cannot read it: {exc}") from exc
    if not table:
        raise BadSample(f"sample {path} is empty")
    header = None if _numeric(table[0]) else [h.strip() for h in table[0]]
    body = table[1:] if header else table
    if not body:
        raise BadSample(f"sample {path} has a header but no rows")
    columns = _columns(path, header or body[0], n_features, feature_names if header else None)
    try:
        rows = np.array([[_cell(row[i]) for i in columns] for row in body], dtype=np.float32)
    except (ValueError, IndexError) as exc:
        raise BadSample(f"sample {path}: every row needs {n_features} numeric columns: {exc}") from exc
    return rows, [header[i] for i in columns] if header else None


def _columns(path: Path, first: list[str], n_features: int, names: list[str] | None) -> list[int]:
    """Column indices to read: by name when the header names every feature, else all of them."""
    if names and set(names) <= set(first):
        return [first.index(n) for n in names]
    width = len(first)
    if width != n_features:
        raise BadSample(f"sample {path} has {width} columns; the model takes {n_features} features")
    return list(range(n_features))


def _numeric(row: list[str]) -> bool:
    try:
        [_cell(v) for v in row]
    except ValueError:
        return False
    return True


def _cell(value: str) -> float:
    value = value.strip()
    return float("nan") if value in ("", "NA", "NaN", "nan") else float(value)


def draw(
    hints: SampleHints, n_features: int, rows: int = DEFAULT_ROWS, seed: int = 0
) -> tuple[np.ndarray, SampleSource]:
    """float32 rows [rows, n_features] from the model's statistics, else standard normal."""
    rng = np.random.default_rng(seed)
    if hints.empty:
        return rng.normal(size=(rows, n_features)).astype(np.float32), "synthetic"
    if hints.rows is not None and len(hints.rows) >= rows:
        pick = rng.choice(len(hints.rows), size=rows, replace=False)
        return np.asarray(hints.rows[pick], dtype=np.float32), "model_statistics"
    X = _spread(hints, n_features, rows, rng)
    for column, values in hints.choices.items():
        X[:, column] = rng.choice(values, size=rows)
    if hints.rows is not None:  # the real rows first, drawn ones after
        X[: len(hints.rows)] = hints.rows
    return X.astype(np.float32), "model_statistics"


def _spread(hints: SampleHints, n_features: int, rows: int, rng: np.random.Generator) -> np.ndarray:
    mean = np.zeros(n_features) if hints.mean is None else np.nan_to_num(hints.mean)
    std = np.ones(n_features) if hints.std is None else np.where(np.nan_to_num(hints.std) > 0, hints.std, 1.0)
    X = rng.normal(mean, std, size=(rows, n_features))
    if hints.low is not None and hints.high is not None:
        known = ~np.isnan(hints.low) & ~np.isnan(hints.high)
        low, high = _widen(hints.low[known], hints.high[known])
        X[:, known] = rng.uniform(low, high, size=(rows, int(known.sum())))
    return X


def _widen(low: np.ndarray, high: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A tenth more on each side, so rows fall beyond the outermost splits too."""
    margin = np.maximum((high - low) * 0.1, 1e-3)
    return low - margin, high + margin


# -- statistics of scikit-learn models ---------------------------------------------------------


def sklearn_hints(model: Any, n_features: int) -> SampleHints:
    """Statistics a fitted model carries about its inputs: scaler means, imputer and
    one-hot categories, tree split ranges, support vectors, core samples, centres."""
    steps = [step for _, step in model.steps] if hasattr(model, "steps") else [model]
    first, final = steps[0], steps[-1]
    rows = _real_rows(final) if len(steps) == 1 else None
    mean, std = _centre(first)
    low, high = _tree_ranges(final, n_features) if len(steps) == 1 else (None, None)
    if len(steps) == 1 and mean is None and hasattr(final, "cluster_centers_"):
        mean, std = final.cluster_centers_.mean(axis=0), final.cluster_centers_.std(axis=0) + 1.0
    if rows is not None and mean is None:
        mean, std = rows.mean(axis=0), rows.std(axis=0)
    return SampleHints(rows=rows, mean=mean, std=std, low=low, high=high, choices=_choices(first))


def _real_rows(final: Any) -> np.ndarray | None:
    for attr in ("support_vectors_", "components_"):
        value = getattr(final, attr, None)
        if isinstance(value, np.ndarray) and value.ndim == 2 and type(final).__name__ in ("SVC", "DBSCAN"):
            return value
    return None


def _centre(step: Any) -> tuple[np.ndarray | None, np.ndarray | None]:
    if hasattr(step, "mean_") and hasattr(step, "scale_") and step.mean_ is not None:
        return np.asarray(step.mean_, dtype=np.float64), np.asarray(step.scale_, dtype=np.float64)
    if hasattr(step, "data_min_") and hasattr(step, "data_max_"):
        low, high = np.asarray(step.data_min_), np.asarray(step.data_max_)
        return (low + high) / 2, (high - low) / 4
    return None, None


def _tree_ranges(final: Any, n_features: int) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Range of split thresholds per feature (NaN where no split uses the feature)."""
    thresholds: list[tuple[np.ndarray, np.ndarray]] = []
    for tree in _trees(final):
        split = tree.feature >= 0
        thresholds.append((tree.feature[split], tree.threshold[split]))
    if hasattr(final, "_bin_mapper"):
        for j, edges in enumerate(final._bin_mapper.bin_thresholds_):
            if len(edges):
                thresholds.append((np.full(len(edges), j), np.asarray(edges)))
    if not thresholds:
        return None, None
    features = np.concatenate([f for f, _ in thresholds])
    values = np.concatenate([t for _, t in thresholds])
    low, high = np.full(n_features, np.nan), np.full(n_features, np.nan)
    for j in np.unique(features):
        chosen = values[features == j]
        low[j], high[j] = chosen.min(), chosen.max()
    return low, high


def _trees(final: Any) -> list[Any]:
    estimators = getattr(final, "estimators_", None)
    if estimators is None:
        return [final.tree_] if hasattr(final, "tree_") else []
    flat = np.ravel(np.asarray(estimators, dtype=object))
    return [e.tree_ for e in flat if hasattr(e, "tree_")]


def _choices(step: Any) -> dict[int, np.ndarray]:
    """Columns of a ColumnTransformer that feed a OneHotEncoder: their known categories."""
    found: dict[int, np.ndarray] = {}
    for _, transformer, columns in getattr(step, "transformers_", []):
        encoder = transformer.steps[-1][1] if hasattr(transformer, "steps") else transformer
        categories = getattr(encoder, "categories_", None)
        if categories is None or not isinstance(columns, list | np.ndarray | range):
            continue
        for column, values in zip(columns, categories, strict=False):
            if isinstance(column, int | np.integer) and np.issubdtype(np.asarray(values).dtype, np.number):
                found[int(column)] = np.asarray(values, dtype=np.float64)
    return found
