"""``import_model``: convert a model to ONNX, prove parity, register it.

Steps (each raises a :class:`runtime.errors.ModelImportError`, leaving the registry untouched):
detect the source format -> convert (one module per format) -> draw the parity sample ->
run original and ONNX on it -> build ModelMetadata (source, parity report, baselines) ->
``ModelRegistry.register`` (atomic).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from importers import onnx_tools, parity, sampling, sources
from importers.baselines import features_baseline, output_baseline
from importers.model import Converted, Outputs, Task
from runtime.errors import BadSample
from runtime.registry import ModelRegistry
from schemas.model_metadata import AUTO_VERSION, Baseline, ModelMetadata, ParityReport, SourceDetails

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ImportOptions:
    """How to import; every field has a sensible default."""

    version: str | None = None
    """Version to register ("1", "2", ...); None takes the next free one."""
    sample: Path | np.ndarray | None = None
    """Parity rows: a CSV file or an array [rows, features]; None draws them."""
    tolerance: float = parity.DEFAULT_TOLERANCE
    """Largest absolute difference allowed in probabilities, values and distances."""
    sample_rows: int = sampling.DEFAULT_ROWS
    seed: int = 0
    task: Task | None = None
    """Override the task (ONNX, Keras and PyTorch sources)."""
    classes: list[int] | list[str] | None = None
    """Class labels of a Keras/PyTorch/ONNX classifier, in output column order."""
    n_features: int | None = None
    """Input spec of a PyTorch module (and ONNX graphs without a fixed width)."""
    feature_names: list[str] | None = None
    replace: bool = False
    """Overwrite an existing ``version``."""
    description: str = ""
    metrics: dict[str, float] = field(default_factory=dict)
    """Training metrics to store with the model."""


@dataclass(frozen=True)
class ImportResult:
    metadata: ModelMetadata
    """As registered (version and checksum set)."""
    report: ParityReport


def import_model(
    source: str | Path | Any, name: str, registry: ModelRegistry, options: ImportOptions | None = None
) -> ImportResult:
    """Import ``source`` (a path, a ``models:/`` URI, or an in-memory model) as ``name``."""
    options = options or ImportOptions()
    loaded = sources.load(source, name, options)
    converted = loaded.converted
    X, sample_kind, header = _sample(converted, options)
    expected = converted.reference(X)
    actual = onnx_tools.predict(converted.onnx_bytes, converted.signature, X)
    report = parity.compare(expected, actual, converted.signature, sample_kind, options.tolerance)
    log.info(parity.describe(report), extra={"model": name})
    parity.require(report, name, expected, actual, converted.signature)
    names = _feature_names(converted, options, header)
    baseline = _baseline(X, names, actual, converted) if sample_kind == "user" else None
    metadata = _metadata(name, converted, loaded.details, names, report, baseline, options)
    registered = registry.register(converted.onnx_bytes, metadata, replace=options.replace)
    return ImportResult(registered, report)


def _sample(converted: Converted, options: ImportOptions) -> tuple[np.ndarray, str, list[str] | None]:
    n = converted.signature.n_features
    if options.sample is None:
        X, kind = sampling.draw(converted.hints, n, options.sample_rows, options.seed)
        return X, kind, None
    if isinstance(options.sample, np.ndarray):
        X = np.asarray(options.sample, dtype=np.float32)
        if X.ndim != 2 or X.shape[1] != n or len(X) == 0:
            raise BadSample(f"sample has shape {X.shape}; the model takes [rows, {n}]")
        return X, "user", None
    if not Path(options.sample).is_file():
        raise BadSample(f"sample {options.sample} does not exist")
    names = options.feature_names or converted.feature_names
    X, header = sampling.read_csv(Path(options.sample), n, names)
    return X, "user", header


def _feature_names(converted: Converted, options: ImportOptions, header: list[str] | None) -> list[str]:
    n = converted.signature.n_features
    for names in (options.feature_names, converted.feature_names, header):
        if names is not None and len(names) == n and len(set(names)) == n:
            return list(names)
    return [f"feature_{i}" for i in range(n)]


def _baseline(X: np.ndarray, names: list[str], outputs: Outputs, converted: Converted) -> Baseline | None:
    try:
        features = features_baseline(X, names)
    except ValueError:  # a column with no values at all
        log.warning("no baseline: a sample column has no values")
        return None
    classes = converted.signature.classes
    return Baseline(features=features, output=output_baseline(outputs, classes, "sample"))


def _metadata(
    name: str,
    converted: Converted,
    details: SourceDetails,
    names: list[str],
    report: ParityReport,
    baseline: Baseline | None,
    options: ImportOptions,
) -> ModelMetadata:
    sig = converted.signature
    return ModelMetadata(
        name=name,
        version=options.version or AUTO_VERSION,
        task=sig.task,
        framework=converted.framework,
        framework_versions=converted.framework_versions,
        source_format=details.format,
        source_sha256=details.sha256,
        input_name=sig.input_name,
        feature_names=names,
        n_features=sig.n_features,
        feature_dtypes=["float32"] * sig.n_features,
        classes=sig.classes,
        output_label=sig.output_label,
        output_probabilities=sig.output_probabilities,
        output_value=sig.output_value,
        output_distances=sig.output_distances,
        metrics=options.metrics,
        params=converted.params,
        baseline=baseline,
        description=options.description,
        source=details,
        parity=report,
    )
