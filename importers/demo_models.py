"""Reproducible demo models: scikit-learn, trained with fixed seeds, served as ONNX.

``train_demo_models(registry)`` trains, converts (skl2onnx), checks ONNX/sklearn
parity on the test split and registers each model as version "1". Datasets are
bundled (iris) or synthetic, so nothing is downloaded. The same library
versions give byte-identical ONNX files: the graph is named after the model
(skl2onnx otherwise puts a random UUID there) and the opsets are pinned.

Needs the ``train`` extra (scikit-learn, skl2onnx). Conversion and baselines are shared
with ``rtml models import`` (:mod:`importers`); each demo model's metadata also
carries the parity report on its held-out split.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import version as dist_version
from typing import Any

import numpy as np
import onnxruntime as ort
from sklearn.datasets import load_iris, make_classification
from sklearn.ensemble import ExtraTreesClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score, roc_auc_score
from sklearn.model_selection import StratifiedKFold, cross_val_score, train_test_split

from importers import parity
from importers.baselines import N_BINS, bin_edges, compute_baseline, feature_baseline
from importers.model import Outputs, Signature
from importers.sklearn_source import to_onnx_bytes as _sklearn_to_onnx
from runtime.errors import ModelNotFound, ParityFailed, VersionExists
from runtime.registry import ModelRegistry
from schemas.model_metadata import ModelMetadata, ParityReport

SEED = 42
DEMO_VERSION = "1"
INPUT_NAME = "float_input"
LABEL_OUTPUT = "label"
PROBA_OUTPUT = "probabilities"
TARGET_OPSET = {"": 17, "ai.onnx.ml": 3}
PROBA_TOLERANCE = 1e-4


__all__ = [  # baselines moved to importers.baselines; re-exported for existing callers
    "DEMOS",
    "N_BINS",
    "bin_edges",
    "build_demo_model",
    "check_parity",
    "compute_baseline",
    "feature_baseline",
    "to_onnx_bytes",
    "train_demo_models",
]


@dataclass(frozen=True)
class Dataset:
    X: np.ndarray
    """float32 [rows, features]."""
    y: np.ndarray
    """int64 class ids."""
    feature_names: list[str]


@dataclass(frozen=True)
class DemoSpec:
    name: str
    make_data: Callable[[], Dataset]
    make_model: Callable[[], Any]
    cv_scoring: str
    description: str


# -- datasets ----------------------------------------------------------------


def iris_data() -> Dataset:
    X, y = load_iris(return_X_y=True)
    names = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
    return Dataset(X.astype(np.float32), y.astype(np.int64), names)


def binary_data() -> Dataset:
    X, y = make_classification(
        n_samples=2000,
        n_features=8,
        n_informative=5,
        n_redundant=2,
        n_clusters_per_class=1,
        flip_y=0.03,
        random_state=SEED,
    )
    return Dataset(X.astype(np.float32), y.astype(np.int64), [f"feature_{i}" for i in range(8)])


def fraud_data(n: int = 5000) -> Dataset:
    """Card transactions; the top 3% of a noisy risk score are fraud."""
    rng = np.random.default_rng(SEED)
    named = {
        "amount": np.round(rng.lognormal(3.5, 1.1, n), 2),
        "hour": rng.integers(0, 24, n).astype(float),
        "merchant_risk": rng.beta(2, 8, n),
        "distance_km": rng.exponential(12, n),
        "txn_count_1h": rng.poisson(1.0, n).astype(float),
        "is_foreign": (rng.random(n) < 0.08).astype(float),
        "card_present": (rng.random(n) < 0.6).astype(float),
        "account_age_days": rng.integers(1, 3650, n).astype(float),
    }
    v = rng.normal(size=(n, 22))
    score = (
        0.8 * np.log(named["amount"])
        + 5.0 * named["merchant_risk"]
        + 0.04 * named["distance_km"]
        + 0.8 * named["txn_count_1h"]
        + 1.5 * named["is_foreign"]
        - 1.5 * named["card_present"]
        + 1.2 * (named["hour"] < 6)
        - 0.4 * np.log1p(named["account_age_days"] / 30)
        + v[:, 0]
        - 0.8 * v[:, 1]
        + 0.6 * v[:, 2]
        - 0.5 * v[:, 3]
        + 0.5 * v[:, 4] * v[:, 5]
        + rng.logistic(0, 0.3, n)
    )
    y = (score > np.quantile(score, 0.97)).astype(np.int64)
    X = np.column_stack([*named.values(), v]).astype(np.float32)
    return Dataset(X, y, [*named, *(f"v{i}" for i in range(1, 23))])


def churn_data(n: int = 3000) -> Dataset:
    """Telecom customers, as in the spec's Example 1; about a quarter churn."""
    rng = np.random.default_rng(SEED)
    tenure = rng.integers(0, 73, n).astype(float)
    contract = rng.choice(3, n, p=[0.55, 0.21, 0.24]).astype(float)  # month, 1 year, 2 years
    monthly = np.round(rng.uniform(18, 120, n), 2)
    flags = {
        name: (rng.random(n) < p).astype(float)
        for name, p in [
            ("senior_citizen", 0.16),
            ("has_partner", 0.48),
            ("has_dependents", 0.3),
            ("paperless_billing", 0.59),
            ("payment_electronic_check", 0.34),
            ("internet_fiber", 0.44),
            ("online_security", 0.29),
        ]
    }
    calls = rng.poisson(1.5, n).astype(float)
    logit = (
        0.3
        - 0.045 * tenure
        + 0.02 * (monthly - 65)
        - 1.2 * (contract == 1)
        - 2.2 * (contract == 2)
        + 0.35 * calls
        + 0.4 * flags["senior_citizen"]
        - 0.25 * flags["has_partner"]
        + 0.6 * flags["payment_electronic_check"]
        + 0.5 * flags["internet_fiber"]
        - 0.5 * flags["online_security"]
        + 0.3 * flags["paperless_billing"]
    )
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int64)
    total = np.round(tenure * monthly * rng.uniform(0.9, 1.1, n), 2)
    columns = {
        "tenure_months": tenure,
        "monthly_charges": monthly,
        "total_charges": total,
        "contract_type": contract,
        "num_support_calls": calls,
        **flags,
    }
    return Dataset(np.column_stack(list(columns.values())).astype(np.float32), y, list(columns))


