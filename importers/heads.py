"""Neural-network outputs to rtml's conventions.

A Keras or PyTorch model ends in one float output [N, width]. Width 1 (or task
"regression") is a regression value; width >= 2 a classifier whose columns follow
``classes`` (default 0..width-1). Columns that are non-negative and sum to 1 are
taken as probabilities, anything else as logits (softmax applied, in the graph and
to the original's output alike). The label is the class of the largest column.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import onnx

from importers.model import INPUT_NAME, LABEL, PROBABILITIES, VALUE, Outputs, Signature, Task
from importers.onnx_tools import add_scores_head, add_value_head, normalized_bytes
from runtime.errors import UnsupportedModel

PROBE_ROWS = 64


@dataclass(frozen=True)
class Head:
    signature: Signature
    postprocess: Callable[[np.ndarray], Outputs]
    """The original model's raw output -> Outputs, as the graph computes them."""


def choose(
    raw_probe: np.ndarray, n_features: int, task: Task | None, classes: list[int] | list[str] | None
) -> tuple[Head, bool]:
    """The head for an output like ``raw_probe``; also whether it holds logits."""
    raw = np.asarray(raw_probe, dtype=np.float64)
    if raw.ndim != 2:
        raise UnsupportedModel(f"the model's output must be [N, width]; got shape {raw.shape}")
    width = raw.shape[1]
    if task == "regression" or (task is None and width == 1):
        if width != 1:
            raise UnsupportedModel(f"a regression model must output [N, 1]; this one outputs width {width}")
        signature = Signature("regression", n_features, INPUT_NAME, output_value=VALUE)
        return Head(signature, lambda r: Outputs(values=np.asarray(r, np.float64).reshape(-1))), False
    if task not in (None, "classification"):
        raise UnsupportedModel(f"task {task!r} is not supported for neural-network outputs")
    labels = classes or list(range(width))
    if len(labels) != width:
        raise UnsupportedModel(f"{len(labels)} classes given for an output of width {width}")
    logits = not _is_probabilities(raw)
    signature = Signature(
        "classification",
        n_features,
        INPUT_NAME,
        labels,
        output_label=LABEL,
        output_probabilities=PROBABILITIES,
    )
    table = np.array(labels, dtype=object if isinstance(labels[0], str) else np.int64)

    def postprocess(output: np.ndarray) -> Outputs:
        scores = np.asarray(output, dtype=np.float64)
        proba = _softmax(scores) if logits else scores
        return Outputs(labels=table[proba.argmax(axis=1)], probabilities=proba)

    return Head(signature, postprocess), logits


def attach(model: onnx.ModelProto, raw_output: str, head: Head, logits: bool) -> bytes:
    """Append the head's nodes to ``model`` and serialize it."""
    signature = head.signature
    if signature.task == "regression":
        add_value_head(model, raw_output, VALUE)
    else:
        assert signature.classes is not None
        add_scores_head(model, raw_output, signature.classes, softmax=logits)
    return normalized_bytes(model)


def _is_probabilities(raw: np.ndarray) -> bool:
    return bool(np.all(raw >= 0) and np.allclose(raw.sum(axis=1), 1.0, atol=1e-4))


def _softmax(scores: np.ndarray) -> np.ndarray:
    shifted = np.exp(scores - scores.max(axis=1, keepdims=True))
    return np.asarray(shifted / shifted.sum(axis=1, keepdims=True))
