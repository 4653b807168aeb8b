"""The REST API v1 prediction endpoints over parsed bodies: validate, call the service, shape the answer.

Served by :mod:`gateway.fast_path` in front of FastAPI (they are the hot path); everything here
is transport-free, so the same functions answer whichever way the body arrived.
"""

from __future__ import annotations

import json
import math
import time
from typing import Any

import orjson
from starlette.requests import Request

from gateway.lifecycle import GatewayRuntime
from gateway.service import Prediction
from runtime.errors import BadRequest, InvalidInput, PayloadTooLarge


async def read_json(request: Request, limit: int) -> dict[str, Any]:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"request body is {declared} bytes; the limit is {limit}")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise PayloadTooLarge(f"request body exceeds the limit of {limit} bytes")
    return parse_json_object(bytes(body))


def parse_json_object(body: bytes) -> dict[str, Any]:
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        payload = _parse_with_constants(body, exc)
    if not isinstance(payload, dict):
        raise BadRequest(f"request body must be a JSON object, got {type(payload).__name__}")
    return payload


def _parse_with_constants(body: bytes, original: orjson.JSONDecodeError) -> Any:
    """orjson refuses NaN/Infinity literals; accept them here so validation can say 422 precisely."""
    try:
        return json.loads(body, parse_constant=lambda name: math.nan if name == "NaN" else math.inf)
    except ValueError:
        raise BadRequest(f"malformed JSON: {original}") from None
    except RecursionError:  # orjson stops at 1024 levels; the standard parser at the stack's depth
        raise BadRequest("malformed JSON: nested too deeply") from None


def _field(payload: dict[str, Any], name: str, kind: type | tuple[type, ...], required: bool = False) -> Any:
    value = payload.get(name)
    if value is None:
        if required:
            raise InvalidInput(f"field '{name}' is required")
        return None
    if (isinstance(value, bool) and kind is int) or not isinstance(value, kind):
        expected = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise InvalidInput(f"field '{name}' must be {expected}, got {type(value).__name__}")
    return value


def _version(payload: dict[str, Any]) -> str | None:
    version = _field(payload, "model_version", (str, int))
    if version is None:
        return None
    text = str(version)
    if not text.isdigit():
        raise InvalidInput(f"model_version '{text[:40]}' must be a version number such as '1'")
    return text


def _common(payload: dict[str, Any]) -> dict[str, Any]:
    use_cache = _field(payload, "use_cache", bool)
    return {
        "use_cache": True if use_cache is None else use_cache,
        "timeout_ms": _field(payload, "timeout_ms", int),
        "request_id": _request_id(payload),
        "routing_key": _routing_key(payload),
    }


def _routing_key(payload: dict[str, Any]) -> str | None:
    """Sticky A/B routing: the same key always lands on the same arm of a model's split."""
    key = _field(payload, "routing_key", (str, int))
    if key is None:
        return None
    text = str(key)
    if not 1 <= len(text) <= 256:
        raise InvalidInput("field 'routing_key' must be 1 to 256 characters")
    return text


def _request_id(payload: dict[str, Any]) -> str | None:
    request_id: str | None = _field(payload, "request_id", str)
    if request_id is not None and not 1 <= len(request_id) <= 128:
        raise InvalidInput("field 'request_id' must be 1 to 128 characters")
    return request_id


def _scores(result: Prediction, rows: list[list[float]] | None) -> dict[str, Any]:
    """Classifiers answer ``probabilities``; clustering models ``distances`` (to each centre)."""
    if result.task == "clustering":
        return {"probabilities": None, "distances": rows}
    return {"probabilities": rows}


def _single_body(result: Prediction, started: float) -> dict[str, Any]:
    scores = result.probabilities[0] if result.probabilities else None
    classifier = result.task == "classification"
    return {
        "prediction": result.predictions[0],
        "probability": max(scores) if scores and classifier else None,
        **_scores(result, scores),  # type: ignore[arg-type]
        "model_name": result.model,
        "model_version": result.version,
        "route": result.route,
        "request_id": result.request_id,
        "timestamp": time.time(),
        "from_cache": result.from_cache,
        "latency_ms": (time.perf_counter() - started) * 1000,
    }


async def predict(runtime: GatewayRuntime, payload: dict[str, Any], started: float) -> dict[str, Any]:
    """POST /api/v1/predict: one row."""
    model = _field(payload, "model_name", str, required=True)
    with runtime.observe("predict", model) as observation:
        result = await runtime.service.predict(
            model,
            _version(payload),
            [_field(payload, "features", list, required=True)],
            **_common(payload),
        )
        observation.version = result.version
    return _single_body(result, started)


async def batch_predict(runtime: GatewayRuntime, payload: dict[str, Any], started: float) -> dict[str, Any]:
    """POST /api/v1/batch_predict: up to ``gateway.max_batch_rows`` rows."""
    model = _field(payload, "model_name", str, required=True)
    rows = _field(payload, "features_batch", list, required=True)
    max_rows = runtime.settings.gateway.max_batch_rows
    if not 1 <= len(rows) <= max_rows:
        raise InvalidInput(f"features_batch has {len(rows)} rows; expected 1..{max_rows}")
    with runtime.observe("batch_predict", model) as observation:
        result = await runtime.service.predict(
            model, _version(payload), rows, field="features_batch", **_common(payload)
        )
        observation.version = result.version
    return {
        "predictions": result.predictions,
        **_scores(result, result.probabilities),
        "model_name": result.model,
        "model_version": result.version,
        "route": result.route,
        "request_id": result.request_id,
        "count": len(result.predictions),
        "from_cache": result.from_cache,
        "total_latency_ms": (time.perf_counter() - started) * 1000,
    }
