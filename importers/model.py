"""What every source converter hands to the import: the ONNX graph, how to read it,
and the original model to hold it to."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

Task = Literal["classification", "regression", "clustering"]
INPUT_NAME = "float_input"
LABEL = "label"
PROBABILITIES = "probabilities"
VALUE = "variable"
DISTANCES = "distances"


@dataclass(frozen=True)
class Outputs:
    """Predictions for a batch of rows, from the original model or from ONNX."""

    labels: np.ndarray | None = None
    """[N] class labels or cluster ids."""
    probabilities: np.ndarray | None = None
    """[N, C] class probabilities."""
    values: np.ndarray | None = None
    """[N] regression values."""
    distances: np.ndarray | None = None
    """[N, K] distances to cluster centres."""


@dataclass(frozen=True)
class Signature:
    """The ONNX interface, in ModelMetadata's terms."""

    task: Task
    n_features: int
    input_name: str = INPUT_NAME
    classes: list[int] | list[str] | None = None
    output_label: str | None = None
    output_probabilities: str | None = None
    output_value: str | None = None
    output_distances: str | None = None

    @property
    def outputs(self) -> list[str]:
        names = (self.output_label, self.output_probabilities, self.output_value, self.output_distances)
        return [n for n in names if n is not None]


@dataclass(frozen=True)
class SampleHints:
    """What a model itself says about plausible inputs (used when no --sample is given)."""

    rows: np.ndarray | None = None
    """Real rows stored with the model (support vectors, core samples, an input example)."""
    mean: np.ndarray | None = None
    """Per-feature centre and spread (scalers, cluster centres)."""
    std: np.ndarray | None = None
    low: np.ndarray | None = None
    """Per-feature range (tree split thresholds); NaN where unknown."""
    high: np.ndarray | None = None
    choices: dict[int, np.ndarray] = field(default_factory=dict)
    """Columns that only take these values (one-hot encoded categories)."""

    @property
    def empty(self) -> bool:
        return self.rows is None and self.mean is None and self.low is None and not self.choices


@dataclass(frozen=True)
class Converted:
    """A model converted to ONNX, with its original to compare against."""

    onnx_bytes: bytes
    signature: Signature
    reference: Callable[[np.ndarray], Outputs]
    """Runs the original model on float32 rows [N, n_features]."""
    framework: str
    source_format: str
    framework_versions: dict[str, str]
    feature_names: list[str] | None = None
    hints: SampleHints = field(default_factory=SampleHints)
    params: dict[str, Any] = field(default_factory=dict)
