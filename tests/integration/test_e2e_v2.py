"""Open Inference Protocol (V2) on the gateway, driven by the real tritonclient[http] package."""

from __future__ import annotations

import httpx
import numpy as np
import pytest

from tests.stack_fixtures import RunningStack

tritonclient_http = pytest.importorskip("tritonclient.http")
from tritonclient.utils import InferenceServerException  # noqa: E402

ROWS = np.asarray([[5.1, 3.5, 1.4, 0.2], [6.2, 2.9, 4.3, 1.3], [7.3, 2.9, 6.3, 1.8]], dtype=np.float32)


@pytest.fixture
def triton(stack: RunningStack) -> tritonclient_http.InferenceServerClient:
    client = tritonclient_http.InferenceServerClient(stack.base_url.removeprefix("http://"))
    yield client
    client.close()


def test_live_ready_and_metadata(triton: tritonclient_http.InferenceServerClient) -> None:
    assert triton.is_server_live() and triton.is_server_ready()
    assert triton.is_model_ready("iris_classifier") and triton.is_model_ready("iris_classifier", "1")
    assert triton.get_server_metadata()["name"] == "rtml"
    metadata = triton.get_model_metadata("iris_classifier")
    assert metadata["versions"] == ["1", "2"]
    assert metadata["inputs"] == [{"name": "float_input", "datatype": "FP32", "shape": [-1, 4]}]
    assert [o["name"] for o in metadata["outputs"]] == ["label", "probabilities"]
    with pytest.raises(InferenceServerException):
        triton.get_model_metadata("nope")


@pytest.mark.parametrize("binary", [False, True])
def test_infer_equals_api_v1_predict(
    stack: RunningStack, triton: tritonclient_http.InferenceServerClient, binary: bool
) -> None:
    tensor = tritonclient_http.InferInput("float_input", list(ROWS.shape), "FP32")
    tensor.set_data_from_numpy(ROWS, binary_data=binary)
    outputs = [
        tritonclient_http.InferRequestedOutput("label", binary_data=False),
        tritonclient_http.InferRequestedOutput("probabilities", binary_data=False),
    ]
    result = triton.infer("iris_classifier", [tensor], model_version="1", outputs=outputs, request_id="v2-1")
    labels = result.as_numpy("label")
    probabilities = result.as_numpy("probabilities")
    assert result.get_response()["id"] == "v2-1"
    assert labels.tolist() == [0, 1, 2] and probabilities.shape == (3, 3)
    for row, label, row_probabilities in zip(ROWS.tolist(), labels, probabilities, strict=True):
        v1 = httpx.post(
            f"{stack.base_url}/api/v1/predict",
            json={"model_name": "iris_classifier", "model_version": "1", "features": row},
            timeout=10,
        ).json()
        assert v1["prediction"] == label
        assert v1["probabilities"] == pytest.approx(row_probabilities.tolist(), abs=1e-6)


def test_infer_errors_use_the_protocol_form(stack: RunningStack) -> None:
    url = f"{stack.base_url}/v2/models/iris_classifier/infer"
    wrong_width = {
        "inputs": [{"name": "float_input", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}]
    }
    response = httpx.post(url, json=wrong_width, timeout=10)
    assert response.status_code == 422 and "expects 4" in response.json()["error"]
    wrong_type = {
        "inputs": [{"name": "x", "shape": [1, 4], "datatype": "BYTES", "data": ["a", "b", "c", "d"]}]
    }
    response = httpx.post(url, json=wrong_type, timeout=10)
    assert response.status_code == 400 and "datatype" in response.json()["error"]
    unknown = httpx.post(f"{stack.base_url}/v2/models/nope/infer", json=wrong_width, timeout=10)
    assert unknown.status_code == 404 and isinstance(unknown.json()["error"], str)
    nested = {
        "id": "n",
        "inputs": [
            {"name": "float_input", "shape": [1, 4], "datatype": "FP64", "data": [[5.1, 3.5, 1.4, 0.2]]}
        ],
        "parameters": {"any": 1},
    }
    ok = httpx.post(url, json=nested, timeout=10).json()
    assert ok["outputs"][0]["data"] == [0] and ok["id"] == "n" and ok["model_version"] == "2"


def test_bad_ids_and_too_many_rows_are_answered_at_once(stack: RunningStack) -> None:
    """Issue 11: a V2 id over 128 characters used to hang until the deadline (the worker refused
    it silently); rows beyond gateway.max_batch_rows were not capped."""
    url = f"{stack.base_url}/v2/models/iris_classifier/infer"
    tensor = {"name": "float_input", "shape": [1, 4], "datatype": "FP32", "data": [5.1, 3.5, 1.4, 0.2]}
    long_id = httpx.post(url, json={"id": "x" * 129, "inputs": [tensor]}, timeout=10)
    assert long_id.status_code == 422 and "1 to 128 characters" in long_id.json()["error"]
    assert long_id.elapsed.total_seconds() < 1
    rows = 10_001
    many = {"name": "float_input", "shape": [rows, 4], "datatype": "FP32", "data": [1.0] * (4 * rows)}
    too_many = httpx.post(url, json={"inputs": [many]}, timeout=10)
    assert too_many.status_code == 422 and "10001 rows" in too_many.json()["error"]
