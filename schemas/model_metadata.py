"""Metadata of one registered model version: ``models/<name>/<version>/metadata.json``.

Written by training code, validated and completed (version, checksum) by
:class:`runtime.registry.ModelRegistry.register`, read by the gateway (model table),
the workers (input/output names) and the drift detector (``baseline``).

ONNX conventions of rtml models: one float32 input ``[None, n_features]``
(``input_name``, ``"float_input"`` for skl2onnx); classifiers expose an int64 or
string ``label`` output ``[N]`` and a float ``probabilities`` output ``[N, C]``
whose columns follow ``classes``; regressors expose ``variable`` ``[N, 1]``.
Clustering models expose the cluster id as their ``label`` output (DBSCAN: -1 for
noise) and, when they have centres (KMeans), a float ``distances`` output
``[N, len(classes)]`` (Euclidean distance to each centre), which workers serve in
the per-row float-vector slot that classifiers use for probabilities.

Models brought in by ``rtml models import`` also record where they came from
(:class:`SourceDetails`) and the proof that the ONNX graph reproduces the
original (:class:`ParityReport`).
"""

from __future__ import annotations

import bisect
import json
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator, model_validator

SCHEMA_VERSION = 1
"""Current version of this metadata layout."""
NAME_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,63}$"
"""Model names: lowercase, safe as a directory name and a Kafka topic suffix."""
VERSION_PATTERN = r"^[1-9][0-9]{0,8}$"
"""Registered versions: positive integers without leading zeros, as strings."""
AUTO_VERSION = "auto"
"""``version`` value asking the registry to assign the next free version."""

FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]
Task = Literal["classification", "regression", "clustering"]
_FROZEN = ConfigDict(frozen=True, extra="forbid")


class FeatureBaseline(BaseModel):
    """Distribution of one numeric column in the reference data.

    ``bin_edges`` holds ``len(bin_proportions) + 1`` increasing edges: the training
    minimum, the deciles and the maximum (duplicates removed; for columns with at
    most ten distinct values the edges sit halfway between them, one bin per
    value). Bin ``i`` holds ``bin_edges[i] <= x < bin_edges[i + 1]``, except that
    the first and last bins are open-ended so live values outside the training
    range still land somewhere: use :meth:`bin_index`, which is
    ``numpy.searchsorted(bin_edges[1:-1], x, side="right")``.
    """

    model_config = _FROZEN

    count: int = Field(ge=0)
    """Number of non-missing values."""
    mean: FiniteFloat
    std: FiniteFloat = Field(ge=0)
    """Population standard deviation (ddof=0)."""
    min: FiniteFloat
    max: FiniteFloat
    bin_edges: list[FiniteFloat] = Field(min_length=2)
    bin_proportions: list[FiniteFloat] = Field(min_length=1)
    """Share of non-missing values in each bin; sums to 1."""
    missing_rate: FiniteFloat = Field(default=0.0, ge=0, le=1)
    """Share of missing (NaN) values among all rows."""

    @model_validator(mode="after")
    def _check_bins(self) -> FeatureBaseline:
        if len(self.bin_edges) != len(self.bin_proportions) + 1:
            raise ValueError(
                f"{len(self.bin_edges)} bin_edges for {len(self.bin_proportions)} bins; expected bins + 1"
            )
        if any(b <= a for a, b in zip(self.bin_edges, self.bin_edges[1:], strict=False)):
            raise ValueError(f"bin_edges must increase strictly: {self.bin_edges}")
        return self

    def bin_index(self, value: float) -> int:
        """Bin of ``value`` (outer bins are open-ended)."""
        return bisect.bisect_right(self.bin_edges[1:-1], value)


class OutputBaseline(BaseModel):
    """Distribution of the model's outputs on reference data."""

    model_config = _FROZEN

    source: Literal["train", "test", "sample"]
    """Which data the model predicted to produce this baseline ("sample": an import's parity sample)."""
    count: int = Field(ge=0)
    class_proportions: list[FiniteFloat] | None = None
    """Classifiers and clustering: share of each predicted class (cluster), in the order of ``classes``."""
    confidence: FeatureBaseline | None = None
    """Classifiers: distribution of the top-class probability."""
    value: FeatureBaseline | None = None
    """Regressors: distribution of the predicted value."""


class Baseline(BaseModel):
    """Reference distributions the drift detector compares live traffic with."""

    model_config = _FROZEN

    features: dict[str, FeatureBaseline]
    """Per feature name, computed on the training split."""
    output: OutputBaseline | None = None


class ParityReport(BaseModel):
    """How an imported model's ONNX graph was shown to predict like the original."""

    model_config = _FROZEN

    rows: int = Field(ge=1)
    """Rows predicted by both models."""
    sample: Literal["user", "model_statistics", "synthetic", "test_split"]
    """Where the rows came from: the user's file, statistics stored with the model
    (scaler means, tree thresholds, an MLflow input example, ...), the input spec alone,
    or a held-out split (demo models)."""
    compared: list[str] = Field(min_length=1)
    """ONNX outputs compared with the original model's predictions."""
    label_agreement: FiniteFloat | None = Field(default=None, ge=0, le=1)
    """Share of rows whose labels (classes, cluster ids) agree; None for regressors."""
    tied_rows: int = Field(default=0, ge=0)
    """Rows whose labels differ only because the original's top class probabilities tie
    (within ``tolerance``): either label is that model's answer. Any other disagreement fails."""
    max_abs_diff: FiniteFloat | None = Field(default=None, ge=0)
    """Largest absolute difference over probabilities, values and distances."""
    tolerance: FiniteFloat = Field(ge=0)
    """Absolute tolerance on ``max_abs_diff`` the import was held to."""
    passed: bool
    """Every label agreed (but for ties) and ``max_abs_diff <= tolerance``."""


