"""Keras/TensorFlow and PyTorch sources, and ONNX files: conversion and parity (no Kafka).

The TensorFlow and PyTorch cases are skipped, with the reason printed (``pytest -rs``), only
where those wheels are not installed.
"""

from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
from skl2onnx import to_onnx
from sklearn.datasets import make_classification
from sklearn.linear_model import LinearRegression, LogisticRegression

from importers import ImportOptions, import_model
from runtime.errors import NotAModel, UnsupportedModel
from runtime.registry import ModelRegistry
from tests.integration.test_import_stack import FRAMEWORK_WARNINGS

pytestmark = FRAMEWORK_WARNINGS
needs_tf = pytest.mark.skipif(
    importlib.util.find_spec("tensorflow") is None or importlib.util.find_spec("tf2onnx") is None,
    reason="TensorFlow/tf2onnx not installed (pip install 'rtml[tensorflow]'): Keras/TensorFlow case skipped",
)
needs_torch = pytest.mark.skipif(
    importlib.util.find_spec("torch") is None,
    reason="PyTorch not installed (pip install 'rtml[torch]'): PyTorch case skipped",
)
X = np.random.default_rng(0).normal(size=(200, 4)).astype(np.float32)


def served(registry: ModelRegistry, name: str, rows: np.ndarray) -> dict[str, np.ndarray]:
    meta = registry.verify(name, registry.latest(name))
    session = ort.InferenceSession(
        str(registry.model_path(name, meta.version)), providers=["CPUExecutionProvider"]
    )
    return dict(zip(meta.output_names, session.run(meta.output_names, {meta.input_name: rows}), strict=True))


@pytest.fixture
def registry(tmp_path: Path) -> ModelRegistry:
    return ModelRegistry(tmp_path / "registry")


@pytest.fixture(scope="module")
def keras_model() -> Any:
    if importlib.util.find_spec("keras") is None:
        pytest.skip("Keras not installed (pip install 'rtml[tensorflow]')")
    import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((4,)),
            keras.layers.Dense(8, activation="relu"),
            keras.layers.Dense(3, activation="softmax"),
        ]
    )
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(X, (X[:, 0] > 0).astype(int) + (X[:, 1] > 1).astype(int), epochs=3, verbose=0)
    return model


@needs_tf
def test_keras_file(keras_model: Any, registry: ModelRegistry, tmp_path: Path) -> None:
    path = tmp_path / "mlp.keras"
    keras_model.save(path)
    result = import_model(path, "mlp", registry, ImportOptions(classes=["low", "mid", "high"]))
    meta = result.metadata
    assert (meta.task, meta.source_format, meta.classes) == (
        "classification",
        "keras",
        ["low", "mid", "high"],
    )
    assert result.report.passed and meta.params["output_logits"] is False
    out = served(registry, "mlp", X[:20])
    proba = np.asarray(keras_model(X[:20]))
    np.testing.assert_allclose(out["probabilities"], proba, atol=1e-5)
    assert out["label"].tolist() == [["low", "mid", "high"][i] for i in proba.argmax(axis=1)]


@needs_tf
def test_tensorflow_saved_model(keras_model: Any, registry: ModelRegistry, tmp_path: Path) -> None:
    keras_model.export(str(tmp_path / "saved"), format="tf_saved_model", verbose=False)
    result = import_model(tmp_path / "saved", "saved", registry)
    assert result.metadata.source_format == "tf-savedmodel" and result.report.passed
    assert result.metadata.source is not None and result.metadata.source.sha256 is not None
    np.testing.assert_allclose(
        served(registry, "saved", X[:20])["probabilities"], keras_model(X[:20]), atol=1e-5
    )


@needs_torch
def test_torchscript_classifier_with_logits(registry: ModelRegistry, tmp_path: Path) -> None:
    import torch

    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3)).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit.script is deprecated upstream
        torch.jit.script(module).save(str(tmp_path / "mlp.pt"))  # type: ignore[no-untyped-call]
    result = import_model(tmp_path / "mlp.pt", "ts", registry)
    meta = result.metadata
    assert (meta.source_format, meta.task, meta.classes, meta.params["output_logits"]) == (
        "torchscript",
        "classification",
        [0, 1, 2],
        True,
    )
    with torch.no_grad():
        proba = torch.softmax(module(torch.from_numpy(X[:20])), dim=1).numpy()
    out = served(registry, "ts", X[:20])
    np.testing.assert_allclose(out["probabilities"], proba, atol=1e-5)
    assert out["label"].tolist() == proba.argmax(axis=1).tolist()


@needs_torch
def test_torch_module_with_input_spec(registry: ModelRegistry) -> None:
    import torch

    class Net(torch.nn.Module):  # no Linear first: the input width must be given
        def __init__(self) -> None:
            super().__init__()
            self.scale = torch.nn.Parameter(torch.ones(4))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return (x * self.scale).sum(dim=1, keepdim=True)

    with pytest.raises(UnsupportedModel, match="--n-features"):
        import_model(Net(), "net", registry)
    result = import_model(Net(), "net", registry, ImportOptions(n_features=4))
    assert result.metadata.task == "regression" and result.metadata.source_format == "torch-module"
    np.testing.assert_allclose(
        served(registry, "net", X[:5])["variable"].reshape(-1), X[:5].sum(axis=1), atol=1e-5
    )


@needs_torch
def test_torch_state_dict_is_not_a_model(registry: ModelRegistry, tmp_path: Path) -> None:
    import torch

    torch.save(torch.nn.Linear(4, 1).state_dict(), tmp_path / "weights.pt")
    with pytest.raises(NotAModel, match="a state_dict needs its module"):
        import_model(tmp_path / "weights.pt", "weights", registry)
    assert not registry.root.exists()


def test_onnx_file_classifier_and_regressor(registry: ModelRegistry, tmp_path: Path) -> None:
    Xc, y = make_classification(200, 4, random_state=0)
    clf = LogisticRegression().fit(Xc, y)
    (tmp_path / "clf.onnx").write_bytes(
        to_onnx(clf, Xc[:1].astype(np.float32), options={"zipmap": False}).SerializeToString()
    )
    result = import_model(tmp_path / "clf.onnx", "clf", registry)
    meta = result.metadata
    assert (meta.task, meta.classes, meta.output_label, meta.output_probabilities) == (
        "classification",
        [0, 1],
        "label",
        "probabilities",
    )
    assert (
        meta.source_format == "onnx"
        and meta.source_sha256 == meta.onnx_sha256
        and result.report.max_abs_diff == 0
    )
    reg = LinearRegression().fit(Xc, Xc.sum(axis=1))
    (tmp_path / "reg.onnx").write_bytes(to_onnx(reg, Xc[:1].astype(np.float32)).SerializeToString())
    meta = import_model(tmp_path / "reg.onnx", "reg", registry).metadata
    assert (meta.task, meta.output_value) == ("regression", "variable")
