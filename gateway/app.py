"""Thin HTTP transport: parse, validate the envelope, call :class:`PredictionService`, render.

Bodies are read as bytes and parsed with orjson (not pydantic) because this is
the hot path. Every error answer is an error of :mod:`runtime.errors` (routing and
validation failures are turned into one first), rendered by one handler with its
class's status as ``{"error": {"code", "message"}}``, or as the Open Inference
Protocol's ``{"error": "<message>"}`` when a ``/v2`` route raised it.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException

from gateway import metrics
from gateway.lifecycle import GatewayRuntime
from gateway.service import Prediction
from gateway.v2 import error_body, is_v2_route, v2_router
from runtime.errors import (
    BadRequest,
    InvalidInput,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    RtmlError,
    Unavailable,
)
from runtime.settings import Settings


def json_response(payload: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(payload), status_code=status, media_type="application/json")


ROUTING_ERRORS: dict[int, type[RtmlError]] = {cls.status: cls for cls in (NotFound, MethodNotAllowed)}
"""Starlette's routing failures by status; it raises no other here (another would be a BadRequest)."""


def error_response(error: RtmlError, v2: bool = False) -> Response:
    return json_response(error_body(error) if v2 else error.to_dict(), error.status)


async def read_json(request: Request, limit: int) -> dict[str, Any]:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"request body is {declared} bytes; the limit is {limit}")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise PayloadTooLarge(f"request body exceeds the limit of {limit} bytes")
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        payload = _parse_with_constants(bytes(body), exc)
    if not isinstance(payload, dict):
        raise BadRequest(f"request body must be a JSON object, got {type(payload).__name__}")
    return payload


def _parse_with_constants(body: bytes, original: orjson.JSONDecodeError) -> Any:
    """orjson refuses NaN/Infinity literals; accept them here so validation can say 422 precisely."""
    try:
        return json.loads(body, parse_constant=lambda name: math.nan if name == "NaN" else math.inf)
    except ValueError:
        raise BadRequest(f"malformed JSON: {original}") from None


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
    }


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
        "request_id": result.request_id,
        "timestamp": time.time(),
        "from_cache": result.from_cache,
        "latency_ms": (time.perf_counter() - started) * 1000,
    }


def create_app(settings: Settings) -> FastAPI:
    runtime = GatewayRuntime(settings)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await runtime.start()
        try:
            yield
        finally:
            await runtime.stop()

    app = FastAPI(title="rtml gateway", version="0.1.0", lifespan=lifespan)
    app.state.runtime = runtime
    _install_error_handlers(app)
    limit = settings.gateway.max_body_bytes
    app.include_router(v2_router(runtime, limit))

    @app.post("/api/v1/predict")
    async def predict(request: Request) -> Response:
        started = time.perf_counter()
        payload = await read_json(request, limit)
        model = _field(payload, "model_name", str, required=True)
        with runtime.observe("predict", model) as observation:
            result = await runtime.service.predict(
                model,
                _version(payload),
                [_field(payload, "features", list, required=True)],
                **_common(payload),
            )
            observation.version = result.version
        return json_response(_single_body(result, started))

    @app.post("/api/v1/batch_predict")
    async def batch_predict(request: Request) -> Response:
        started = time.perf_counter()
        payload = await read_json(request, limit)
        model = _field(payload, "model_name", str, required=True)
        rows = _field(payload, "features_batch", list, required=True)
        if not 1 <= len(rows) <= settings.gateway.max_batch_rows:
            raise InvalidInput(
                f"features_batch has {len(rows)} rows; expected 1..{settings.gateway.max_batch_rows}"
            )
        with runtime.observe("batch_predict", model) as observation:
            result = await runtime.service.predict(
                model, _version(payload), rows, field="features_batch", **_common(payload)
            )
            observation.version = result.version
        return json_response(
            {
                "predictions": result.predictions,
                **_scores(result, result.probabilities),
                "model_name": result.model,
                "model_version": result.version,
                "request_id": result.request_id,
                "count": len(result.predictions),
                "from_cache": result.from_cache,
                "total_latency_ms": (time.perf_counter() - started) * 1000,
            }
        )

    @app.get("/api/v1/models")
    async def list_models() -> Response:
        return json_response(
            {"models": [runtime.describe(name, brief=True) for name in runtime.models.names()]}
        )

    @app.get("/api/v1/models/{name}")
    async def model_info(name: str) -> Response:
        return json_response(runtime.describe(name))

    @app.get("/api/v1/models/{name}/drift")
    async def model_drift(name: str) -> Response:
        return json_response(await runtime.drift_state(name))

    @app.get("/health")
    async def health() -> Response:
        return json_response({"status": "ok", "timestamp": time.time(), "uptime_s": runtime.uptime_s})

    @app.get("/ready")
    async def ready() -> Response:
        reasons = runtime.not_ready_reasons()
        body = {"ready": not reasons, "reasons": reasons, **runtime.readiness_details()}
        return json_response(body, 200 if not reasons else Unavailable.status)

    @app.get("/metrics")
    async def prometheus() -> Response:
        metrics.IN_FLIGHT.set(runtime.replies.in_flight)
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return app


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RtmlError)
    async def rtml_error(request: Request, exc: RtmlError) -> Response:
        route = request.scope.get("route")
        return error_response(exc, v2=is_v2_route(getattr(route, "path", "")))

    @app.exception_handler(StarletteHTTPException)
    async def routing_error(_request: Request, exc: StarletteHTTPException) -> Response:
        # No route answered, so rtml's own body on every path (a 405 under /v2 included).
        return error_response(ROUTING_ERRORS.get(exc.status_code, BadRequest)(str(exc.detail)))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        return await rtml_error(request, InvalidInput(str(exc.errors()[:1])))
