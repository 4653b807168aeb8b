"""Evaluation metrics in numpy: accuracy, precision, recall, F1, ROC-AUC and the confusion
matrix for classifiers; MAE, RMSE and R2 for regressors. (Checked against scikit-learn in the
tests; scikit-learn is not needed at run time.)"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[Any]


def classification(
    y_true: Array, y_pred: Array, probabilities: Array | None, classes: Sequence[Any] | None
) -> dict[str, Any]:
    """Binary problems score the positive class (the last of ``classes``, 1 for 0/1 labels);
    more classes are macro-averaged, ROC-AUC one-vs-rest. ``probabilities`` columns follow
    ``classes``."""
    labels = _labels(y_true, y_pred, classes)
    matrix = confusion_matrix(y_true, y_pred, labels)
    per_class = _per_class(matrix)
    binary = len(labels) == 2
    scores = per_class[-1] if binary else per_class.mean(axis=0)
    return {
        "task": "classification",
        "n_samples": int(y_true.size),
        "accuracy": float(np.trace(matrix) / max(matrix.sum(), 1)),
        "precision": float(scores[0]),
        "recall": float(scores[1]),
        "f1_score": float(scores[2]),
        "roc_auc": roc_auc(y_true, probabilities, list(classes or labels)),
        "average": f"binary (positive class {labels[-1]!r})" if binary else "macro",
        "labels": [_plain(label) for label in labels],
        "confusion_matrix": matrix.tolist(),
        "per_class": {
            str(_plain(label)): {"precision": p, "recall": r, "f1_score": f, "support": int(s)}
            for label, (p, r, f), s in zip(labels, per_class.tolist(), matrix.sum(axis=1), strict=True)
        },
    }


def regression(y_true: Array, y_pred: Array) -> dict[str, Any]:
    error = y_pred.astype(np.float64) - y_true.astype(np.float64)
    total = float(np.sum((y_true - y_true.mean()) ** 2))
    mse = float(np.mean(error**2))
    return {
        "task": "regression",
        "n_samples": int(y_true.size),
        "mae": float(np.mean(np.abs(error))),
        "mse": mse,
        "rmse": float(np.sqrt(mse)),
        "r2": 1.0 - float(np.sum(error**2)) / total if total > 0 else float("nan"),
    }


def confusion_matrix(y_true: Array, y_pred: Array, labels: Sequence[Any]) -> Array:
    """Rows: true label, columns: predicted label, both in ``labels`` order."""
    index = {label: i for i, label in enumerate(labels)}
    matrix = np.zeros((len(labels), len(labels)), dtype=np.int64)
    for true, pred in zip(y_true.tolist(), y_pred.tolist(), strict=True):
        matrix[index[true], index[pred]] += 1
    return matrix


def roc_auc(y_true: Array, probabilities: Array | None, classes: Sequence[Any]) -> float | None:
    """ROC-AUC (binary: of the last class's probability; otherwise macro one-vs-rest over the
    classes present). None without probabilities or when ``y_true`` holds a single class."""
    if probabilities is None or probabilities.ndim != 2 or probabilities.shape[1] != len(classes):
        return None
    truth = y_true.tolist()
    if len(classes) == 2:
        return _binary_auc(np.asarray([t == classes[1] for t in truth]), probabilities[:, 1])
    aucs = [
        _binary_auc(np.asarray([t == c for t in truth]), probabilities[:, i]) for i, c in enumerate(classes)
    ]
    present = [auc for auc in aucs if auc is not None]
    return float(np.mean(present)) if present else None


def _binary_auc(positive: Array, scores: Array) -> float | None:
    """Mann-Whitney U / (n_pos * n_neg), ties counted half (average ranks)."""
    n_pos = int(positive.sum())
    n_neg = positive.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    ranks = _average_ranks(scores.astype(np.float64))
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _average_ranks(values: Array) -> Array:
    _unique, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    mean_rank = ends - (counts - 1) / 2.0  # 1-based mean rank of each run of ties
    return np.asarray(mean_rank[inverse], dtype=np.float64)


def _per_class(matrix: Array) -> Array:
    """(precision, recall, f1) per class; 0 where undefined (no predictions or no support)."""
    true_positive = np.diag(matrix).astype(np.float64)
    predicted, actual = matrix.sum(axis=0), matrix.sum(axis=1)
    precision = np.divide(true_positive, predicted, out=np.zeros_like(true_positive), where=predicted > 0)
    recall = np.divide(true_positive, actual, out=np.zeros_like(true_positive), where=actual > 0)
    both = precision + recall
    f1 = np.divide(2 * precision * recall, both, out=np.zeros_like(true_positive), where=both > 0)
    return np.stack([precision, recall, f1], axis=1)


def _labels(y_true: Array, y_pred: Array, classes: Sequence[Any] | None) -> list[Any]:
    """The model's classes (in its order) plus any other label seen, sorted."""
    known = list(classes or [])
    seen = set(y_true.tolist()) | set(y_pred.tolist())
    return known + sorted(seen - set(known), key=str)


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value
