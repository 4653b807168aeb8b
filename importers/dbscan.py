"""DBSCAN has no ``predict``; rtml serves the documented rule instead:

    label(x) = label of the nearest core sample if its distance to x is <= eps, else -1

as an ONNX graph (Euclidean distances in float64 to every core sample, ArgMin,
Gather, Where). :func:`nearest_core_rule` is the same rule in plain NumPy; the import
holds the graph to it. Applied to the training rows, the rule gives every core
sample its own cluster and noise -1; a border point gets the cluster of its nearest
core sample (scikit-learn assigns it the first cluster that reached it, which can
differ when a border point is within eps of two clusters).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from importers.model import INPUT_NAME, LABEL, Outputs, Signature
from runtime.errors import UnsupportedModel


def check(model: Any) -> tuple[np.ndarray, np.ndarray, float]:
    """Core samples [M, F] float64, their labels [M] int64 and eps; refuses what the rule can't serve."""
    metric, p = model.metric, model.p
    if not (metric == "euclidean" or (metric == "minkowski" and p in (None, 2))):
        raise UnsupportedModel(f"DBSCAN with metric={metric!r} (p={p}) is not supported; only euclidean")
    if not hasattr(model, "core_sample_indices_"):
        raise UnsupportedModel("DBSCAN is not fitted (no core_sample_indices_)")
    if len(model.core_sample_indices_) == 0:
        raise UnsupportedModel("DBSCAN found no core samples: every row is noise, there is nothing to serve")
    cores = np.asarray(model.components_, dtype=np.float64)
    labels = np.asarray(model.labels_[model.core_sample_indices_], dtype=np.int64)
    return cores, labels, float(model.eps)


def nearest_core_rule(X: np.ndarray, cores: np.ndarray, labels: np.ndarray, eps: float) -> np.ndarray:
    """The serving rule in NumPy: [N] int64 labels, -1 for noise."""
    rows = np.asarray(X, dtype=np.float64)
    squared = ((rows[:, None, :] - cores[None, :, :]) ** 2).sum(axis=2)
    nearest = squared.argmin(axis=1)
    within = squared[np.arange(len(rows)), nearest] <= eps * eps
    return np.where(within, labels[nearest], -1).astype(np.int64)


def to_onnx(cores: np.ndarray, labels: np.ndarray, eps: float, name: str = "dbscan") -> bytes:
    n_features = cores.shape[1]
    consts = {
        "cores": cores[None, :, :].astype(np.float64),
        "core_labels": labels.astype(np.int64),
        "eps2": np.array(eps * eps, dtype=np.float64),
        "noise": np.array(-1, dtype=np.int64),
        "axis1": np.array([1], dtype=np.int64),
        "axis2": np.array([2], dtype=np.int64),
    }
    nodes = [
        helper.make_node("Cast", [INPUT_NAME], ["x64"], to=TensorProto.DOUBLE),
        helper.make_node("Unsqueeze", ["x64", "axis1"], ["x3"]),
        helper.make_node("Sub", ["x3", "cores"], ["diff"]),
        helper.make_node("Mul", ["diff", "diff"], ["sq"]),
        helper.make_node("ReduceSum", ["sq", "axis2"], ["d2"], keepdims=0),
        helper.make_node("ArgMin", ["d2"], ["nearest"], axis=1, keepdims=0),
        helper.make_node("ReduceMin", ["d2"], ["d2min"], axes=[1], keepdims=0),
        helper.make_node("LessOrEqual", ["d2min", "eps2"], ["within"]),
        helper.make_node("Gather", ["core_labels", "nearest"], ["core_label"], axis=0),
        helper.make_node("Where", ["within", "core_label", "noise"], [LABEL]),
    ]
    graph = helper.make_graph(
        nodes,
        name,
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, [None, n_features])],
        [helper.make_tensor_value_info(LABEL, TensorProto.INT64, [None])],
        [numpy_helper.from_array(value, key) for key, value in consts.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="rtml")
    onnx.checker.check_model(model)
    return bytes(model.SerializeToString())


def convert(model: Any) -> tuple[bytes, Signature, Any]:
    """ONNX bytes, signature and reference function of a fitted DBSCAN."""
    cores, labels, eps = check(model)
    classes = [-1, *sorted({int(v) for v in labels})]
    signature = Signature("clustering", cores.shape[1], classes=classes, output_label=LABEL)

    def reference(X: np.ndarray) -> Outputs:
        return Outputs(labels=nearest_core_rule(X, cores, labels, eps))

    return to_onnx(cores, labels, eps), signature, reference