class MlflowSource(BaseModel):
    """The MLflow model registry entry an import came from."""

    model_config = _FROZEN

    tracking_uri: str
    """Tracking server, without any credentials."""
    model_name: str
    version: str
    alias: str | None = None
    """Alias the import asked for (``models:/NAME@ALIAS``), resolved to ``version``."""
    run_id: str | None = None
    flavor: str
    """MLflow flavour that was imported ("sklearn", "onnx", "keras", "pytorch", ...)."""


class SourceDetails(BaseModel):
    """Where an imported model came from."""

    model_config = _FROZEN

    format: str = Field(min_length=1)
    """"sklearn-pickle", "sklearn-joblib", "onnx", "tf-savedmodel", "keras", "torchscript", "torch-module"."""
    uri: str
    """File, directory or ``models:/`` URI as given (credentials removed)."""
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    """Checksum of the source file (of every file, in path order, for a directory)."""
    mlflow: MlflowSource | None = None


class ModelMetadata(BaseModel):
    """Everything rtml knows about one model version besides its ONNX bytes."""

    model_config = _FROZEN

    schema_version: int = Field(default=SCHEMA_VERSION, ge=1, le=SCHEMA_VERSION)
    name: str = Field(pattern=NAME_PATTERN)
    version: str = Field(default=AUTO_VERSION, pattern=rf"{VERSION_PATTERN}|^{AUTO_VERSION}$|^$")
    """Registered version ("1", "2", ...); "auto" or "" before registration."""
    created_at: AwareDatetime = Field(default_factory=lambda: datetime.now(UTC))
    task: Task
    framework: str = Field(min_length=1)
    """Framework the model was trained with, e.g. "scikit-learn"."""
    framework_versions: dict[str, str] = Field(default_factory=dict)
    """Library versions used for training and conversion (sklearn, skl2onnx, onnx, ...)."""
    source_format: str = Field(min_length=1)
    """Format the model came from before ONNX: "sklearn", "onnx", ..."""
    source_sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    onnx_sha256: str = Field(default="", pattern=r"^([0-9a-f]{64})?$")
    """Checksum of model.onnx; filled in by the registry."""
    input_name: str = Field(default="float_input", min_length=1)
    feature_names: list[str] = Field(min_length=1)
    n_features: int = Field(ge=1)
    feature_dtypes: list[str]
    classes: list[int] | list[str] | None = None
    output_label: str | None = None
    """ONNX output holding predicted labels (classifiers)."""
    output_probabilities: str | None = None
    """ONNX output holding class probabilities [N, len(classes)] (classifiers)."""
    output_value: str | None = None
    """ONNX output holding predicted values (regressors)."""
    output_distances: str | None = None
    """ONNX output holding distances to each cluster centre [N, len(classes)] (KMeans-like
    clustering); workers serve it where classifiers' probabilities go."""
    metrics: dict[str, FiniteFloat] = Field(default_factory=dict)
    params: dict[str, Any] = Field(default_factory=dict)
    """Small JSON-safe summary of the model's hyper-parameters."""
    n_samples_train: int | None = Field(default=None, ge=0)
    n_samples_test: int | None = Field(default=None, ge=0)
    baseline: Baseline | None = None
    description: str = ""
    source: SourceDetails | None = None
    """Imported models: the file or registry entry they were converted from."""
    parity: ParityReport | None = None
    """Proof that the ONNX graph reproduces the original model."""

    @field_validator("params")
    @classmethod
    def _json_safe(cls, value: dict[str, Any]) -> dict[str, Any]:
        try:
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"params must be JSON-safe: {exc}") from exc
        return value

    @model_validator(mode="after")
    def _check_consistency(self) -> ModelMetadata:
        if len(self.feature_names) != self.n_features or len(self.feature_dtypes) != self.n_features:
            raise ValueError(
                f"n_features={self.n_features} but {len(self.feature_names)} feature_names "
                f"and {len(self.feature_dtypes)} feature_dtypes"
            )
        if len(set(self.feature_names)) != self.n_features:
            raise ValueError("feature_names must be unique")
        if self.task == "classification" and (not self.classes or self.output_label is None):
            raise ValueError("classification models need classes and output_label")
        if self.task == "regression" and self.output_value is None:
            raise ValueError("regression models need output_value")
        if self.task == "clustering" and self.output_label is None:
            raise ValueError("clustering models need output_label (the cluster id)")
        if self.baseline is not None and set(self.baseline.features) != set(self.feature_names):
            raise ValueError("baseline.features must cover exactly feature_names")
        return self

    @property
    def is_registered(self) -> bool:
        """True once the registry has assigned a version and a checksum."""
        return bool(self.onnx_sha256) and self.version not in ("", AUTO_VERSION)

    @property
    def output_names(self) -> list[str]:
        """Declared ONNX outputs, in label, probabilities, value, distances order."""
        outputs = (self.output_label, self.output_probabilities, self.output_value, self.output_distances)
        return [name for name in outputs if name is not None]

    def to_json(self) -> str:
        """Indented JSON, as stored in metadata.json."""
        return self.model_dump_json(indent=2)

    @classmethod
    def from_json(cls, data: str | bytes) -> ModelMetadata:
        return cls.model_validate_json(data)

    def with_updates(self, **changes: Any) -> ModelMetadata:
        """A validated copy with ``changes`` applied (``model_copy`` skips validation)."""
        return type(self).model_validate({**self.model_dump(), **changes})
