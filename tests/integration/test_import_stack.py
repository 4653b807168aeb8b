"""Import -> served through the running gateway and workers -> the original model's predictions.

One registry holds every family of the spec (scikit-learn, DBSCAN's rule, a Keras MLP and a
PyTorch MLP); one stack (gateway + a worker serving all of them) is started on it.
"""

from __future__ import annotations

import importlib.util
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from importers import import_model
from runtime.registry import ModelRegistry
from tests.stack_fixtures import RunningStack, StackFactory
from tests.unit.test_import_sklearn import FAMILIES, fit, original_predictions

# The frameworks' own deprecation noise (numpy 2 __array__ protocol, legacy exporters) is not ours.
FRAMEWORK_WARNINGS = [
    pytest.mark.filterwarnings("ignore::DeprecationWarning:keras"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning:tensorflow"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning:tf2onnx"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning:torch"),
    pytest.mark.filterwarnings("ignore::FutureWarning:torch"),
    pytest.mark.filterwarnings("ignore::UserWarning:torch"),
]
pytestmark = FRAMEWORK_WARNINGS

TF_MISSING = importlib.util.find_spec("tensorflow") is None or importlib.util.find_spec("tf2onnx") is None
TORCH_MISSING = importlib.util.find_spec("torch") is None
SKIP_TF = "TensorFlow/tf2onnx not installed (pip install 'rtml[tensorflow]'): Keras case skipped"
SKIP_TORCH = "PyTorch not installed (pip install 'rtml[torch]'): PyTorch case skipped"


@dataclass
class Case:
    name: str
    rows: np.ndarray
    expected: dict[str, np.ndarray]


@dataclass
class Served:
    stack: RunningStack
    cases: dict[str, Case]


def keras_mlp(tmp: Path) -> tuple[Path, np.ndarray, Callable[[np.ndarray], np.ndarray]]:
    import keras

    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 4)).astype(np.float32)
    y = (X[:, 0] + X[:, 1] > 0).astype(int) + (X[:, 2] > 0.8).astype(int)
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((4,)),
            keras.layers.Dense(16, activation="relu"),
            keras.layers.Dense(3, activation="softmax"),
        ]
    )
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(X, y, epochs=5, verbose=0)
    path = tmp / "mlp.keras"
    model.save(path)
    return path, X, lambda rows: np.asarray(model(rows, training=False))


