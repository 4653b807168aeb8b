"""Keras models (``.keras``/``.h5`` files, objects) and TensorFlow SavedModel directories,
converted with tf2onnx (extra ``tensorflow``)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from importers import heads
from importers.extras import require
from importers.model import INPUT_NAME, Converted, Outputs
from importers.onnx_tools import TARGET_OPSET, versions
from runtime.errors import UnreadableModel, UnsupportedModel

if TYPE_CHECKING:
    from importers.api import ImportOptions

DISTS = ("tensorflow-cpu", "tensorflow", "keras", "tf2onnx")


def convert_path(path: Path, name: str, options: ImportOptions) -> Converted:
    if path.is_dir():
        return convert_saved_model(path, name, options)
    keras = _keras()
    try:
        model = keras.models.load_model(path, compile=False)
    except Exception as exc:  # keras raises ValueError, OSError, zipfile errors...
        raise UnreadableModel(
            f"{path}: cannot be loaded as a Keras model: {type(exc).__name__}: {exc}"
        ) from exc
    return convert_model(model, name, options, source_format="keras")


def convert_model(model: Any, name: str, options: ImportOptions, source_format: str = "keras") -> Converted:
    """A Keras model object taking one [N, features] float input."""
    shape = tuple(model.inputs[0].shape) if getattr(model, "inputs", None) else ()
    if len(shape) != 2 or shape[1] is None:
        raise UnsupportedModel(f"the Keras model's input must be [N, features]; it is {shape}")
    n_features = int(shape[1])

    def call(X: np.ndarray) -> np.ndarray:
        return np.asarray(model(X, training=False))

    return _convert(lambda x: model(x, training=False), call, n_features, name, options, source_format)


def convert_saved_model(path: Path, name: str, options: ImportOptions) -> Converted:
    """A SavedModel directory with a ``serving_default`` signature of one input and one output."""
    tf = _tf()
    try:
        loaded = tf.saved_model.load(str(path))
    except Exception as exc:
        raise UnreadableModel(
            f"{path}: cannot be loaded as a SavedModel: {type(exc).__name__}: {exc}"
        ) from exc
    signature = loaded.signatures.get("serving_default")
    if signature is None:
        raise UnsupportedModel(f"{path}: the SavedModel has no 'serving_default' signature")
    (key, spec), *others = signature.structured_input_signature[1].items()
    outputs = list(signature.structured_outputs)
    if others or len(outputs) != 1 or len(spec.shape) != 2 or spec.shape[1] is None:
        raise UnsupportedModel(
            f"{path}: serving_default must take one [N, features] input and return one output"
        )

    def graph_fn(x: Any) -> Any:
        return signature(**{key: x})[outputs[0]]

    def call(X: np.ndarray) -> np.ndarray:
        return np.asarray(graph_fn(tf.constant(X)))

    return _convert(graph_fn, call, int(spec.shape[1]), name, options, "tf-savedmodel", keep=loaded)


def _convert(
    graph_fn: Callable[[Any], Any],
    call: Callable[[np.ndarray], np.ndarray],
    n_features: int,
    name: str,
    options: ImportOptions,
    source_format: str,
    keep: Any = None,
) -> Converted:
    tf, tf2onnx = _tf(), require("tf2onnx", "converting a TensorFlow/Keras model")
    probe = np.random.default_rng(0).normal(size=(heads.PROBE_ROWS, n_features)).astype(np.float32)
    head, logits = heads.choose(call(probe), n_features, options.task, options.classes)
    spec = [tf.TensorSpec([None, n_features], tf.float32, name=INPUT_NAME)]
    try:
        with _quiet():
            onx, _ = tf2onnx.convert.from_function(
                tf.function(graph_fn), input_signature=spec, opset=TARGET_OPSET[""]
            )
    except Exception as exc:  # tf2onnx raises many types
        raise UnsupportedModel(f"tf2onnx cannot convert the model: {type(exc).__name__}: {exc}") from exc
    onnx_bytes = heads.attach(onx, onx.graph.output[0].name, head, logits)

    def reference(X: np.ndarray, _alive: Any = keep) -> Outputs:  # _alive: the loaded SavedModel
        return head.postprocess(call(X))

    return Converted(
        onnx_bytes=onnx_bytes,
        signature=head.signature,
        reference=reference,
        framework="tensorflow",
        source_format=source_format,
        framework_versions=versions(*DISTS),
        params={"output_logits": logits},
    )


def _tf() -> Any:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return require("tensorflow", "importing a TensorFlow/Keras model")


def _keras() -> Any:
    _tf()
    return require("keras", "importing a Keras model")


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    import logging

    logger = logging.getLogger("tf2onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)
