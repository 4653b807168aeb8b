"""API key checks in front of every endpoint (``gateway.auth: required``).

The whole key table (hashes and scopes, :mod:`runtime.api_keys`) is held in memory and reloaded
from Redis every two seconds, so a request costs one SHA-256 and a dict lookup, and a revocation
reaches every gateway within that. If Redis is unreachable the last table keeps serving; a
gateway that never loaded one answers 503 (it cannot tell a valid key from an invalid one).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable

from redis import asyncio as aioredis
from redis.exceptions import RedisError

from runtime.api_keys import RELOAD_S, KeyRecord, Scope, decode_table, hash_key, table_key
from runtime.errors import Forbidden, Unauthorized, Unavailable

log = logging.getLogger(__name__)

PUBLIC_PATHS = frozenset({"/health", "/ready", "/v2/health/live", "/v2/health/ready"})
"""Liveness and readiness: load balancers and Kubernetes probes carry no key."""
PREDICT_PATHS = frozenset({"/api/v1/predict", "/api/v1/batch_predict"})


def required_scope(method: str, path: str) -> Scope | None:
    """The scope an endpoint needs; None for the public probes."""
    if path in PUBLIC_PATHS:
        return None
    if path.startswith("/api/v1/admin/"):
        return "admin"
    if method == "POST" and (
        path in PREDICT_PATHS or (path.startswith("/v2/models/") and path.endswith("/infer"))
    ):
        return "predict"
    return "read"


def presented_key(headers: Iterable[tuple[bytes, bytes]]) -> str | None:
    """``Authorization: Bearer KEY`` or ``X-API-Key: KEY``."""
    for name, value in headers:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
        elif name == b"x-api-key" and value:
            return value.decode("latin-1").strip()
    return None


class Authenticator:
    def __init__(self, enabled: bool, client: aioredis.Redis, keys_prefix: str) -> None:
        self.enabled = enabled
        self._client = client
        self._table_key = table_key(keys_prefix)
        self._table: dict[str, KeyRecord] | None = None
        self._task: asyncio.Task[None] | None = None
        self.failure: str | None = None

    @property
    def loaded(self) -> bool:
        return self._table is not None

    async def start(self) -> None:
        if not self.enabled:
            return
        await self.reload()
        self._task = asyncio.create_task(self._reload_forever(), name="api-key-reload")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def reload(self) -> None:
        try:
            raw = await self._client.hgetall(self._table_key)
        except RedisError as exc:
            self.failure = f"Redis unreachable: {exc}"
            log.warning("API keys not reloaded; keeping the last table", extra={"error": str(exc)[:200]})
            return
        self._table = decode_table(raw)  # type: ignore[arg-type]  # bytes: no decode_responses
        self.failure = None

    async def _reload_forever(self) -> None:
        while True:
            await asyncio.sleep(RELOAD_S)
            await self.reload()

    def check(self, method: str, path: str, headers: Iterable[tuple[bytes, bytes]]) -> KeyRecord | None:
        """The caller's key record; raises Unauthorized (401), Forbidden (403) or Unavailable (503)."""
        if not self.enabled:
            return None
        scope = required_scope(method, path)
        if scope is None:
            return None
        if self._table is None:
            raise Unavailable(f"API keys cannot be verified yet ({self.failure or 'loading'}); try again")
        key = presented_key(headers)
        if key is None:
            raise Unauthorized("an API key is required: send 'Authorization: Bearer KEY' or 'X-API-Key: KEY'")
        record = self._table.get(hash_key(key))
        if record is None:
            raise Unauthorized("unknown or revoked API key")
        if scope not in record.scopes:
            raise Forbidden(
                f"API key '{record.name}' has scopes {', '.join(record.scopes)}; "
                f"this endpoint needs '{scope}'"
            )
        return record
