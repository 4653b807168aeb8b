"""The OpenAPI document describes every request and response body (issue 11): the prediction
endpoints (answered by the fast path), the admin endpoints (raw bodies) and their JSON errors;
and real answers conform to the documented schemas."""

from __future__ import annotations

from typing import Any

import httpx
import jsonschema
import pytest

from tests.stack_fixtures import RunningStack


@pytest.fixture(scope="module")
def spec(stack: RunningStack) -> dict[str, Any]:
    response = httpx.get(f"{stack.base_url}/openapi.json", timeout=10)
    assert response.status_code == 200
    return dict(response.json())


def schema_of(spec: dict[str, Any], path: str, method: str, status: str) -> dict[str, Any]:
    ref = spec["paths"][path][method]["responses"][status]["content"]["application/json"]["schema"]["$ref"]
    return {**spec["components"]["schemas"][ref.rsplit("/", 1)[1]], "components": spec["components"]}


def conforms(document: Any, schema: dict[str, Any]) -> None:
    jsonschema.validate(document, schema, cls=jsonschema.Draft202012Validator)


def test_prediction_endpoints_describe_their_bodies_and_errors(spec: dict[str, Any]) -> None:
    for path, answer in (("/api/v1/predict", "PredictAnswer"), ("/api/v1/batch_predict", "BatchAnswer")):
        operation = spec["paths"][path]["post"]
        assert operation["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("Body")
        responses = operation["responses"]
        assert responses["200"]["content"]["application/json"]["schema"]["$ref"].endswith(answer)
        for status in ("400", "401", "403", "404", "413", "422", "429", "503", "504"):
            assert responses[status]["content"]["application/json"]["schema"]["$ref"].endswith("ErrorAnswer")


def test_admin_endpoints_describe_their_bodies(spec: dict[str, Any]) -> None:
    prefix = "/api/v1/admin/models/{name}"
    promote = spec["paths"][f"{prefix}/promote"]["post"]
    assert promote["requestBody"]["content"]["application/json"]["schema"]["properties"]["version"]
    traffic = spec["paths"][f"{prefix}/traffic"]["put"]["requestBody"]["content"]["application/json"][
        "schema"
    ]
    assert set(traffic["properties"]) == {"split", "shadow"}
    assert "409" in promote["responses"]


def test_real_answers_conform_to_the_documented_schemas(stack: RunningStack, spec: dict[str, Any]) -> None:
    ok = httpx.post(
        f"{stack.base_url}/api/v1/predict",
        json={"model_name": "iris_classifier", "features": [5.1, 3.5, 1.4, 0.2]},
        timeout=10,
    )
    conforms(ok.json(), schema_of(spec, "/api/v1/predict", "post", "200"))
    batch = httpx.post(
        f"{stack.base_url}/api/v1/batch_predict",
        json={"model_name": "iris_classifier", "features_batch": [[5.1, 3.5, 1.4, 0.2]] * 3},
        timeout=10,
    )
    conforms(batch.json(), schema_of(spec, "/api/v1/batch_predict", "post", "200"))
    bad = httpx.post(f"{stack.base_url}/api/v1/predict", json={"model_name": "iris_classifier"}, timeout=10)
    assert bad.status_code == 422
    conforms(bad.json(), schema_of(spec, "/api/v1/predict", "post", "422"))
