"""``ModelEvaluator``: quality metrics and drift reports for a local model file or a served model.

Local mode reads an ONNX model (needs ``onnxruntime``) or a pickle/joblib file (needs
``joblib`` and the model's own library, e.g. scikit-learn): ``pip install 'rtml-client[evaluate]'``.
**Loading a pickle or joblib file runs code stored in it**: only load files you trust. This is
an offline tool for your own files; the rtml serving path never unpickles anything.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from rtml_client import metrics
from rtml_client.batch import BatchPredictor
from rtml_client.client import MLClient
from rtml_client.drift import DriftThresholds, detect_drift
from rtml_client.local_models import Matrix, ModelSpec, Predictions, load_local_model
from rtml_client.protocol import DEFAULT_TIMEOUT_S
from rtml_client.results import DriftReport, EvaluationReport


class _ServedModel:
    """A model behind a gateway, predicted in chunks through :class:`BatchPredictor`."""

    def __init__(self, predictor: BatchPredictor, name: str, version: str | int | None) -> None:
        self.predictor, self.name, self.version = predictor, name, version
        info = predictor.client.get_model_info(name)
        self.spec = ModelSpec(name, info.feature_names, info.n_features, info.get("task"), info.classes)

    def predict(self, X: Matrix) -> Predictions:
        result = self.predictor.predict_batch(self.name, X.tolist(), model_version=self.version)
        probabilities = None if result.probabilities is None else np.asarray(result.probabilities, np.float64)
        task = self.spec.task or ("classification" if self.spec.classes else "regression")
        return Predictions(np.asarray(result.predictions), probabilities, self.spec.classes, task)


class ModelEvaluator:
    """Evaluate a model and compare feature distributions.

    ``ModelEvaluator(model_path=..., metadata_path=...)`` loads a local ``.onnx``, ``.pkl`` /
    ``.pickle`` or ``.joblib`` model (see the module docstring: a pickle runs code when loaded);
    ``metadata_path`` is an rtml ``metadata.json`` or a JSON with ``features`` (names) as in the
    original product description, and is optional. ``ModelEvaluator(base_url=..., model_name=...)``
    evaluates a served model through the gateway instead. Drift needs no model at all.
    """

    def __init__(
        self,
        model_path: str | os.PathLike[str] | None = None,
        metadata_path: str | os.PathLike[str] | None = None,
        *,
        base_url: str | None = None,
        model_name: str | None = None,
        model_version: str | int | None = None,
        api_key: str | None = None,
        timeout: float = DEFAULT_TIMEOUT_S,
        client: MLClient | None = None,
    ) -> None:
        spec = ModelSpec.from_file(metadata_path) if metadata_path is not None else ModelSpec()
        self._predictor: BatchPredictor | None = None
        self._model: Any = None
        if model_path is not None and (base_url is not None or client is not None):
            raise ValueError("pass model_path (a local model) or base_url/client (a served model), not both")
        if model_path is not None:
            self._model = load_local_model(model_path, spec)
        elif base_url is not None or client is not None:
            if not model_name:
                raise ValueError("a served model needs model_name=")
            self._predictor = BatchPredictor(base_url or "", api_key, timeout, client=client)
            self._model = _ServedModel(self._predictor, model_name, model_version)
        self.spec: ModelSpec = self._model.spec if self._model is not None else spec

    def __enter__(self) -> ModelEvaluator:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._predictor is not None:
            self._predictor.close()

    @property
    def feature_names(self) -> list[str] | None:
        return self.spec.feature_names

    def predict(self, X: Any) -> Predictions:
        """Labels (or values), class probabilities when the model gives them, classes, task."""
        if self._model is None:
            raise ValueError("no model: pass model_path=... or base_url=... and model_name=...")
        prediction: Predictions = self._model.predict(self._matrix(X))
        return prediction

    def evaluate(self, X: Any, y: Any) -> EvaluationReport:
        """Metrics of the model's predictions for ``X`` against the true ``y``."""
        truth = np.asarray(y).ravel()
        predicted = self.predict(X)
        if truth.size != predicted.labels.size:
            raise ValueError(f"y has {truth.size} values for {predicted.labels.size} rows of X")
        if predicted.task == "regression":
            return EvaluationReport(metrics.regression(truth, predicted.labels.ravel()))
        labels = predicted.labels.ravel()
        return EvaluationReport(
            metrics.classification(truth, labels, predicted.probabilities, predicted.classes)
        )

    def detect_drift(
        self,
        X_baseline: Any,
        X_current: Any,
        *,
        psi_threshold: float = DriftThresholds.psi_threshold,
        alpha: float = DriftThresholds.alpha,
        n_bins: int = DriftThresholds.n_bins,
    ) -> DriftReport:
        """Per-feature PSI, Jensen-Shannon distance, KS statistic and p-value (raw and
        Holm-adjusted), mean shift and a drifted flag; ``overall_drift`` if any feature drifted.
        A feature drifts when PSI >= ``psi_threshold`` and the adjusted KS p-value <= ``alpha``
        (see :mod:`rtml_client.drift`). Columns are matched by the model's feature names for
        DataFrames, else by position."""
        baseline, current = self._matrix(X_baseline), self._matrix(X_current)
        if baseline.shape[1] != current.shape[1]:
            raise ValueError(f"X_baseline has {baseline.shape[1]} columns, X_current {current.shape[1]}")
        thresholds = DriftThresholds(psi_threshold, alpha, n_bins)
        return detect_drift(baseline, current, self._names(X_baseline, baseline.shape[1]), thresholds)

    def _matrix(self, X: Any) -> Matrix:
        """A 2-d float array; a DataFrame's columns are picked by the model's feature names."""
        names = self.spec.feature_names
        if hasattr(X, "columns") and hasattr(X, "to_numpy"):
            if names and all(name in X.columns for name in names):
                X = X[list(names)]
            X = X.to_numpy()
        matrix = np.asarray(X, dtype=np.float64)
        if matrix.ndim != 2:
            raise ValueError(f"X must be 2-d (rows x features), got shape {matrix.shape}")
        expected = self.spec.n_features
        if expected is not None and matrix.shape[1] != expected:
            raise ValueError(f"X has {matrix.shape[1]} columns; the model expects {expected} features")
        return matrix

    def _names(self, X: Any, width: int) -> Sequence[str]:
        if self.spec.feature_names and len(self.spec.feature_names) == width:
            return self.spec.feature_names
        if hasattr(X, "columns") and len(X.columns) == width:
            return [str(column) for column in X.columns]
        return [f"feature_{i}" for i in range(width)]