DEMOS: dict[str, DemoSpec] = {
    spec.name: spec
    for spec in [
        DemoSpec(
            "iris_classifier",
            iris_data,
            lambda: RandomForestClassifier(
                n_estimators=100, max_depth=10, min_samples_split=5, random_state=SEED, n_jobs=1
            ),
            "accuracy",
            "Iris species (0 setosa, 1 versicolor, 2 virginica) from flower measurements in cm.",
        ),
        DemoSpec(
            "binary_classifier",
            binary_data,
            lambda: LogisticRegression(C=1.0, max_iter=1000),
            "accuracy",
            "Logistic regression on a synthetic 8-feature binary problem.",
        ),
        DemoSpec(
            "fraud_detector",
            fraud_data,
            lambda: ExtraTreesClassifier(
                n_estimators=200,
                max_depth=12,
                min_samples_leaf=10,
                class_weight="balanced_subsample",
                random_state=SEED,
                n_jobs=1,
            ),
            "roc_auc",
            "Card-transaction fraud (1) vs legitimate (0); synthetic, 3% fraud.",
        ),
        DemoSpec(
            "churn_classifier",
            churn_data,
            lambda: RandomForestClassifier(
                n_estimators=100, max_depth=10, min_samples_split=5, random_state=SEED, n_jobs=1
            ),
            "accuracy",
            "Customer churn (1) from a synthetic telecom account table.",
        ),
    ]
}


