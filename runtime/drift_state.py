"""The drift state store: the latest window statistics and firing alerts per model, in Redis.

Written by the drift app, read by the gateway (which must not load numpy or the statistics).

The drift app writes one hash per model, ``<prefix><model>`` (default prefix
``rtml:drift:``), with one field per version holding a JSON object, and renews
the key's TTL (``drift.redis_ttl_s``) on every write. ``GET
/api/v1/models/{name}/drift`` returns :func:`read_drift_state`::

    {"model": "fraud_detector",
     "versions": {
       "1": {"model": "fraud_detector", "version": "1",
             "window": {"start_ms": 1796000000000, "end_ms": 1796000300000,
                        "sample_count": 61234, "sufficient": true},
             "evaluated_at_ms": 1796000301234,
             "statistics": [{"subject": "amount", "kind": "feature", "statistic": "psi",
                             "value": 0.31, "count": 61234, "p_value": 1e-30,
                             "p_adjusted": 1e-28, "warning": 0.1, "critical": 0.2}, ...],
             "firing": [{"alert_id": "3f1c2a9d0b7e4c55", "subject": "amount", "kind": "feature",
                         "statistic": "psi", "severity": "critical", "since_ms": 1796000270000,
                         "value": 0.31}]}}}

``warning`` / ``critical`` are null for statistics that are not alerted on.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Mapping
from typing import Any

import orjson

log = logging.getLogger(__name__)

DriftState = dict[str, Any]


class StatePublisher:
    """Writes version states with an asyncio Redis client; failures are logged, never raised."""

    def __init__(self, client: Any, prefix: str, ttl_s: int) -> None:
        self.client = client
        self.prefix = prefix
        self.ttl_s = ttl_s

    async def publish(self, state: DriftState) -> bool:
        key = f"{self.prefix}{state['model']}"
        try:
            async with self.client.pipeline(transaction=True) as pipe:
                pipe.hset(key, state["version"], orjson.dumps(state))
                pipe.expire(key, self.ttl_s)
                await pipe.execute()
        except Exception as exc:  # Redis down or slow: the next window retries
            log.warning("could not publish drift state: %s", exc, extra={"model": state["model"]})
            return False
        return True


def _parse(raw: Mapping[Any, Any], model: str) -> DriftState | None:
    if not raw:
        return None
    versions = {}
    for field, value in raw.items():
        name = field.decode() if isinstance(field, bytes) else str(field)
        versions[name] = orjson.loads(value)
    return {
        "model": model,
        "versions": dict(sorted(versions.items(), key=lambda item: _version_order(item[0]))),
    }


def _version_order(version: str) -> tuple[int, str]:
    return (int(version), "") if version.isdigit() else (0, version)


async def aread_drift_state(client: Any, prefix: str, model: str) -> DriftState | None:
    """:func:`read_drift_state` for an asyncio Redis client."""
    return _parse(await client.hgetall(f"{prefix}{model}"), model)


def read_drift_state(
    client: Any, prefix: str, model: str
) -> DriftState | Awaitable[DriftState | None] | None:
    """The published drift state of ``model`` (every version), or None when there is none.

    With a synchronous ``redis.Redis`` it returns the dict; with ``redis.asyncio.Redis``
    it returns an awaitable of it (or call :func:`aread_drift_state`).
    """
    raw = client.hgetall(f"{prefix}{model}")
    if inspect.isawaitable(raw):
        return _await_parse(raw, model)
    return _parse(raw, model)


async def _await_parse(raw: Awaitable[Mapping[Any, Any]], model: str) -> DriftState | None:
    return _parse(await raw, model)
