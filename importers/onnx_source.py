"""``.onnx`` files: validated with onnx.checker and a trial inference, registered as they are.

The signature is read from the graph: an int64/string output of rank 1 is the label; a
float [N, C] output next to it the probabilities (classifiers) or, when named like
distances/scores and the task is clustering, the distances; a lone float output the
regression value. ``task`` and ``classes`` override what the graph suggests.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
from onnx import TensorProto

from importers.model import Converted, Outputs, Signature, Task
from importers.onnx_tools import predict, session, versions
from runtime.errors import UnreadableModel, UnsupportedModel

_FLOATS = (TensorProto.FLOAT, TensorProto.DOUBLE)
_LABELS = (TensorProto.INT64, TensorProto.INT32, TensorProto.STRING)


def convert(
    data: bytes,
    task: Task | None = None,
    classes: list[int] | list[str] | None = None,
    n_features: int | None = None,
) -> Converted:
    model = load(data)
    input_name, width = _input(model, n_features)
    signature = _signature(model, input_name, width, task, classes)
    try:
        predict(data, signature, np.zeros((1, width), dtype=np.float32))
    except Exception as exc:  # onnxruntime raises its own exception types
        raise UnreadableModel(f"trial inference on zeros [1, {width}] failed: {exc}") from exc

    def reference(X: np.ndarray) -> Outputs:
        return predict(data, signature, X)

    return Converted(
        onnx_bytes=data,
        signature=signature,
        reference=reference,
        framework=model.producer_name or "onnx",
        source_format="onnx",
        framework_versions={
            **versions(),
            **({model.producer_name: model.producer_version} if model.producer_name else {}),
        },
        params={"producer": model.producer_name, "ir_version": model.ir_version},
    )


def load(data: bytes) -> onnx.ModelProto:
    try:
        model = onnx.load_model_from_string(data)
        onnx.checker.check_model(model)
        session(data)
    except Exception as exc:  # protobuf DecodeError, ValidationError, onnxruntime errors
        raise UnreadableModel(f"not a valid ONNX model: {type(exc).__name__}: {exc}") from exc
    return model


def _input(model: onnx.ModelProto, n_features: int | None) -> tuple[str, int]:
    initializers = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    if len(inputs) != 1:
        raise UnsupportedModel(
            f"rtml serves models with one input [N, features]; this one has {[i.name for i in inputs]}"
        )
    tensor = inputs[0].type.tensor_type
    dims = tensor.shape.dim
    if tensor.elem_type != TensorProto.FLOAT or len(dims) != 2:
        raise UnsupportedModel(
            f"input {inputs[0].name!r} must be float32 [N, features]; it is {inputs[0].type}"
        )
    width = dims[1].dim_value if dims[1].HasField("dim_value") else n_features
    if not width:
        raise UnsupportedModel(f"input {inputs[0].name!r} has no fixed feature count; pass n_features")
    return inputs[0].name, int(width)


def _signature(
    model: onnx.ModelProto, input_name: str, width: int, task: Task | None, classes: list[Any] | None
) -> Signature:
    outputs = {o.name: o.type.tensor_type for o in model.graph.output}
    label = next((n for n, t in outputs.items() if t.elem_type in _LABELS and len(t.shape.dim) == 1), None)
    floats = [n for n, t in outputs.items() if t.elem_type in _FLOATS]
    if label is None:
        if task not in (None, "regression") or not floats:
            raise UnsupportedModel(f"no label output (int64/string [N]) among {list(outputs)}")
        return Signature("regression", width, input_name, output_value=floats[0])
    scores = floats[0] if floats else None
    found_classes = classes or _classes(model, scores)
    if task == "clustering" or (task is None and scores in ("scores", "distances")):
        return Signature("clustering", width, input_name, found_classes, label, output_distances=scores)
    if not found_classes:
        raise UnsupportedModel("cannot tell the classes of this classifier; pass classes")
    return Signature("classification", width, input_name, found_classes, label, output_probabilities=scores)


def _classes(model: onnx.ModelProto, scores: str | None) -> list[int] | list[str] | None:
    for node in model.graph.node:
        for attr in node.attribute:
            if attr.name == "classlabels_int64s" and attr.ints:
                return [int(v) for v in attr.ints]
            if attr.name == "classlabels_strings" and attr.strings:
                return [v.decode() for v in attr.strings]
    if scores is None:
        return None
    shape = next(o.type.tensor_type.shape.dim for o in model.graph.output if o.name == scores)
    if len(shape) == 2 and shape[1].HasField("dim_value"):
        return list(range(shape[1].dim_value))
    return None