def torch_mlp(tmp: Path) -> tuple[Path, np.ndarray, Callable[[np.ndarray], np.ndarray]]:
    import torch

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(5, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1)).eval()
    X = np.random.default_rng(1).normal(size=(100, 5)).astype(np.float32)
    path = tmp / "mlp.pth"
    torch.save(model, path)

    def predict(rows: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return np.asarray(model(torch.from_numpy(rows)).numpy())

    return path, X, predict


def _sklearn_cases(root: Path, registry: ModelRegistry) -> dict[str, Case]:
    cases = {}
    for family in FAMILIES:
        model, X = fit(family)
        name = family[0].replace("_", "-")
        path = root / f"{name}.pkl"
        path.write_bytes(pickle.dumps(model))
        import_model(path, name, registry)
        rows = X[~np.isnan(X).any(axis=1)][:12]  # the gateway refuses NaN
        cases[name] = Case(name, rows, original_predictions(model, rows))
    return cases


def _framework_cases(root: Path, registry: ModelRegistry) -> dict[str, Case]:
    cases = {}
    if not TF_MISSING:
        path, X, call = keras_mlp(root)
        import_model(path, "keras-mlp", registry)
        proba = call(X[:12])
        cases["keras-mlp"] = Case(
            "keras-mlp", X[:12], {"label": proba.argmax(axis=1), "probabilities": proba}
        )
    if not TORCH_MISSING:
        path, X, call = torch_mlp(root)
        import_model(path, "torch-mlp", registry)
        cases["torch-mlp"] = Case("torch-mlp", X[:12], {"variable": call(X[:12])})
    return cases


@pytest.fixture(scope="module")
def served(stack_factory: StackFactory, tmp_path_factory: pytest.TempPathFactory) -> Served:
    root = tmp_path_factory.mktemp("imports")
    registry = ModelRegistry(root / "registry")
    cases = {**_sklearn_cases(root, registry), **_framework_cases(root, registry)}
    stack = stack_factory(
        workers=1, models=list(cases), extra_env={"RTML_REGISTRY__ROOT": str(registry.root)}
    )
    return Served(stack, cases)


def batch_predict(served: Served, case: Case) -> dict[str, Any]:
    body = {
        "model_name": case.name,
        "features_batch": case.rows.tolist(),
        "use_cache": False,
        "timeout_ms": 20000,
    }
    answer = httpx.post(f"{served.stack.base_url}/api/v1/batch_predict", json=body, timeout=30)
    assert answer.status_code == 200, answer.text
    result: dict[str, Any] = answer.json()
    return result


def check(case: Case, result: dict[str, Any]) -> None:
    assert result["count"] == len(case.rows) and result["model_version"] == "1"
    expected = case.expected
    if "variable" in expected:  # regressors: the value is the prediction, no probabilities
        np.testing.assert_allclose(result["predictions"], expected["variable"].reshape(-1), atol=1e-4)
        assert result["probabilities"] is None
        return
    assert result["predictions"] == expected["label"].tolist()
    if "distances" in expected:  # KMeans: the cluster id and the distance to each centre
        assert result["probabilities"] is None
        np.testing.assert_allclose(result["distances"], expected["distances"], atol=1e-4)
    elif "probabilities" in expected:  # classifiers
        np.testing.assert_allclose(result["probabilities"], expected["probabilities"], atol=1e-4)
    else:  # DBSCAN: the cluster id alone
        assert result["probabilities"] is None and result.get("distances") is None


SKLEARN_NAMES = [f[0].replace("_", "-") for f in FAMILIES]


@pytest.mark.parametrize("name", SKLEARN_NAMES)
def test_sklearn_family_is_served_like_the_original(served: Served, name: str) -> None:
    case = served.cases[name]
    check(case, batch_predict(served, case))


@pytest.mark.skipif(TF_MISSING, reason=SKIP_TF)
def test_keras_mlp_is_served_like_the_original(served: Served) -> None:
    case = served.cases["keras-mlp"]
    check(case, batch_predict(served, case))


@pytest.mark.skipif(TORCH_MISSING, reason=SKIP_TORCH)
def test_torch_mlp_regressor_is_served_like_the_original(served: Served) -> None:
    case = served.cases["torch-mlp"]
    check(case, batch_predict(served, case))


def test_single_predict_of_a_regressor(served: Served) -> None:
    """/api/v1/predict for a regression model: a float prediction, no probability."""
    case = served.cases["ridge"]
    body = {"model_name": "ridge", "features": case.rows[0].tolist(), "use_cache": False, "timeout_ms": 20000}
    answer = httpx.post(f"{served.stack.base_url}/api/v1/predict", json=body, timeout=30).json()
    assert answer["prediction"] == pytest.approx(float(case.expected["variable"][0, 0]), abs=1e-4)
    assert answer["probability"] is None and answer["probabilities"] is None


def test_models_endpoint_lists_the_imports(served: Served) -> None:
    listed = httpx.get(f"{served.stack.base_url}/api/v1/models", timeout=10).json()
    text = str(listed)
    for name in ("kmeans", "dbscan", "ridge", "hist-gradient-boosting"):
        assert name in text


def test_regressor_cache_hit_returns_the_same_value(served: Served) -> None:
    case = served.cases["gradient-boosting-regressor"]
    body = {
        "model_name": case.name,
        "features": case.rows[1].tolist(),
        "use_cache": True,
        "timeout_ms": 20000,
    }
    url = f"{served.stack.base_url}/api/v1/predict"
    first = httpx.post(url, json=body, timeout=30).json()
    second = httpx.post(url, json=body, timeout=30).json()
    assert second["from_cache"] is True and second["prediction"] == first["prediction"]
    assert first["prediction"] == pytest.approx(float(case.expected["variable"][1, 0]), abs=1e-4)


def test_open_inference_protocol_serves_a_regressor(served: Served) -> None:
    case = served.cases["lasso"]
    rows = case.rows[:3]
    body = {
        "inputs": [
            {"name": "float_input", "shape": list(rows.shape), "datatype": "FP32", "data": rows.tolist()}
        ]
    }
    answer = httpx.post(f"{served.stack.base_url}/v2/models/lasso/infer", json=body, timeout=30)
    assert answer.status_code == 200, answer.text
    (output,) = answer.json()["outputs"]
    assert output["name"] == "variable" and output["shape"] == [3]
    np.testing.assert_allclose(output["data"], case.expected["variable"][:3].reshape(-1), atol=1e-4)