# -- training ----------------------------------------------------------------


def train_demo_models(
    registry: ModelRegistry, only: Iterable[str] | None = None, force: bool = False
) -> list[ModelMetadata]:
    """Train and register the demo models as version "1"; already registered ones
    are left alone (and not retrained) unless ``force``."""
    results: list[ModelMetadata] = []
    for name in _select(only):
        if not force and DEMO_VERSION in _versions(registry, name):
            results.append(registry.metadata(name, DEMO_VERSION))
            continue
        onnx_bytes, metadata = build_demo_model(name)
        try:
            results.append(registry.register(onnx_bytes, metadata, replace=force))
        except VersionExists:  # another process registered it meanwhile: same seeds, same model
            results.append(registry.metadata(name, DEMO_VERSION))
    return results


def build_demo_model(name: str) -> tuple[bytes, ModelMetadata]:
    """Train one demo model; returns its ONNX bytes and unregistered metadata."""
    spec = DEMOS[name]
    data = spec.make_data()
    X_train, X_test, y_train, y_test = train_test_split(
        data.X, data.y, test_size=0.2, stratify=data.y, random_state=SEED
    )
    model = spec.make_model().fit(X_train, y_train)
    onnx_bytes = to_onnx_bytes(model, name, data.X.shape[1])
    proba_test = check_parity(name, onnx_bytes, model, X_test)
    folds = StratifiedKFold(n_splits=5, shuffle=True, random_state=SEED)
    cv = cross_val_score(spec.make_model(), X_train, y_train, cv=folds, scoring=spec.cv_scoring, n_jobs=1)
    metrics = classification_metrics(y_test, model.predict(X_test), proba_test)
    classes = [int(c) for c in model.classes_]
    metadata = ModelMetadata(
        **_conventions(name, data.feature_names, classes),
        metrics={**metrics, "cv_mean": float(cv.mean()), "cv_std": float(cv.std())},
        params=_params(model, spec.cv_scoring),
        n_samples_train=len(y_train),
        n_samples_test=len(y_test),
        baseline=compute_baseline(X_train, data.feature_names, proba_test, classes),
        description=spec.description,
        parity=parity_report(onnx_bytes, model, X_test),
    )
    return onnx_bytes, metadata


def _conventions(name: str, feature_names: list[str], classes: list[int]) -> dict[str, Any]:
    """Metadata fields every demo model shares: how it was made and its ONNX signature."""
    return {
        "name": name,
        "version": DEMO_VERSION,
        "created_at": datetime.now(UTC),
        "task": "classification",
        "framework": "scikit-learn",
        "framework_versions": _framework_versions(),
        "source_format": "sklearn",
        "input_name": INPUT_NAME,
        "feature_names": feature_names,
        "n_features": len(feature_names),
        "feature_dtypes": ["float32"] * len(feature_names),
        "classes": classes,
        "output_label": LABEL_OUTPUT,
        "output_probabilities": PROBA_OUTPUT,
    }


def to_onnx_bytes(model: Any, name: str, n_features: int) -> bytes:
    """Convert a fitted classifier: input ``float_input`` [None, n_features] float32,
    outputs ``label`` int64 [N] and ``probabilities`` float [N, C] (no ZipMap)."""
    return _sklearn_to_onnx(model, name, n_features)


def parity_report(onnx_bytes: bytes, model: Any, X: np.ndarray) -> ParityReport:
    """The parity proof on the held-out split, as stored in the metadata."""
    classes = [int(c) for c in model.classes_]
    signature = Signature(
        "classification",
        X.shape[1],
        classes=classes,
        output_label=LABEL_OUTPUT,
        output_probabilities=PROBA_OUTPUT,
    )
    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    labels, proba = session.run([LABEL_OUTPUT, PROBA_OUTPUT], {INPUT_NAME: X})
    expected = Outputs(labels=model.predict(X), probabilities=model.predict_proba(X))
    return parity.compare(expected, Outputs(labels, proba), signature, "test_split", PROBA_TOLERANCE)


