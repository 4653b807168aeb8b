"""Model lifecycle over HTTP: ``/api/v1/admin/models/{name}/...`` (the admin scope, once keys exist).

Each change goes through :class:`runtime.model_admin.ModelAdmin` (the same checks as ``rtml
models ...``), is published on the control topic, and is answered once this gateway's own view
of the control topic shows it (read-your-writes: the next request here is routed by it); every
other gateway and worker follows within seconds.

    POST   .../promote   {"version": "2"}
    POST   .../rollback
    POST   .../retire    {"version": "1"}
    PUT    .../traffic   {"split": {"1": 90, "2": 10}, "shadow": {"3": 100}}   (either or both)
    DELETE .../traffic
    GET    .../status
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response
from pydantic import ValidationError
from redis.exceptions import RedisError

from gateway.lifecycle import GatewayRuntime
from gateway.openapi import ADMIN_ERRORS, READ_ERRORS, CanaryBody, TrafficBody, VersionBody, request_body
from gateway.v1 import read_json
from runtime.errors import InvalidInput, Unavailable
from runtime.fleet import parse_fleet
from runtime.model_status import build_status
from schemas.control import CanaryLimits, ModelPolicy

CONVERGE_S = 5.0


def _json(payload: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(payload), status_code=status, media_type="application/json")


def _version(body: dict[str, Any]) -> str:
    version = body.get("version")
    if isinstance(version, int) and not isinstance(version, bool):
        version = str(version)
    if not isinstance(version, str) or not version.isdigit():
        raise InvalidInput("field 'version' is required: a version number such as \"2\"")
    return version


def _weights(body: dict[str, Any], field: str) -> dict[str, int] | None:
    value = body.get(field)
    if value is None:
        return None
    if not isinstance(value, dict) or not all(
        isinstance(share, int) and not isinstance(share, bool) for share in value.values()
    ):
        raise InvalidInput(
            f'field \'{field}\' must map versions to integer percents, e.g. {{"1": 90, "2": 10}}'
        )
    return {str(version): share for version, share in value.items()}


def add_admin_routes(app: FastAPI, runtime: GatewayRuntime, limit: int) -> None:
    prefix = "/api/v1/admin/models/{name}"

    async def change(name: str, operation: Callable[[], ModelPolicy]) -> Response:
        runtime.models.entry(name)  # 404 naming the models for an unknown name
        policy = await asyncio.to_thread(operation)
        if not await asyncio.to_thread(runtime.control.wait_for, name, policy.revision, CONVERGE_S):
            raise Unavailable(
                f"the change was published but this gateway did not see it within {CONVERGE_S:.0f} s"
            )
        return _json({"model": name, "change": policy.change, **runtime.describe(name)})

    changes = ADMIN_ERRORS

    @app.post(f"{prefix}/promote", responses=changes, openapi_extra=request_body(VersionBody), tags=["admin"])
    async def promote(name: str, request: Request) -> Response:
        version = _version(await read_json(request, limit))
        return await change(name, lambda: runtime.admin.promote(name, version))

    @app.post(f"{prefix}/rollback", responses=changes, tags=["admin"])
    async def rollback(name: str) -> Response:
        return await change(name, lambda: runtime.admin.rollback(name))

    @app.post(f"{prefix}/retire", responses=changes, openapi_extra=request_body(VersionBody), tags=["admin"])
    async def retire(name: str, request: Request) -> Response:
        version = _version(await read_json(request, limit))
        return await change(name, lambda: runtime.admin.retire(name, version))

    @app.put(f"{prefix}/traffic", responses=changes, openapi_extra=request_body(TrafficBody), tags=["admin"])
    async def traffic(name: str, request: Request) -> Response:
        body = await read_json(request, limit)
        split, shadow = _weights(body, "split"), _weights(body, "shadow")
        if split is None and shadow is None:
            raise InvalidInput("give 'split' and/or 'shadow' (DELETE .../traffic clears both)")
        return await change(name, lambda: runtime.admin.traffic(name, split=split, shadow=shadow))

    @app.delete(f"{prefix}/traffic", responses=changes, tags=["admin"])
    async def clear_traffic(name: str) -> Response:
        return await change(name, lambda: runtime.admin.clear_traffic(name))

    @app.post(f"{prefix}/canary", responses=changes, openapi_extra=request_body(CanaryBody), tags=["admin"])
    async def canary(name: str, request: Request) -> Response:
        body = await read_json(request, limit)
        version = _version(body)
        steps = body.get("steps", [5, 25, 50, 100])
        step_s = body.get("step_s", 60)
        if not isinstance(steps, list) or not all(
            isinstance(s, int) and not isinstance(s, bool) for s in steps
        ):
            raise InvalidInput("field 'steps' must be a list of integer percents, e.g. [5, 25, 50, 100]")
        if not isinstance(step_s, int | float) or isinstance(step_s, bool):
            raise InvalidInput("field 'step_s' must be a number of seconds")
        try:
            limits = CanaryLimits.model_validate(body.get("limits") or {})
        except ValidationError as exc:
            raise InvalidInput(f"field 'limits': {exc.errors()[0]['msg']}") from None
        return await change(name, lambda: runtime.admin.canary(name, version, steps, float(step_s), limits))

    @app.get(f"{prefix}/status", responses=READ_ERRORS, tags=["admin"])
    async def status(name: str) -> Response:
        entry = runtime.models.entry(name)
        members: list[dict[str, Any]] = []
        try:  # the fleet part is best effort: the policy answers even with Redis down
            raw = await runtime.cache.client.hgetall(f"{runtime.settings.redis.fleet_prefix}{name}")
            members, _stale = parse_fleet(raw)  # type: ignore[arg-type]  # bytes: no decode_responses
        except RedisError:
            pass
        return _json(build_status(name, entry.versions, entry.policy, members))
