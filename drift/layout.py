"""What the detector measures for one model version, derived from its metadata baseline.

A :class:`Layout` lists the *numeric subjects* (every feature, the top-class
confidence of classifiers, the predicted value of regressors), each with its
baseline histogram, and the *categorical subject* (the predicted class) when the
model has classes. Window totals (:mod:`drift.totals`) are flat arrays in this
order, so the layout is all the aggregation and evaluation code needs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from rtml_client.stats import FloatArray
from schemas.model_metadata import FeatureBaseline, ModelMetadata

SubjectKind = Literal["feature", "output"]
Source = Literal["feature", "confidence", "value"]
PREDICTION = "prediction"
CONFIDENCE = "confidence"


@dataclass(frozen=True)
class NumericSubject:
    name: str
    kind: SubjectKind
    source: Source
    baseline: FeatureBaseline

    @property
    def n_bins(self) -> int:
        return len(self.baseline.bin_proportions)


@dataclass(frozen=True)
class CategoricalSubject:
    name: str
    classes: tuple[int | str, ...]
    proportions: tuple[float, ...]
    baseline_count: int

    def index_of(self) -> dict[int | str, int]:
        return {label: i for i, label in enumerate(self.classes)}


@dataclass(frozen=True)
class Layout:
    n_features: int
    numeric: tuple[NumericSubject, ...]
    categorical: CategoricalSubject | None
    inner_edges: tuple[FloatArray, ...] = field(init=False, repr=False, compare=False)
    edge_table: FloatArray = field(init=False, repr=False, compare=False)
    """Inner edges, one row per numeric subject, padded with +inf."""
    offsets: tuple[int, ...] = field(init=False, repr=False, compare=False)
    shift: FloatArray = field(init=False, repr=False, compare=False)
    low: FloatArray = field(init=False, repr=False, compare=False)
    high: FloatArray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        baselines = [s.baseline for s in self.numeric]
        sizes = [s.n_bins for s in self.numeric]
        object.__setattr__(self, "inner_edges", tuple(np.asarray(b.bin_edges[1:-1]) for b in baselines))
        object.__setattr__(self, "edge_table", _edge_table(self.inner_edges))
        object.__setattr__(self, "offsets", tuple(int(x) for x in np.cumsum([0, *sizes])))
        object.__setattr__(self, "shift", np.array([b.mean for b in baselines], dtype=np.float64))
        object.__setattr__(self, "low", np.array([b.min for b in baselines], dtype=np.float64))
        object.__setattr__(self, "high", np.array([b.max for b in baselines], dtype=np.float64))

    @property
    def total_bins(self) -> int:
        return self.offsets[-1]

    @property
    def n_numeric(self) -> int:
        return len(self.numeric)

    @property
    def n_classes(self) -> int:
        """Class slots in totals: the known classes plus one for unknown labels (0 without classes)."""
        return len(self.categorical.classes) + 1 if self.categorical else 0

    def bins_of(self, index: int, flat: np.ndarray) -> np.ndarray:
        return flat[self.offsets[index] : self.offsets[index + 1]]

    @property
    def has_confidence(self) -> bool:
        return any(s.source == "confidence" for s in self.numeric)

    @property
    def has_value(self) -> bool:
        return any(s.source == "value" for s in self.numeric)


def _edge_table(inner: tuple[FloatArray, ...]) -> FloatArray:
    table = np.full((len(inner), max((e.size for e in inner), default=0)), np.inf)
    for j, edges in enumerate(inner):
        table[j, : edges.size] = edges
    return table


def layout_for(meta: ModelMetadata) -> Layout | None:
    """The layout of a registered version, or None when its metadata has no baseline."""
    baseline = meta.baseline
    if baseline is None:
        return None
    numeric = [
        NumericSubject(name, "feature", "feature", baseline.features[name]) for name in meta.feature_names
    ]
    categorical = None
    output = baseline.output
    if output is not None:
        if output.confidence is not None:
            numeric.append(NumericSubject(CONFIDENCE, "output", "confidence", output.confidence))
        if output.value is not None:
            numeric.append(NumericSubject(PREDICTION, "output", "value", output.value))
        if output.class_proportions is not None and meta.classes:
            categorical = CategoricalSubject(
                PREDICTION, tuple(meta.classes), tuple(output.class_proportions), output.count
            )
    return Layout(meta.n_features, tuple(numeric), categorical)