def check_parity(name: str, onnx_bytes: bytes, model: Any, X: np.ndarray) -> np.ndarray:
    """Raise ParityFailed unless ONNX reproduces ``model`` on X; returns the probabilities."""
    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    labels, proba = session.run([LABEL_OUTPUT, PROBA_OUTPUT], {INPUT_NAME: X})
    expected = model.predict(X)
    wrong = np.flatnonzero(labels != expected)
    if wrong.size:
        raise ParityFailed(
            f"{name}: ONNX labels differ from scikit-learn on {wrong.size} of {len(X)} rows "
            f"(first: row {wrong[0]}, {labels[wrong[0]]} != {expected[wrong[0]]})"
        )
    gap = float(np.max(np.abs(proba - model.predict_proba(X))))
    if gap > PROBA_TOLERANCE:
        raise ParityFailed(
            f"{name}: ONNX probabilities differ from scikit-learn by {gap:.1e} (> {PROBA_TOLERANCE})"
        )
    return np.asarray(proba, dtype=np.float64)


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray, proba: np.ndarray) -> dict[str, float]:
    binary = proba.shape[1] == 2
    auc = roc_auc_score(y_true, proba[:, 1]) if binary else roc_auc_score(y_true, proba, multi_class="ovr")
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "f1": float(f1_score(y_true, y_pred, average="binary" if binary else "macro")),
        "roc_auc": float(auc),
    }


# -- helpers -----------------------------------------------------------------


def _select(only: Iterable[str] | None) -> list[str]:
    names = list(DEMOS) if only is None else list(only)
    unknown = [n for n in names if n not in DEMOS]
    if unknown:
        raise ValueError(f"unknown demo models {unknown}; available: {', '.join(DEMOS)}")
    return names


def _versions(registry: ModelRegistry, name: str) -> list[str]:
    try:
        return registry.versions(name)
    except ModelNotFound:
        return []


def _framework_versions() -> dict[str, str]:
    dists = {
        "sklearn": "scikit-learn",
        "skl2onnx": "skl2onnx",
        "onnx": "onnx",
        "onnxruntime": "onnxruntime",
        "numpy": "numpy",
    }
    return {key: dist_version(dist) for key, dist in dists.items()}


def _params(model: Any, cv_scoring: str) -> dict[str, Any]:
    simple = (bool, int, float, str, type(None))
    params = {
        k: v for k, v in sorted(model.get_params().items()) if isinstance(v, simple) and v != "deprecated"
    }
    return {"estimator": type(model).__name__, **params, "cv_scoring": cv_scoring, "seed": SEED}


def main(argv: Sequence[str] | None = None) -> int:
    """``train_demo.py [--root DIR] [--only NAME ...] [--force]``."""
    parser = argparse.ArgumentParser(description="Train the rtml demo models into the registry.")
    parser.add_argument("--root", help="registry directory (default: settings.registry.root)")
    parser.add_argument("--only", nargs="+", choices=list(DEMOS), help="train just these models")
    parser.add_argument("--force", action="store_true", help="retrain and replace version 1")
    args = parser.parse_args(argv)
    if args.root is None:
        from runtime.settings import load_settings

        args.root = load_settings().registry.root
    registry = ModelRegistry(args.root)
    for name in _select(args.only):
        started = time.perf_counter()
        (meta,) = train_demo_models(registry, only=[name], force=args.force)
        metrics = " ".join(f"{k}={v:.4f}" for k, v in meta.metrics.items())
        print(
            f"{meta.name} v{meta.version} sha256={meta.onnx_sha256[:12]} {metrics} "
            f"({time.perf_counter() - started:.1f}s)",
            file=sys.stdout,
        )
    return 0
