"""ONNX Runtime sessions for every serving version of one model, kept in step with its policy."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

import numpy as np
import onnxruntime as ort

from runtime.artifacts import ArtifactStore, fetch_missing
from runtime.errors import ModelNotFound, VersionNotFound
from runtime.model_policy import Routed, default_version, route, serving_versions
from runtime.registry import ModelRegistry
from schemas.control import ModelPolicy
from schemas.messages import Label
from schemas.model_metadata import ModelMetadata
from workers import metrics

log = logging.getLogger(__name__)

WARM_UP_ROWS = (1, 64)
"""Rows of the warm-up calls a version answers before it can take traffic (zeros, as the
registry's own trial run: warming is about allocations, not validation)."""
RESCAN_S = 1.0
"""At most one registry rescan a second for requests naming a version this worker lacks."""


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


@dataclass(frozen=True)
class _Loaded:
    """What one refresh produced; replaced whole, so a serving thread never sees half of it."""

    runtimes: dict[str, ModelRuntime]
    registered: list[str]
    policy: ModelPolicy | None
    unrouted: tuple[ModelRuntime, Routed] | None = field(init=False, default=None)
    """What every request without a version gets when no split or canary makes it depend on its
    routing key: resolved once here, not per message (the direct path's hot loop)."""

    def __post_init__(self) -> None:
        policy = self.policy
        if policy is not None and (policy.split or policy.running_canary is not None):
            return
        default = default_version(policy, self.registered)
        runtime = self.runtimes.get(default) if default is not None else None
        if default is not None and runtime is not None:
            object.__setattr__(self, "unrouted", (runtime, Routed(default, "default")))


class RuntimeTable:
    """The loaded versions of one model and its policy; ``resolve`` routes one request.

    :meth:`refresh` (on a control-plane change, in the control thread) loads every registered,
    non-retired version not loaded yet: its checksum is verified and it answers a warm-up row
    before it is swapped in, so no request waits for a load and a corrupt artifact never
    replaces a working version (it is logged and left out). Retired versions are dropped.
    """

    def __init__(
        self,
        registry: ModelRegistry,
        model: str,
        threads: int = 1,
        policy: ModelPolicy | None = None,
        artifacts: ArtifactStore | None = None,
    ) -> None:
        self.model = model
        self._registry = registry
        self._artifacts = artifacts
        self._threads = threads
        self._lock = threading.Lock()
        self._state = _Loaded({}, [], policy)
        self._last_rescan = 0.0
        self.refresh(policy)
        if not self._state.runtimes:
            raise ModelNotFound(f"model '{model}' has no loadable versions under {registry.root}")

    @property
    def policy(self) -> ModelPolicy | None:
        return self._state.policy

    @property
    def loaded(self) -> list[str]:
        return sorted(self._state.runtimes, key=int)

    @property
    def latest(self) -> str:
        state = self._state
        return default_version(state.policy, state.registered) or max(state.runtimes, key=int)

    def refresh(self, policy: ModelPolicy | None) -> None:
        with self._lock:
            current = self._state
            fetch_missing(self._artifacts, self._registry, policy)  # versions built elsewhere
            try:
                registered = self._registry.versions(self.model)
            except ModelNotFound:
                registered = []
            runtimes = {
                v: r for v, r in current.runtimes.items() if v in serving_versions(policy, registered)
            }
            for version in serving_versions(policy, registered):
                if version not in runtimes:
                    loaded = self._load(version)
                    if loaded is not None:
                        runtimes[version] = loaded
            self._state = _Loaded(runtimes, registered, policy)
        for version in current.runtimes.keys() - runtimes.keys():  # retired (or gone from the registry)
            metrics.forget_version(self.model, version)
            log.info("unloaded model version", extra={"model": self.model, "version": version})

    def _load(self, version: str) -> ModelRuntime | None:
        try:
            metadata = self._registry.verify(self.model, version)
            session = _session(str(self._registry.model_path(self.model, version)), self._threads)
            runtime = ModelRuntime(metadata, session)
            for rows in WARM_UP_ROWS:  # allocate for a single row and a batch before any traffic
                runtime.predict(np.zeros((rows, metadata.n_features), dtype=np.float32))
        except Exception as exc:  # corrupt, truncated or unloadable: keep serving what works
            log.error(
                "cannot load model version; it will not serve",
                extra={"model": self.model, "version": version, "error": str(exc)[:500]},
            )
            return None
        log.info("loaded model", extra={"model": self.model, "version": version})
        return runtime

    def resolve(self, version: str | None, routing_key: str | None = None) -> tuple[ModelRuntime, Routed]:
        """The runtime for one request and why it was chosen; VersionNotFound / ModelNotFound."""
        try:
            return self._resolve(version, routing_key)
        except VersionNotFound:
            if version is None or time.monotonic() - self._last_rescan < RESCAN_S:
                raise
        # Named a version registered after our last refresh (its control record may still be on
        # its way, or the control thread is loading it now): load it rather than dead-letter a
        # valid request. Serialised with the control thread's refresh by the lock; rate-limited
        # so a stream of requests for a version that does not exist cannot rescan per message.
        self._last_rescan = time.monotonic()
        self.refresh(self._state.policy)
        return self._resolve(version, routing_key)

    def _resolve(self, version: str | None, routing_key: str | None) -> tuple[ModelRuntime, Routed]:
        state = self._state
        if version is None and state.unrouted is not None:
            return state.unrouted
        routed = route(state.policy, state.registered, self.model, version, routing_key)
        runtime = state.runtimes.get(routed.version)
        if runtime is None:
            raise VersionNotFound(
                f"model '{self.model}' v{routed.version} is not loaded on this worker "
                f"(loaded: {', '.join(self.loaded) or 'none'})"
            )
        return runtime, routed

    def runtime(self, version: str) -> ModelRuntime | None:
        return self._state.runtimes.get(version)
