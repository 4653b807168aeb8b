"""rtml_client's own logic over a mocked transport: retries, backoff, Retry-After, error mapping,
result objects. (The same calls against the real gateway: tests/integration/test_client_stack.py.)"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from email.utils import formatdate

import httpx
import pytest

import rtml_client
from rtml_client import (
    AsyncMLClient,
    ConnectionFailed,
    InvalidInput,
    MLClient,
    ModelNotFound,
    RetryPolicy,
    RtmlClientError,
    Timeout,
    Unavailable,
)
from rtml_client.retry import parse_retry_after

Handler = Callable[[httpx.Request], httpx.Response]

PREDICTION = {
    "prediction": 0,
    "probability": 0.97,
    "probabilities": [0.97, 0.02, 0.01],
    "model_name": "iris_classifier",
    "model_version": "1",
    "request_id": "r1",
    "timestamp": 1.0,
    "from_cache": True,
    "latency_ms": 1.5,
}


def error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(status, json={"error": {"code": code, "message": message}}, headers=headers)


class Script:
    """A transport answering from a list, one item per request; records requests and sleeps."""

    def __init__(self, *answers: httpx.Response | Exception) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []
        self.sleeps: list[float] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    def client(self, retries: int = 3, **kwargs: object) -> MLClient:
        policy = RetryPolicy(retries=retries, random=lambda: 0.5)
        return MLClient(
            "http://gw.test",
            retry_policy=policy,
            transport=httpx.MockTransport(self),
            sleep=self.sleeps.append,
            **kwargs,  # type: ignore[arg-type]
        )


def test_predict_sends_the_documented_body_and_returns_a_typed_dict() -> None:
    script = Script(httpx.Response(200, json=PREDICTION))
    with script.client(api_key="k3y") as client:
        result = client.predict("iris_classifier", [5.1, 3.5, 1.4, 0.2], use_cache=False, model_version=1)
    request = script.requests[0]
    assert request.url.path == "/api/v1/predict"
    assert json.loads(request.content) == {
        "model_name": "iris_classifier",
        "features": [5.1, 3.5, 1.4, 0.2],
        "use_cache": False,
        "model_version": "1",
    }
    assert request.headers["Authorization"] == "Bearer k3y"
    assert result.prediction == 0 and result["prediction"] == 0
    assert result.probability == result["probability"] == 0.97
    assert result.from_cache is True and result.get("from_cache") is True
    assert result["cache_hit"] is True  # the original description's Portuguese example name
    assert result.get("nonexistent", "d") == "d"
    assert result.server_latency_ms == 1.5 and result.latency_ms > 0  # client-measured round trip
    assert json.loads(json.dumps(result))["prediction"] == 0
    with pytest.raises(KeyError):
        result["nonexistent"]


def test_numpy_rows_are_sent_as_plain_numbers() -> None:
    np = pytest.importorskip("numpy")
    script = Script(httpx.Response(200, json={**PREDICTION, "predictions": [0, 1], "count": 2}))
    with script.client() as client:
        client.batch_predict("iris_classifier", np.asarray([[1.0, 2, 3, 4], [5, 6, 7, 8]], np.float32))
    assert json.loads(script.requests[0].content)["features_batch"] == [[1, 2, 3, 4], [5, 6, 7, 8]]


@pytest.mark.parametrize(
    ("status", "code", "kind"),
    [
        (400, "bad_request", rtml_client.BadRequest),
        (404, "model_not_found", ModelNotFound),
        (409, "conflict", rtml_client.Conflict),
        (413, "payload_too_large", rtml_client.PayloadTooLarge),
        (422, "invalid_input", InvalidInput),
        (504, "timeout", Timeout),
        (500, "model_error", rtml_client.ServerError),
    ],
)
def test_errors_that_cannot_succeed_are_raised_at_once_with_the_server_message(
    status: int, code: str, kind: type[RtmlClientError]
) -> None:
    script = Script(error(status, code, f"message for {status}"), httpx.Response(200, json=PREDICTION))
    with script.client() as client, pytest.raises(kind) as caught:
        client.predict("iris_classifier", [1.0])
    assert (caught.value.status, caught.value.code, caught.value.message) == (
        status,
        code,
        f"message for {status}",
    )
    assert f"message for {status}" in str(caught.value)
    assert len(script.requests) == 1 and script.sleeps == [] and caught.value.attempts == 1


def test_timeout_is_also_the_builtin_timeout_error() -> None:
    script = Script(error(504, "timeout", "no worker answered"))
    with script.client() as client, pytest.raises(TimeoutError):
        client.predict("churn_classifier", [1.0])


def test_503_is_retried_with_growing_jittered_backoff_then_succeeds() -> None:
    script = Script(
        *[error(503, "unavailable", "kafka down") for _ in range(3)], httpx.Response(200, json=PREDICTION)
    )
    with script.client(retries=3) as client:
        assert client.predict("iris_classifier", [1.0]).prediction == 0
    assert len(script.requests) == 4
    assert script.sleeps == [0.05, 0.1, 0.2]  # min(5, 0.1 * 2**n) * jitter 0.5


def test_retries_exhausted_raise_the_last_error_with_the_attempt_count() -> None:
    script = Script(*[error(503, "unavailable", "kafka unreachable") for _ in range(3)])
    with script.client(retries=2) as client, pytest.raises(Unavailable, match="kafka unreachable") as caught:
        client.predict("iris_classifier", [1.0])
    assert caught.value.attempts == 3 and len(script.sleeps) == 2


def test_retry_after_seconds_is_honoured_on_429() -> None:
    script = Script(
        error(429, "rate_limited", "slow down", {"Retry-After": "2"}), httpx.Response(200, json=PREDICTION)
    )
    with script.client() as client:
        client.predict("iris_classifier", [1.0])
    assert script.sleeps == [2.0]


def test_retry_after_http_date_is_honoured() -> None:
    when = formatdate(1_000_010.0, usegmt=True)
    assert parse_retry_after(when, now=1_000_000.0) == pytest.approx(10.0)
    assert parse_retry_after("garbage") is None and parse_retry_after(None) is None
    assert parse_retry_after(formatdate(1.0, usegmt=True), now=100.0) == 0.0  # in the past: now


def test_a_retry_after_beyond_the_policy_limit_is_raised_not_waited() -> None:
    script = Script(error(503, "unavailable", "maintenance", {"Retry-After": "3600"}))
    with script.client() as client, pytest.raises(Unavailable) as caught:
        client.predict("iris_classifier", [1.0])
    assert caught.value.retry_after == 3600.0 and script.sleeps == []


def test_connection_errors_are_retried_then_raised_as_connection_failed() -> None:
    refused = httpx.ConnectError("connection refused")
    script = Script(refused, refused, httpx.Response(200, json=PREDICTION))
    with script.client() as client:
        assert client.predict("iris_classifier", [1.0]).prediction == 0
    script = Script(refused, refused)
    with script.client(retries=1) as client, pytest.raises(ConnectionFailed) as caught:
        client.health_check()
    assert isinstance(caught.value, Unavailable | ConnectionError) and "gw.test" in caught.value.message


def test_client_side_read_timeout_is_not_retried() -> None:
    script = Script(httpx.ReadTimeout("slow"))
    with script.client() as client, pytest.raises(Timeout):
        client.predict("iris_classifier", [1.0])
    assert len(script.requests) == 1


def test_non_json_error_bodies_keep_their_text() -> None:
    script = Script(httpx.Response(502, text="<html>Bad Gateway</html>"))
    with script.client() as client, pytest.raises(rtml_client.ServerError, match="Bad Gateway"):
        client.get_model_info("iris_classifier")


def test_ready_returns_a_falsy_answer_on_503_instead_of_raising() -> None:
    body = {"ready": False, "reasons": ["kafka unreachable: timeout"], "cache": "up"}
    script = Script(httpx.Response(503, json=body))
    with script.client() as client:
        readiness = client.ready()
    assert not readiness and readiness.reasons == ["kafka unreachable: timeout"] and len(script.requests) == 1


def test_health_models_and_metrics() -> None:
    script = Script(
        httpx.Response(200, json={"status": "ok", "timestamp": 1.0, "uptime_s": 3.0}),
        httpx.Response(200, json={"models": [{"name": "iris_classifier", "n_features": 4}]}),
        httpx.Response(200, json={"name": "iris_classifier", "feature_names": ["a", "b"], "classes": [0, 1]}),
        httpx.Response(200, text="rtml_gateway_requests_total 3\n"),
    )
    with script.client() as client:
        assert client.health_check()
        assert [m.name for m in client.list_models()] == ["iris_classifier"]
        info = client.get_model_info("iris_classifier")
        assert info.feature_names == ["a", "b"] and info.classes == [0, 1]
        assert "rtml_gateway_requests_total" in client.get_metrics()
    assert [r.url.path for r in script.requests] == [
        "/health",
        "/api/v1/models",
        "/api/v1/models/iris_classifier",
        "/metrics",
    ]


def test_benchmark_statistics_and_error_counting() -> None:
    answers: list[httpx.Response | Exception] = [httpx.Response(200, json=PREDICTION) for _ in range(9)]
    answers.insert(4, error(422, "invalid_input", "bad"))
    script = Script(*answers)
    with script.client() as client:
        stats = client.benchmark("iris_classifier", [1.0], n_requests=10, concurrency=1)
    assert stats.n_requests == 10 and stats.n_errors == 1 and stats["errors_by_code"] == {"invalid_input": 1}
    assert 0 < stats.p50_latency_ms <= stats.p95_latency_ms <= stats.p99_latency_ms <= stats.max_latency_ms
    assert stats["mean_latency_ms"] > 0 and stats.throughput_rps > 0


def test_benchmark_with_threads_counts_every_request() -> None:
    transport = httpx.MockTransport(lambda request: httpx.Response(200, json=PREDICTION))
    with MLClient("http://gw.test", transport=transport) as client:
        stats = client.benchmark("iris_classifier", [1.0], n_requests=50, concurrency=4)
    assert stats.n_requests == 50 and stats.n_errors == 0 and stats.concurrency == 4


def test_benchmark_raises_when_every_request_failed() -> None:
    script = Script(*[error(404, "model_not_found", "no model 'x'") for _ in range(3)])
    with script.client() as client, pytest.raises(ModelNotFound, match="no model 'x'"):
        client.benchmark("x", [1.0], n_requests=3)


def test_async_client_has_the_same_retry_and_error_behaviour() -> None:
    script = Script(error(503, "unavailable", "down"), httpx.Response(200, json=PREDICTION))
    sleeps: list[float] = []

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    async def scenario() -> None:
        async with AsyncMLClient(
            "http://gw.test",
            retry_policy=RetryPolicy(random=lambda: 1.0),
            transport=httpx.MockTransport(script),
            sleep=sleep,
        ) as client:
            result = await client.predict("iris_classifier", [1.0])
            assert result["prediction"] == 0
            script.answers.append(error(404, "model_not_found", "unknown model 'nope'"))
            with pytest.raises(ModelNotFound, match="unknown model 'nope'"):
                await client.get_model_info("nope")
            script.answers.extend(httpx.Response(200, json=PREDICTION) for _ in range(6))
            stats = await client.benchmark("iris_classifier", [1.0], n_requests=6, concurrency=3)
            assert stats.n_requests == 6

    asyncio.run(scenario())
    assert sleeps == [0.1]
