"""Every bad HTTP input gets exactly one JSON error with the right status and a message naming the problem."""

from __future__ import annotations

import httpx
import pytest

from tests.stack_fixtures import RunningStack


def post(stack: RunningStack, content: bytes | str, path: str = "/api/v1/predict") -> httpx.Response:
    return httpx.post(
        f"{stack.base_url}{path}", content=content, headers={"content-type": "application/json"}, timeout=10
    )


@pytest.mark.parametrize(
    ("body", "status", "code", "fragment"),
    [
        ('{"model_name": "iris_classifier", "features": [5.1, 3.5', 400, "bad_request", "malformed JSON"),
        ("[1, 2, 3]", 400, "bad_request", "JSON object"),
        ('{"model_name": "nope", "features": [1, 2, 3, 4]}', 404, "model_not_found", "iris_classifier"),
        (
            '{"model_name": "iris_classifier", "model_version": "9", "features": [1, 2, 3, 4]}',
            404,
            "model_not_found",
            "available versions: 1, 2",
        ),
        ('{"model_name": "iris_classifier", "features": [1, 2, 3]}', 422, "invalid_input", "expects 4"),
        (
            '{"model_name": "iris_classifier", "features": [1, "x", 3, 4]}',
            422,
            "invalid_input",
            "features[1]",
        ),
        (
            '{"model_name": "iris_classifier", "features": [1, NaN, 3, 4]}',
            422,
            "invalid_input",
            "features[1] is NaN",
        ),
        (
            '{"model_name": "iris_classifier", "features": [1, 2, Infinity, 4]}',
            422,
            "invalid_input",
            "infinite",
        ),
        ('{"model_name": "iris_classifier", "features": [1, 2, 1e999, 4]}', 422, "invalid_input", "infinite"),
        (
            '{"model_name": "iris_classifier", "features": [1, true, 3, 4]}',
            422,
            "invalid_input",
            "features[1]",
        ),
        ('{"model_name": "iris_classifier"}', 422, "invalid_input", "'features' is required"),
        ('{"features": [1, 2, 3, 4]}', 422, "invalid_input", "'model_name' is required"),
        (
            '{"model_name": "iris_classifier", "features": [1, 2, 3, 4], "timeout_ms": 0}',
            422,
            "invalid_input",
            "timeout_ms",
        ),
        (
            '{"model_name": "iris_classifier", "features": [1, 2, 3, 4], "model_version": "v1"}',
            422,
            "invalid_input",
            "model_version",
        ),
    ],
)
def test_bad_single_predict_inputs(
    stack: RunningStack, body: str, status: int, code: str, fragment: str
) -> None:
    response = post(stack, body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code
    assert fragment in error["message"]


def test_bad_batch_rows_name_the_row(stack: RunningStack) -> None:
    response = post(
        stack,
        '{"model_name": "iris_classifier", "features_batch": [[1, 2, 3, 4], [1, 2, 3]]}',
        "/api/v1/batch_predict",
    )
    assert response.status_code == 422
    assert "features_batch[1]" in response.json()["error"]["message"]
    empty = post(stack, '{"model_name": "iris_classifier", "features_batch": []}', "/api/v1/batch_predict")
    assert empty.status_code == 422


def test_body_over_the_limit_is_413(stack: RunningStack) -> None:
    huge = '{"model_name": "iris_classifier", "features": [' + ",".join(["1.0"] * 2_000_000) + "]}"
    response = post(stack, huge)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"


def test_duplicate_in_flight_request_id_is_409(stack: RunningStack) -> None:
    import asyncio

    n = stack.registry.metadata("churn_classifier", "1").n_features
    body = {
        "model_name": "churn_classifier",
        "features": [0.1] * n,
        "timeout_ms": 1500,
        "request_id": "dup-1",
    }

    async def run() -> list[int]:
        async with httpx.AsyncClient(base_url=stack.base_url, timeout=10) as client:
            first = asyncio.create_task(client.post("/api/v1/predict", json=body))
            await asyncio.sleep(0.3)
            second = await client.post("/api/v1/predict", json=body)
            return [(await first).status_code, second.status_code]

    assert asyncio.run(run()) == [504, 409]


def test_unknown_route_and_model_info_errors_are_json(stack: RunningStack) -> None:
    missing = httpx.get(f"{stack.base_url}/api/v1/nothing", timeout=5)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    unknown = httpx.get(f"{stack.base_url}/api/v1/models/nope", timeout=5)
    assert unknown.status_code == 404 and "iris_classifier" in unknown.json()["error"]["message"]


def test_a_body_under_the_limit_whose_kafka_message_would_not_be_is_a_413(stack: RunningStack) -> None:
    """Issue 11: the envelope adds ~200 bytes to the body; a body just under the limit must get a
    JSON 413 naming both sizes, not a 500 or a hang."""
    import orjson

    limit, target = 1_000_000, 1_000_000 - 40
    long_row, short_row = [1.0000000000000002] * 30, [1.5] * 30  # fraud_detector's width
    rows = [long_row] * ((limit - 2000) // len(orjson.dumps(long_row)))
    head: dict[str, object] = {"model_name": "fraud_detector", "features_batch": rows, "request_id": "r"}
    while len(orjson.dumps(head)) + len(orjson.dumps(short_row)) + 1 <= target:
        rows.append(short_row)
    head["request_id"] = "r" * max(1, min(128, target - len(orjson.dumps(head)) + 1))
    body = orjson.dumps(head)
    assert limit - 200 < len(body) <= limit, len(body)
    response = post(stack, body, "/api/v1/batch_predict")
    assert response.status_code == 413, response.text
    assert "Kafka message would be" in response.json()["error"]["message"]
