"""A synthetic model whose data-generating process is known, for tests and measurements.

Its metadata (with a baseline built from a training sample) needs no ONNX file:
the drift app reads metadata only. Fresh draws from the same process are
undrifted traffic by construction, whatever happens to the demo models' code.
Features mix the shapes drift statistics must cope with: heavy-tailed
(lognormal), symmetric (normal), bounded integers, counts (Poisson) and a rare
binary flag.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from bench.drift_traffic import Traffic
from importers.baselines import feature_baseline
from rtml_client.stats import FloatArray
from schemas.model_metadata import Baseline, ModelMetadata, OutputBaseline

FEATURES = ("amount", "score", "age", "visits", "flag")


def draw_features(n: int, rng: np.random.Generator) -> FloatArray:
    return np.column_stack(
        [
            np.round(rng.lognormal(3.0, 1.0, n), 2),
            rng.normal(0.0, 1.0, n),
            rng.integers(18, 91, n).astype(np.float64),
            rng.poisson(2.0, n).astype(np.float64),
            (rng.random(n) < 0.1).astype(np.float64),
        ]
    )


def _logit(rows: FloatArray) -> FloatArray:
    z = 0.6 * np.log(rows[:, 0]) + 1.2 * rows[:, 1] - 0.03 * (rows[:, 2] - 50) + 0.3 * rows[:, 3] - 1.9
    return np.asarray(z + 1.5 * rows[:, 4], dtype=np.float64)


def classify(rows: FloatArray) -> tuple[list[Any], list[float | None]]:
    p = 1 / (1 + np.exp(-_logit(rows)))
    return (p > 0.5).astype(int).tolist(), np.maximum(p, 1 - p).tolist()


def regress(rows: FloatArray) -> tuple[list[Any], list[float | None]]:
    return (10 * _logit(rows)).tolist(), [None] * len(rows)


def synthetic_model(
    name: str = "drift_synth",
    task: Literal["classification", "regression"] = "classification",
    seed: int = 7,
    train_rows: int = 5000,
) -> tuple[ModelMetadata, Traffic]:
    """Registered-looking metadata (version "1") and a traffic source for it."""
    rng = np.random.default_rng(seed)
    train, test = draw_features(train_rows, rng), draw_features(train_rows // 4, rng)
    predict = classify if task == "classification" else regress
    labels, confidence = predict(test)
    features = {name: feature_baseline(train[:, j]) for j, name in enumerate(FEATURES)}
    if task == "classification":
        counts = np.bincount(np.asarray(labels), minlength=2)
        output = OutputBaseline(
            source="test",
            count=len(labels),
            class_proportions=(counts / counts.sum()).tolist(),
            confidence=feature_baseline(np.asarray(confidence, dtype=np.float64)),
        )
        outputs: dict[str, Any] = {"classes": [0, 1], "output_label": "label", "output_probabilities": "p"}
    else:
        output = OutputBaseline(
            source="test", count=len(labels), value=feature_baseline(np.asarray(labels, dtype=np.float64))
        )
        outputs = {"output_value": "variable"}
    meta = ModelMetadata(
        name=name,
        version="1",
        task=task,
        framework="numpy",
        source_format="synthetic",
        onnx_sha256="0" * 64,
        feature_names=list(FEATURES),
        n_features=len(FEATURES),
        feature_dtypes=["float32"] * len(FEATURES),
        baseline=Baseline(features=features, output=output),
        **outputs,
    )
    return meta, fresh_traffic(meta, seed + 1)


def fresh_traffic(meta: ModelMetadata, seed: int, pool_rows: int = 200_000) -> Traffic:
    """Traffic drawing from a new, large sample of the same process (not the training rows)."""
    rng = np.random.default_rng(seed)
    predict = regress if meta.task == "regression" else classify
    return Traffic(meta, draw_features(pool_rows, rng), predict)
