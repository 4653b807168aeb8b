"""Local model files for :class:`~rtml_client.ModelEvaluator`: ONNX through onnxruntime, pickle
and joblib files through joblib. Optional dependencies are imported only here, on first use.

**Loading a pickle or joblib file runs code stored in it**: only load files you trust.
"""

from __future__ import annotations

import json
import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[Any]
Matrix = npt.NDArray[np.float64]
EXTRA = "pip install 'rtml-client[evaluate]'"


@dataclass(frozen=True)
class ModelSpec:
    """What is known about a model: from rtml metadata, the original description's metadata
    (``model_name``, ``features``) or the served model's info."""

    name: str | None = None
    feature_names: list[str] | None = None
    n_features: int | None = None
    task: str | None = None  # "classification" | "regression"
    classes: list[Any] | None = None
    input_name: str | None = None
    output_label: str | None = None
    output_probabilities: str | None = None

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> ModelSpec:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        names = data.get("feature_names") or data.get("features")
        return cls(
            name=data.get("name") or data.get("model_name"),
            feature_names=list(names) if names else None,
            n_features=data.get("n_features") or (len(names) if names else None),
            task=data.get("task"),
            classes=data.get("classes"),
            input_name=data.get("input_name"),
            output_label=data.get("output_label"),
            output_probabilities=data.get("output_probabilities"),
        )

    def with_model(self, **known: Any) -> ModelSpec:
        """Fill what the metadata did not say from the model itself."""
        values = {
            key: value for key, value in known.items() if getattr(self, key) is None and value is not None
        }
        return ModelSpec(**{**self.__dict__, **values})


class Predictions(NamedTuple):
    labels: Array
    """Predicted labels (classifiers) or values (regressors), one per row."""
    probabilities: Matrix | None
    """Rows x classes, columns in ``classes`` order; None when the model gives none."""
    classes: list[Any] | None
    task: str


def load_local_model(path: str | os.PathLike[str], spec: ModelSpec) -> EstimatorModel | OnnxModel:
    suffix = Path(path).suffix.lower()
    if suffix == ".onnx":
        return OnnxModel(path, spec)
    if suffix in {".pkl", ".pickle", ".joblib"}:
        return EstimatorModel(_unpickle(Path(path)), spec)
    raise ValueError(f"cannot load {os.fspath(path)!r}: expected a .onnx, .pkl, .pickle or .joblib file")


def _unpickle(path: Path) -> Any:
    """joblib.load (which also reads plain pickles); plain pickle when joblib is missing.
    Either way this executes code from the file: trusted files only."""
    try:
        import joblib
    except ImportError:
        if path.suffix == ".joblib":
            raise ImportError(f"loading {path} needs joblib: {EXTRA}") from None
        with path.open("rb") as handle:
            return pickle.load(handle)  # noqa: S301 - the user's own file, offline (see docstring)
    return joblib.load(path)


class EstimatorModel:
    """Anything with ``predict`` (scikit-learn style); ``predict_proba`` and ``classes_`` if a classifier."""

    def __init__(self, estimator: Any, spec: ModelSpec) -> None:
        if not hasattr(estimator, "predict"):
            raise TypeError(f"the loaded object ({type(estimator).__name__}) has no predict() method")
        self.estimator = estimator
        classes = getattr(estimator, "classes_", None)
        classifier = classes is not None or hasattr(estimator, "predict_proba")
        self.spec = spec.with_model(
            task="classification" if classifier else "regression",
            classes=None if classes is None else [_plain(c) for c in classes],
            n_features=getattr(estimator, "n_features_in_", None),
        )

    def predict(self, X: Matrix) -> Predictions:
        labels = np.asarray(self.estimator.predict(X))
        probabilities = None
        if self.spec.task == "classification" and hasattr(self.estimator, "predict_proba"):
            probabilities = np.asarray(self.estimator.predict_proba(X), dtype=np.float64)
        return Predictions(labels, probabilities, self.spec.classes, self.spec.task or "classification")


class OnnxModel:
    """An ONNX model; outputs named by the metadata, else the first is the label (or value) and
    the second, if any, the class probabilities (a tensor or a ZipMap)."""

    def __init__(self, path: str | os.PathLike[str], spec: ModelSpec) -> None:
        try:
            import onnxruntime
        except ImportError:
            raise ImportError(f"evaluating an ONNX model needs onnxruntime: {EXTRA}") from None
        self.session = onnxruntime.InferenceSession(os.fspath(path), providers=["CPUExecutionProvider"])
        model_input = self.session.get_inputs()[0]
        outputs = [output.name for output in self.session.get_outputs()]
        self.dtype = np.float64 if "double" in str(model_input.type) else np.float32
        width = model_input.shape[1] if len(model_input.shape) == 2 else None
        self.spec = spec.with_model(
            input_name=model_input.name,
            output_label=outputs[0],
            output_probabilities=outputs[1] if len(outputs) > 1 else None,
            n_features=width if isinstance(width, int) else None,
            task="classification" if len(outputs) > 1 else "regression",
        )

    def predict(self, X: Matrix) -> Predictions:
        spec = self.spec
        wanted = [name for name in (spec.output_label, spec.output_probabilities) if name]
        results = self.session.run(wanted, {spec.input_name or "": X.astype(self.dtype)})
        labels = np.asarray(results[0]).ravel()
        probabilities, classes = None, spec.classes
        if len(results) > 1:
            probabilities, classes = _probabilities(results[1], classes)
        return Predictions(labels, probabilities, classes, spec.task or "classification")


def _probabilities(output: Any, classes: list[Any] | None) -> tuple[Matrix, list[Any] | None]:
    """A probability tensor as is; a ZipMap (one dict per row) in ``classes`` order."""
    if isinstance(output, list) and output and isinstance(output[0], dict):
        order = classes or list(output[0])
        return np.asarray([[row[c] for c in order] for row in output], dtype=np.float64), order
    return np.asarray(output, dtype=np.float64), classes


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value
