"""Thin HTTP transport: parse, validate the envelope, call :class:`PredictionService`, render.

The two prediction endpoints are served in front of FastAPI by :mod:`gateway.fast_path`
(handlers in :mod:`gateway.v1`); this module assembles everything else. Bodies are read as
bytes and parsed with orjson (not pydantic). Every error answer is an error of
:mod:`runtime.errors` (routing and validation failures are turned into one first), rendered by
one handler with its class's status as ``{"error": {"code", "message"}}``, or as the Open Inference
Protocol's ``{"error": "<message>"}`` when a ``/v2`` route raised it.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from redis.exceptions import RedisError
from starlette.exceptions import HTTPException as StarletteHTTPException

from gateway import metrics
from gateway.admin import add_admin_routes
from gateway.fast_path import FastPath, TracedFastPath
from gateway.lifecycle import GatewayRuntime
from gateway.openapi import CACHE_ERRORS, DRIFT_ERRORS, LIST_ERRORS, READ_ERRORS, READY_RESPONSES, document
from gateway.v2 import error_body, is_v2_route, v2_router
from runtime.errors import (
    BadRequest,
    InvalidInput,
    MethodNotAllowed,
    NotFound,
    RtmlError,
    Unavailable,
)
from runtime.settings import Settings
from runtime.tracing import start_tracing


def json_response(payload: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(payload), status_code=status, media_type="application/json")


ROUTING_ERRORS: dict[int, type[RtmlError]] = {cls.status: cls for cls in (NotFound, MethodNotAllowed)}
"""Starlette's routing failures by status; it raises no other here (another would be a BadRequest)."""


def error_response(error: RtmlError, v2: bool = False) -> Response:
    response = json_response(error_body(error) if v2 else error.to_dict(), error.status)
    response.headers.update(error.http_headers())
    return response


def create_app(settings: Settings) -> FastPath:
    runtime = GatewayRuntime(settings)
    tracing = start_tracing(settings.tracing, "gateway")  # None when off: decided once, here
    if tracing is not None:
        runtime.service.trace_with(tracing)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await runtime.start()
        try:
            yield
        finally:
            await runtime.stop()
            if tracing is not None:
                tracing.shutdown()  # export the spans still queued

    app = FastAPI(title="rtml gateway", version="0.1.0", lifespan=lifespan)
    app.state.runtime = runtime
    _install_error_handlers(app)
    limit = settings.gateway.max_body_bytes
    app.include_router(v2_router(runtime, limit))

    @app.get("/api/v1/models", responses=LIST_ERRORS)
    async def list_models() -> Response:
        return json_response(
            {"models": [runtime.describe(name, brief=True) for name in runtime.models.names()]}
        )

    @app.get("/api/v1/models/{name}", responses=READ_ERRORS)
    async def model_info(name: str) -> Response:
        return json_response(runtime.describe(name))

    @app.delete("/api/v1/admin/models/{name}/cache", responses=CACHE_ERRORS, tags=["admin"])
    async def invalidate_cache(name: str, version: str | None = None) -> Response:
        """Drop the model's (or one version's) cached predictions at once. Admin scope once keys
        exist (issue 11)."""
        runtime.models.resolve(name, version)  # 404 naming what exists
        try:
            deleted = await runtime.cache.invalidate(name, version)
        except RedisError as exc:
            raise Unavailable(f"the prediction cache (Redis) is unreachable: {exc}") from exc
        return json_response({"model": name, "version": version, "deleted": deleted})

    add_admin_routes(app, runtime, limit)
    document(app)

    @app.get("/api/v1/models/{name}/drift", responses=DRIFT_ERRORS)
    async def model_drift(name: str) -> Response:
        return json_response(await runtime.drift_state(name))

    @app.get("/health")
    async def health() -> Response:
        return json_response({"status": "ok", "timestamp": time.time(), "uptime_s": runtime.uptime_s})

    @app.get("/ready", responses=READY_RESPONSES)
    async def ready() -> Response:
        reasons = runtime.not_ready_reasons()
        body = {"ready": not reasons, "reasons": reasons, **runtime.readiness_details()}
        return json_response(body, 200 if not reasons else Unavailable.status)

    @app.get("/metrics", responses=LIST_ERRORS, response_class=PlainTextResponse)  # Prometheus text format
    async def prometheus() -> Response:
        metrics.IN_FLIGHT.set(runtime.replies.in_flight)
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    # POST /api/v1/predict and /api/v1/batch_predict are answered before FastAPI sees them.
    if tracing is not None:
        return TracedFastPath(app, runtime, limit, tracing)
    return FastPath(app, runtime, limit)


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
