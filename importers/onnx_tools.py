"""Small ONNX graph utilities shared by the source converters."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as dist_version

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from importers.model import DISTANCES, LABEL, PROBABILITIES, Outputs, Signature

TARGET_OPSET = {"": 17, "ai.onnx.ml": 3}


def session(onnx_bytes: bytes) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return ort.InferenceSession(onnx_bytes, options, providers=["CPUExecutionProvider"])


def predict(onnx_bytes: bytes, signature: Signature, X: np.ndarray) -> Outputs:
    """Run the graph as a worker would and read its outputs by the signature."""
    names = signature.outputs
    results = dict(zip(names, session(onnx_bytes).run(names, {signature.input_name: X}), strict=True))

    def get(name: str | None) -> np.ndarray | None:
        return None if name is None else np.asarray(results[name])

    labels = get(signature.output_label)
    values = get(signature.output_value)
    return Outputs(
        labels=None if labels is None else labels.reshape(-1),
        probabilities=get(signature.output_probabilities),
        values=None if values is None else values.reshape(-1),
        distances=get(signature.output_distances),
    )


def normalized_bytes(model: onnx.ModelProto) -> bytes:
    """Serialize with each opset listed once (skl2onnx lists the default domain twice)."""
    opsets = {(o.domain, o.version) for o in model.opset_import}
    del model.opset_import[:]
    model.opset_import.extend(helper.make_opsetid(d, v) for d, v in sorted(opsets))
    return bytes(model.SerializeToString())


def rename_values(model: onnx.ModelProto, renames: Mapping[str, str]) -> None:
    """Rename graph inputs/outputs (and every node edge using them) in place."""
    graph = model.graph
    for value in [*graph.input, *graph.output]:
        value.name = renames.get(value.name, value.name)
    for node in graph.node:
        node.input[:] = [renames.get(n, n) for n in node.input]
        node.output[:] = [renames.get(n, n) for n in node.output]


def add_scores_head(
    model: onnx.ModelProto, raw_output: str, classes: Sequence[int] | Sequence[str], softmax: bool
) -> None:
    """Replace output ``raw_output`` [N, C] by ``label`` [N] and ``probabilities`` [N, C] (float32).

    ``softmax``: the raw output holds logits; otherwise it already holds probabilities."""
    graph = model.graph
    scores = "rtml_scores"
    graph.node.append(helper.make_node("Cast", [raw_output], [scores], to=TensorProto.FLOAT))
    if softmax:
        graph.node.append(helper.make_node("Softmax", [scores], [PROBABILITIES], axis=1))
    else:
        graph.node.append(helper.make_node("Identity", [scores], [PROBABILITIES]))
    index = "rtml_argmax"
    graph.node.append(helper.make_node("ArgMax", [PROBABILITIES], [index], axis=1, keepdims=0))
    label_type = TensorProto.STRING if isinstance(classes[0], str) else TensorProto.INT64
    table = numpy_helper.from_array(
        np.array(list(classes), dtype=object if label_type == TensorProto.STRING else np.int64)
    )
    table.name = "rtml_classes"
    graph.initializer.append(table)
    graph.node.append(helper.make_node("Gather", [table.name, index], [LABEL], axis=0))
    del graph.output[:]
    graph.output.extend(
        [
            helper.make_tensor_value_info(LABEL, label_type, [None]),
            helper.make_tensor_value_info(PROBABILITIES, TensorProto.FLOAT, [None, len(classes)]),
        ]
    )


def add_value_head(model: onnx.ModelProto, raw_output: str, name: str) -> None:
    """Replace the outputs by ``name`` = float32 ``raw_output`` reshaped to [N, 1]."""
    graph = model.graph
    shape = numpy_helper.from_array(np.array([-1, 1], dtype=np.int64), "rtml_value_shape")
    graph.initializer.append(shape)
    graph.node.append(helper.make_node("Cast", [raw_output], ["rtml_value_f"], to=TensorProto.FLOAT))
    graph.node.append(helper.make_node("Reshape", ["rtml_value_f", shape.name], [name]))
    del graph.output[:]
    graph.output.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, [None, 1]))


def output_shape(model: onnx.ModelProto, name: str) -> list[int | str | None]:
    for value in model.graph.output:
        if value.name == name:
            dims = value.type.tensor_type.shape.dim
            return [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in dims]
    raise KeyError(name)


def versions(*dists: str) -> dict[str, str]:
    """Installed versions of ``dists`` (distribution names), skipping absent ones."""
    found = {}
    for dist in ("onnx", "onnxruntime", "numpy", *dists):
        try:
            found[dist] = dist_version(dist)
        except PackageNotFoundError:
            continue
    return found


__all__ = ["DISTANCES", "TARGET_OPSET", "add_scores_head", "add_value_head", "predict", "session"]
