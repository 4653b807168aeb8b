"""Prediction-log traffic with known drift, and an in-process replay of the detector.

Used by the tests, ``bench/drift_throughput.py`` and the false-positive
measurement. *Undrifted* traffic resamples rows of the data the model was built
from (training and held-out rows alike) and predicts them with the model's own
ONNX graph, so the outputs are the model's real outputs too; *drifted* traffic
adds ``k`` baseline standard deviations to chosen features before predicting.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from drift.aggregate import Collector
from drift.config import Catalog
from drift.detector import Detector
from drift.evaluate import WindowReport
from drift.ingest import to_partials
from rtml_client.stats import FloatArray
from schemas.drift import DriftAlert
from schemas.model_metadata import ModelMetadata

Predictor = Callable[[FloatArray], tuple[list[Any], list[float | None]]]
"""Rows -> (predicted labels or values, top-class probabilities or None)."""


def onnx_predictor(model_path: Path, meta: ModelMetadata) -> Predictor:
    import onnxruntime as ort

    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    outputs = meta.output_names

    def predict(rows: FloatArray) -> tuple[list[Any], list[float | None]]:
        results = dict(
            zip(outputs, session.run(outputs, {meta.input_name: rows.astype(np.float32)}), strict=True)
        )
        if meta.output_value is not None:
            return results[meta.output_value].reshape(-1).tolist(), [None] * len(rows)
        labels = results[meta.output_label].tolist() if meta.output_label else [None] * len(rows)
        proba = results.get(meta.output_probabilities or "")
        confidence = proba.max(axis=1).tolist() if proba is not None else [None] * len(rows)
        return labels, confidence

    return predict


def demo_pool(name: str) -> FloatArray:
    """Every row of a demo model's dataset (needs the `train` extra: scikit-learn)."""
    from importers.demo_models import DEMOS

    return np.asarray(DEMOS[name].make_data().X, dtype=np.float64)


@dataclass
class Traffic:
    """Draws rows from ``pool`` (with replacement), optionally shifted, and predicts them."""

    meta: ModelMetadata
    pool: FloatArray
    predict: Predictor

    def draw(
        self, n: int, rng: np.random.Generator, shift: dict[str, float] | None = None
    ) -> tuple[FloatArray, list[Any], list[float | None]]:
        rows = self.pool[rng.integers(0, len(self.pool), n)].copy()
        for name, k in (shift or {}).items():
            baseline = self.meta.baseline.features[name] if self.meta.baseline else None
            std = baseline.std if baseline is not None else float(self.pool[:, self._col(name)].std())
            rows[:, self._col(name)] += k * std
        labels, confidence = self.predict(rows)
        return rows, labels, confidence

    def _col(self, name: str) -> int:
        return self.meta.feature_names.index(name)


def records(
    meta: ModelMetadata,
    rows: FloatArray,
    labels: list[Any],
    confidence: list[float | None],
    times_ms: Iterable[int],
    prefix: str = "sim",
) -> list[bytes]:
    """PredictionRecord JSON, as workers write them to the prediction log."""
    out = []
    for i, (row, label, conf, t) in enumerate(zip(rows.tolist(), labels, confidence, times_ms, strict=True)):
        record = {
            "schema_version": 1,
            "request_id": f"{prefix}-{t}-{i}",
            "row": 0,
            "model": meta.name,
            "version": meta.version,
            "features": row,
            "prediction": label,
            "probability": conf,
            "probabilities": None,
            "from_cache": False,
            "source": "kafka",
            "predicted_at_ms": int(t),
            "served_by": "worker",
        }
        out.append(orjson.dumps(record))
    return out


@dataclass(frozen=True)
class Phase:
    seconds: float
    shift: dict[str, float] = field(default_factory=dict)


def timeline(
    traffic: Traffic, phases: list[Phase], rate: float, start_ms: int, rng: np.random.Generator
) -> Iterator[list[bytes]]:
    """One list of records per simulated second, event times spread evenly, phase after phase."""
    t0 = start_ms
    per_second = round(rate)
    for phase in phases:
        for second in range(round(phase.seconds)):
            rows, labels, conf = traffic.draw(per_second, rng, phase.shift)
            base = t0 + second * 1000
            times = [base + (i * 1000) // per_second for i in range(per_second)]
            yield records(traffic.meta, rows, labels, conf, times)
        t0 += round(phase.seconds * 1000)


@dataclass
class Replay:
    """The detector without Kafka: batches -> partials -> detector over plain dicts."""

    catalog: Catalog
    steps: dict[str, bytes] = field(default_factory=dict)
    states: dict[str, bytes] = field(default_factory=dict)
    alerts: list[DriftAlert] = field(default_factory=list)
    reports: list[WindowReport] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.detector = Detector(self.catalog, clock=lambda: 0)

    def feed(self, batch: list[bytes]) -> None:
        collector = Collector(self.catalog)
        latest = None
        for value in batch:
            latest = max(latest or 0, collector.add(value))
        for partial in to_partials(collector.finish(), latest):
            outcome = self.detector.on_partial(partial, self.steps, self.states)
            self.alerts.extend(outcome.alerts)
            self.reports.extend(outcome.reports)

    def run(self, batches: Iterable[list[bytes]], per_batch: int = 1) -> Replay:
        """Feed ``per_batch`` seconds of records per batch."""
        iterator = iter(batches)
        while chunk := list(itertools.islice(iterator, per_batch)):
            self.feed([value for second in chunk for value in second])
        return self
