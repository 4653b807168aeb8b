"""The gateway's HTTP API as data: request bodies, answer decoding and error mapping.

No I/O here, so :class:`~rtml_client.MLClient` and :class:`~rtml_client.AsyncMLClient` share
every rule and differ only in how they wait.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from rtml_client._version import __version__
from rtml_client.errors import ConnectionFailed, RtmlClientError, Timeout, error_from_response
from rtml_client.results import BatchResult, PredictionResult
from rtml_client.retry import RetryPolicy, parse_retry_after

PREDICT = "/api/v1/predict"
BATCH_PREDICT = "/api/v1/batch_predict"
MODELS = "/api/v1/models"
DEFAULT_URL = "http://127.0.0.1:8080"
DEFAULT_TIMEOUT_S = 10.0  # above the gateway's default 5 s deadline, so its 504 arrives first

Features = Sequence[float] | Any  # a sequence of numbers or anything with .tolist() (numpy arrays)


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    json: dict[str, Any] | None = None


def client_kwargs(base_url: str, api_key: str | None, timeout: float, max_connections: int) -> dict[str, Any]:
    """Arguments for ``httpx.Client`` / ``httpx.AsyncClient``: one pooled client per SDK client."""
    headers = {"User-Agent": f"rtml-client/{__version__}", "Accept": "application/json"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    return {
        "base_url": base_url.rstrip("/"),
        "headers": headers,
        "timeout": httpx.Timeout(timeout),
        "limits": httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
    }


def as_row(features: Features) -> list[Any]:
    """A JSON-ready list; numpy arrays and scalars become Python numbers. Values are not coerced:
    the gateway's validation (and its precise 422 message) stays authoritative."""
    if hasattr(features, "tolist"):
        features = features.tolist()
    return [value.item() if hasattr(value, "item") else value for value in features]


def predict_call(
    model_name: str,
    features: Features,
    use_cache: bool = True,
    model_version: str | int | None = None,
    request_id: str | None = None,
    timeout_ms: int | None = None,
    routing_key: str | None = None,
) -> Call:
    body: dict[str, Any] = {"model_name": model_name, "features": as_row(features), "use_cache": use_cache}
    if routing_key is not None:
        body["routing_key"] = routing_key
    return Call("POST", PREDICT, _optional(body, model_version, request_id, timeout_ms))


def batch_call(
    model_name: str,
    features_list: Sequence[Features] | Any,
    use_cache: bool = True,
    model_version: str | int | None = None,
    timeout_ms: int | None = None,
) -> Call:
    rows = [as_row(row) for row in features_list]
    body: dict[str, Any] = {"model_name": model_name, "features_batch": rows, "use_cache": use_cache}
    return Call("POST", BATCH_PREDICT, _optional(body, model_version, None, timeout_ms))


def _optional(
    body: dict[str, Any], model_version: str | int | None, request_id: str | None, timeout_ms: int | None
) -> dict[str, Any]:
    if model_version is not None:
        body["model_version"] = str(model_version)
    if request_id is not None:
        body["request_id"] = request_id
    if timeout_ms is not None:
        body["timeout_ms"] = timeout_ms
    return body


def decode(response: httpx.Response) -> Any:
    """The JSON answer of a 2xx response; the typed error for anything else."""
    if response.is_success:
        return response.json()
    raise error_for(response)


def decode_readiness(response: httpx.Response) -> Any:
    """``/ready`` answers 503 with a JSON body saying why; only a non-JSON answer is an error."""
    try:
        return response.json()
    except ValueError:
        raise error_for(response) from None


def error_for(response: httpx.Response) -> RtmlClientError:
    try:
        body = response.json()
    except ValueError:
        body = None
    retry_after = parse_retry_after(response.headers.get("Retry-After"))
    return error_from_response(response.status_code, body, response.text, retry_after)


def transport_error(exc: httpx.TransportError, url: str) -> RtmlClientError:
    """No HTTP answer: a timeout (not retried) or a connection failure (retried)."""
    if isinstance(exc, httpx.TimeoutException) and not isinstance(exc, httpx.ConnectTimeout):
        return Timeout(f"no answer from {url} within the client timeout ({type(exc).__name__})")
    return ConnectionFailed(f"cannot reach {url}: {type(exc).__name__}: {exc}")


def is_retryable_transport(exc: httpx.TransportError) -> bool:
    return isinstance(exc, httpx.ConnectTimeout | httpx.NetworkError | httpx.RemoteProtocolError)


def retry_after_transport(policy: RetryPolicy, attempt: int, exc: httpx.TransportError, url: str) -> float:
    """Seconds to wait before sending again after a transport failure; raises the typed error
    when the policy gives up."""
    error = transport_error(exc, url)
    delay = policy.delay(attempt, None) if is_retryable_transport(exc) else None
    if delay is None:
        error.attempts = attempt + 1
        raise error from exc
    return delay


def retry_after_response(policy: RetryPolicy, attempt: int, response: httpx.Response) -> float:
    """Seconds to wait before sending again after an error answer; raises the typed error when
    the status cannot succeed on retry or the policy gives up."""
    error = error_for(response)
    delay = policy.delay(attempt, response.status_code, error.retry_after)
    if delay is None:
        error.attempts = attempt + 1
        raise error
    return delay


def prediction(body: dict[str, Any], latency_ms: float) -> PredictionResult:
    result = PredictionResult(body)
    result["server_latency_ms"] = body.get("latency_ms")
    result["latency_ms"] = latency_ms
    return result


def batch(body: dict[str, Any], latency_ms: float) -> BatchResult:
    result = BatchResult(body)
    result["server_total_latency_ms"] = body.get("total_latency_ms")
    result["total_latency_ms"] = latency_ms
    return result
