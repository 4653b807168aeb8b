"""Baseline statistics the drift detector compares live traffic with: per-feature
distributions of reference rows and the distribution of the model's outputs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np

from importers.model import Outputs
from rtml_client.stats import histogram, quantile_bin_edges
from schemas.model_metadata import Baseline, FeatureBaseline, OutputBaseline

N_BINS = 10


def compute_baseline(
    X_train: np.ndarray, feature_names: Sequence[str], proba_test: np.ndarray, classes: Sequence[int]
) -> Baseline:
    """Classifiers: feature distributions of the training split; output distributions of
    the predictions on the held-out split (training-set confidences are inflated)."""
    del classes  # the columns of proba_test already follow them
    outputs = Outputs(labels=proba_test.argmax(axis=1), probabilities=proba_test)
    return Baseline(
        features=features_baseline(X_train, feature_names),
        output=output_baseline(outputs, None, "test"),
    )


def features_baseline(X: np.ndarray, feature_names: Sequence[str]) -> dict[str, FeatureBaseline]:
    return {name: feature_baseline(X[:, i]) for i, name in enumerate(feature_names)}


def output_baseline(
    outputs: Outputs,
    classes: Sequence[int | str] | None,
    source: Literal["train", "test", "sample"],
) -> OutputBaseline:
    """Class (or cluster) shares and confidence for labelled outputs, value distribution for regressors.

    With ``classes`` None the labels are column indices (argmax of probabilities)."""
    if outputs.values is not None:
        values = np.asarray(outputs.values, dtype=np.float64).reshape(-1)
        return OutputBaseline(source=source, count=values.size, value=feature_baseline(values))
    assert outputs.labels is not None
    labels = np.asarray(outputs.labels).reshape(-1)
    proportions = None
    if classes is None:
        proportions = np.bincount(labels.astype(np.int64), minlength=_width(outputs)) / labels.size
    else:
        proportions = np.array([np.mean(labels == c) for c in classes])
    confidence = None
    if outputs.probabilities is not None:
        confidence = feature_baseline(np.asarray(outputs.probabilities, dtype=np.float64).max(axis=1))
    return OutputBaseline(
        source=source,
        count=labels.size,
        class_proportions=proportions.tolist(),
        confidence=confidence,
    )


def _width(outputs: Outputs) -> int:
    return 0 if outputs.probabilities is None else int(outputs.probabilities.shape[1])


def feature_baseline(values: np.ndarray, n_bins: int = N_BINS) -> FeatureBaseline:
    """Summary statistics and a quantile histogram of one column (NaN = missing)."""
    column = np.asarray(values, dtype=np.float64)
    present = column[~np.isnan(column)]
    if present.size == 0:
        raise ValueError("cannot build a baseline from a column with no values")
    edges = bin_edges(present, n_bins)
    counts = histogram(present, edges)
    return FeatureBaseline(
        count=int(present.size),
        mean=float(present.mean()),
        std=float(present.std()),
        min=float(present.min()),
        max=float(present.max()),
        bin_edges=edges.tolist(),
        bin_proportions=(counts / present.size).tolist(),
        missing_rate=1 - present.size / column.size,
    )


def bin_edges(present: np.ndarray, n_bins: int = N_BINS) -> np.ndarray:
    """Quantile edges; one bin per value for columns with few distinct values (the shared rule)."""
    edges: np.ndarray = quantile_bin_edges(present, n_bins)
    return edges
