"""ONNX converters for scikit-learn's HistGradientBoosting{Classifier,Regressor}.

skl2onnx 1.20 fails on scikit-learn >= 1.8 trees ("Expected an int, got a boolean":
it passes Python booleans as the missing-value flags). These converters build the
TreeEnsemble node straight from the fitted predictors (``model._predictors``) and are
registered in place of skl2onnx's, so they also apply inside Pipelines.

Exactness: a split goes left when ``x <= num_threshold`` (float64); the ONNX node
compares float32 inputs with float32 thresholds, so each threshold is rounded *down*
to the largest float32 not above it, which gives the same decision for every float32
input. NaN follows ``missing_go_to_left`` (``nodes_missing_value_tracks_true``).
Categorical splits (bitsets) are not supported and refused.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from runtime.errors import UnsupportedModel

_registered = False


def register() -> None:
    """Install the converters in skl2onnx (idempotent)."""
    global _registered
    if _registered:
        return
    from skl2onnx import update_registered_converter
    from skl2onnx.common.shape_calculator import (
        calculate_linear_classifier_output_shapes,
        calculate_linear_regressor_output_shapes,
    )
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    update_registered_converter(
        HistGradientBoostingClassifier,
        "SklearnHistGradientBoostingClassifier",
        calculate_linear_classifier_output_shapes,
        _convert_classifier,
        options={"zipmap": [True, False, "columns"], "nocl": [True, False], "raw_scores": [False]},
    )
    update_registered_converter(
        HistGradientBoostingRegressor,
        "SklearnHistGradientBoostingRegressor",
        calculate_linear_regressor_output_shapes,
        _convert_regressor,
    )
    _registered = True


def tree_attributes(model: Any, classifier: bool) -> dict[str, Any]:
    """TreeEnsemble attributes (without post_transform) of a fitted model."""
    columns: dict[str, list[Any]] = {key: [] for key in _NODE_KEYS}
    weights: dict[str, list[Any]] = {"treeids": [], "nodeids": [], "ids": [], "weights": []}
    per_iteration = len(model._predictors[0])
    for iteration, predictors in enumerate(model._predictors):
        for k, predictor in enumerate(predictors):
            _add_tree(columns, weights, predictor.nodes, iteration * per_iteration + k, k)
    prefix = "class" if classifier else "target"
    attrs: dict[str, Any] = {f"nodes_{key}": value for key, value in columns.items()}
    attrs.update({f"{prefix}_{key}": value for key, value in weights.items()})
    attrs["base_values"] = [float(v) for v in np.ravel(model._baseline_prediction)]
    return attrs


_NODE_KEYS = ("treeids", "nodeids", "featureids", "modes", "values", "truenodeids", "falsenodeids")


def _add_tree(
    columns: dict[str, list[Any]], weights: dict[str, list[Any]], nodes: np.ndarray, tree: int, target: int
) -> None:
    if nodes["is_categorical"].any():
        raise UnsupportedModel("HistGradientBoosting with categorical splits cannot be converted to ONNX")
    columns.setdefault("missing_value_tracks_true", [])
    for node_id, node in enumerate(nodes):
        leaf = bool(node["is_leaf"])
        columns["treeids"].append(tree)
        columns["nodeids"].append(node_id)
        columns["featureids"].append(0 if leaf else int(node["feature_idx"]))
        columns["modes"].append("LEAF" if leaf else "BRANCH_LEQ")
        columns["values"].append(0.0 if leaf else _float32_floor(float(node["num_threshold"])))
        columns["truenodeids"].append(0 if leaf else int(node["left"]))
        columns["falsenodeids"].append(0 if leaf else int(node["right"]))
        columns["missing_value_tracks_true"].append(0 if leaf else int(node["missing_go_to_left"]))
        if leaf:
            for key, value in zip(weights, (tree, node_id, target, float(node["value"])), strict=True):
                weights[key].append(value)


def _float32_floor(threshold: float) -> float:
    """Largest float32 <= threshold: ``x32 <= t`` iff ``x32 <= _float32_floor(t)``."""
    rounded = np.float32(threshold)
    if float(rounded) > threshold:
        rounded = np.nextafter(rounded, np.float32(-np.inf))
    return float(rounded)


def _link(model: Any) -> str:
    return type(model._loss.link).__name__


def _convert_classifier(scope: Any, operator: Any, container: Any) -> None:
    model = operator.raw_operator
    attrs = tree_attributes(model, classifier=True)
    classes = model.classes_
    if all(isinstance(c, str) for c in classes):
        attrs["classlabels_strings"] = [str(c) for c in classes]
    else:
        attrs["classlabels_int64s"] = [int(c) for c in classes]
    attrs["post_transform"] = "LOGISTIC" if len(classes) == 2 else "SOFTMAX"
    container.add_node(
        "TreeEnsembleClassifier",
        operator.inputs[0].full_name,
        [operator.outputs[0].full_name, operator.outputs[1].full_name],
        op_domain="ai.onnx.ml",
        op_version=1,
        name=scope.get_unique_operator_name("HistGradientBoostingClassifier"),
        **attrs,
    )


def _convert_regressor(scope: Any, operator: Any, container: Any) -> None:
    model = operator.raw_operator
    link = _link(model)
    if link not in ("IdentityLink", "LogLink"):
        raise UnsupportedModel(f"HistGradientBoostingRegressor with a {link} loss cannot be converted")
    attrs = tree_attributes(model, classifier=False)
    raw = scope.get_unique_variable_name("raw") if link == "LogLink" else operator.outputs[0].full_name
    container.add_node(
        "TreeEnsembleRegressor",
        operator.inputs[0].full_name,
        raw,
        op_domain="ai.onnx.ml",
        op_version=1,
        name=scope.get_unique_operator_name("HistGradientBoostingRegressor"),
        n_targets=1,
        aggregate_function="SUM",
        post_transform="NONE",
        **attrs,
    )
    if link == "LogLink":
        container.add_node(
            "Exp", raw, operator.outputs[0].full_name, name=scope.get_unique_operator_name("Exp")
        )
