"""ONNX Runtime sessions for every registered version of one model."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import onnxruntime as ort

from runtime.errors import ModelNotFound, VersionNotFound
from runtime.registry import ModelRegistry
from schemas.messages import Label
from schemas.model_metadata import ModelMetadata

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Predictions:
    labels: list[Label]
    probabilities: np.ndarray | None
    """[rows, classes] float array: probabilities for classifiers, distances to each
    centre for clustering models that declare ``output_distances``; else None."""


class ModelRuntime:
    """One loaded model version: a session plus how to read its outputs."""

    def __init__(self, metadata: ModelMetadata, session: ort.InferenceSession) -> None:
        self.metadata = metadata
        self.version = metadata.version
        self.n_features = metadata.n_features
        self._session = session
        self._input = metadata.input_name
        self._label_output = metadata.output_label
        # Clustering models serve their distances in the probabilities slot.
        self._proba_output = metadata.output_probabilities or metadata.output_distances
        self._value_output = metadata.output_value
        self._outputs = [o for o in (self._label_output, self._proba_output, self._value_output) if o]
        classes = metadata.classes
        # Map ONNX label ids back to the model's declared classes when they differ.
        self._classes: list[Label] | None = list(classes) if classes is not None else None

    def predict(self, rows: np.ndarray) -> Predictions:
        results = dict(zip(self._outputs, self._session.run(self._outputs, {self._input: rows}), strict=True))
        if self._value_output is not None:
            return Predictions(labels=results[self._value_output].reshape(-1).tolist(), probabilities=None)
        assert self._label_output is not None
        labels: list[Label] = results[self._label_output].reshape(-1).tolist()
        probabilities = results[self._proba_output] if self._proba_output else None
        return Predictions(labels=labels, probabilities=probabilities)


def _session(path: str, threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(path, sess_options=options, providers=["CPUExecutionProvider"])


class RuntimeTable:
    """All versions of one model, loaded once at start; ``resolve`` picks one per request."""

    def __init__(self, registry: ModelRegistry, model: str, threads: int = 1) -> None:
        self.model = model
        self._by_version: dict[str, ModelRuntime] = {}
        for version in registry.versions(model):
            registry.verify(model, version)
            metadata = registry.metadata(model, version)
            session = _session(str(registry.model_path(model, version)), threads)
            self._by_version[version] = ModelRuntime(metadata, session)
            log.info("loaded model", extra={"model": model, "version": version})
        if not self._by_version:
            raise ModelNotFound(f"model '{model}' has no registered versions")
        self.latest = max(self._by_version, key=int)

    def resolve(self, version: str | None) -> ModelRuntime:
        if version is None:
            return self._by_version[self.latest]
        runtime = self._by_version.get(version)
        if runtime is None:
            known = ", ".join(sorted(self._by_version, key=int))
            raise VersionNotFound(f"model '{self.model}' has no version '{version}'; versions: {known}")
        return runtime
