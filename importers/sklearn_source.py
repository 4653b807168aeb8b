"""scikit-learn estimators and Pipelines (from ``.pkl`` / ``.joblib`` files or objects) to ONNX.

Loading a pickle runs code: this module is used offline by ``rtml models import``
only, never by the serving path, and the file must come from a trusted source.
"""

from __future__ import annotations

import pickle  # offline import of trusted files only; see module docstring
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from importers import dbscan, hist_gb, sampling
from importers.extras import require
from importers.model import (
    DISTANCES,
    INPUT_NAME,
    LABEL,
    PROBABILITIES,
    VALUE,
    Converted,
    Outputs,
    Signature,
)
from importers.onnx_tools import TARGET_OPSET, normalized_bytes, rename_values, versions
from runtime.errors import NotAModel, UnreadableModel, UnsupportedModel

FRAMEWORK_DISTS = ("scikit-learn", "skl2onnx")


def load_file(path: Path) -> Any:
    """Unpickle a ``.pkl`` or ``.joblib`` file (trusted sources only)."""
    require("sklearn", "importing a scikit-learn model")
    try:
        if path.suffix == ".joblib":
            joblib = require("joblib", "reading a .joblib file")
            return joblib.load(path)
        with open(path, "rb") as f:
            return pickle.load(f)  # noqa: S301  # offline, trusted source (documented)
    except Exception as exc:  # unpickling raises anything: EOFError, UnpicklingError, ImportError...
        raise UnreadableModel(
            f"{path}: cannot be loaded as a pickle/joblib file: {type(exc).__name__}: {exc}"
        ) from exc


def convert(model: Any, name: str, source_format: str = "sklearn-pickle") -> Converted:
    """Convert a fitted estimator or Pipeline; raises NotAModel / UnsupportedModel."""
    final = _check_estimator(model)
    n_features = _n_features(model)
    if type(final).__name__ == "DBSCAN":
        if final is not model:
            raise UnsupportedModel("DBSCAN inside a Pipeline is not supported; import the DBSCAN alone")
        onnx_bytes, signature, reference = dbscan.convert(model)
    else:
        signature = _signature(model, final, n_features)
        onnx_bytes = to_onnx_bytes(model, name, n_features, signature)
        reference = _reference(model, signature)
    names = getattr(model, "feature_names_in_", None)
    return Converted(
        onnx_bytes=onnx_bytes,
        signature=signature,
        reference=reference,
        framework="scikit-learn",
        source_format=source_format,
        framework_versions=versions(*FRAMEWORK_DISTS),
        feature_names=[str(n) for n in names] if names is not None else None,
        hints=sampling.sklearn_hints(model, n_features),
        params=params(model),
    )


def _check_estimator(model: Any) -> Any:
    base = require("sklearn.base", "importing a scikit-learn model")
    if not isinstance(model, base.BaseEstimator):
        raise NotAModel(
            f"the file holds a {type(model).__module__}.{type(model).__name__}, not a scikit-learn model"
        )
    final = model.steps[-1][1] if hasattr(model, "steps") else model
    validation = require("sklearn.utils.validation", "importing a scikit-learn model")
    try:
        validation.check_is_fitted(final)
    except Exception as exc:
        raise NotAModel(f"{type(final).__name__} is not fitted") from exc
    return final


def _n_features(model: Any) -> int:
    n = getattr(model, "n_features_in_", None)
    if n is None:
        raise UnsupportedModel(
            f"{type(model).__name__} does not say how many features it takes (n_features_in_)"
        )
    return int(n)


def _signature(model: Any, final: Any, n_features: int) -> Signature:
    base = require("sklearn.base", "importing a scikit-learn model")
    if base.is_classifier(final):
        proba = PROBABILITIES if hasattr(model, "predict_proba") else None
        return Signature(
            "classification",
            n_features,
            classes=_classes(final),
            output_label=LABEL,
            output_probabilities=proba,
        )
    if base.is_regressor(final):
        return Signature("regression", n_features, output_value=VALUE)
    if hasattr(final, "cluster_centers_") and hasattr(model, "predict") and hasattr(model, "transform"):
        k = len(final.cluster_centers_)
        return Signature(
            "clustering", n_features, classes=list(range(k)), output_label=LABEL, output_distances=DISTANCES
        )
    raise UnsupportedModel(
        f"{type(final).__name__}: rtml imports classifiers, regressors and clustering models "
        "(KMeans-like, DBSCAN); this estimator is none of them"
    )


def _classes(final: Any) -> list[int] | list[str]:
    classes = list(final.classes_)
    if all(isinstance(c, str | np.str_) for c in classes):
        return [str(c) for c in classes]
    if all(float(c).is_integer() for c in classes):
        return [int(c) for c in classes]
    raise UnsupportedModel(f"class labels must be integers or strings; got {classes}")


def to_onnx_bytes(model: Any, name: str, n_features: int, signature: Signature | None = None) -> bytes:
    """Convert with skl2onnx: input ``float_input`` [None, n_features] float32; classifiers
    output ``label`` and ``probabilities`` (no ZipMap), regressors ``variable``, KMeans
    ``label`` and ``distances``. The graph is named ``name`` (deterministic bytes)."""
    skl2onnx = require("skl2onnx", "converting a scikit-learn model")
    types = require("skl2onnx.common.data_types", "converting a scikit-learn model")
    hist_gb.register()
    try:
        with warnings.catch_warnings():
            # skl2onnx reads attributes scikit-learn has deprecated (SVC probA_, ...): not the user's to fix
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            onx = skl2onnx.convert_sklearn(
                model,
                name=name,
                initial_types=[(INPUT_NAME, types.FloatTensorType([None, n_features]))],
                options={id(model): {"zipmap": False}} if hasattr(model, "predict_proba") else None,
                target_opset=TARGET_OPSET,
            )
    except UnsupportedModel:
        raise
    except Exception as exc:  # skl2onnx raises RuntimeError/NotImplementedError/TypeError...
        raise UnsupportedModel(
            f"skl2onnx cannot convert {_describe(model)}: {type(exc).__name__}: {exc}"
        ) from exc
    if signature is not None and signature.output_distances:
        rename_values(onx, {"scores": DISTANCES})
    return normalized_bytes(onx)


def _reference(model: Any, signature: Signature) -> Any:
    names = getattr(model, "feature_names_in_", None)
    dtype = _fitted_dtype(model)

    def reference(rows: np.ndarray) -> Outputs:
        # float32 rows widen to float64 exactly, so the original sees the values ONNX will.
        X: Any = rows.astype(dtype, copy=False)
        if names is not None:  # fitted on a DataFrame: predict on one, as its owner would
            X = require("pandas", "running a model fitted on a DataFrame").DataFrame(rows, columns=names)
        if signature.task == "regression":
            return Outputs(values=np.asarray(model.predict(X), dtype=np.float64).reshape(-1))
        labels = np.asarray(model.predict(X)).reshape(-1)
        if signature.task == "clustering":
            return Outputs(labels=labels, distances=np.asarray(model.transform(X), dtype=np.float64))
        proba = model.predict_proba(X) if signature.output_probabilities else None
        return Outputs(labels=labels, probabilities=proba)

    return reference


def _fitted_dtype(model: Any) -> np.dtype[Any]:
    """The float type the original model must be fed.

    Most estimators convert what they are given; k-means does not: its Cython kernels take the
    dtype it was fitted with (``cluster_centers_``) and refuse the other ("Buffer dtype mismatch,
    expected 'const float' but got 'double'"). Scalers in front of it preserve the dtype, so the
    rows are cast at the pipeline's entrance."""
    steps = [step for _, step in model.steps] if hasattr(model, "steps") else [model]
    for step in steps:
        centers = getattr(step, "cluster_centers_", None)
        if isinstance(centers, np.ndarray) and centers.dtype in (np.float32, np.float64):
            return np.dtype(centers.dtype)
    return np.dtype(np.float32)


def _describe(model: Any) -> str:
    if hasattr(model, "steps"):
        return "Pipeline(" + ", ".join(type(step).__name__ for _, step in model.steps) + ")"
    return type(model).__name__


def params(model: Any) -> dict[str, Any]:
    """JSON-safe scalar hyper-parameters of the (final) estimator."""
    final = model.steps[-1][1] if hasattr(model, "steps") else model
    simple = (bool, int, float, str, type(None))
    found = {
        k: v
        for k, v in sorted(final.get_params(deep=False).items())
        if isinstance(v, simple) and v != "deprecated"
    }
    found = {k: v for k, v in found.items() if not (isinstance(v, float) and not np.isfinite(v))}
    return {"estimator": _describe(model), **found}
