"""Fleet heartbeats: which process has which versions loaded, and what each version served.

Every worker and gateway process writes one field per model it serves into the Redis hash
``<fleet_prefix><model>`` every :data:`HEARTBEAT_S` (a HSET per model every two seconds: nothing
on the request path). The value says what the process has loaded and how many rows it answered
per version and route over the last minute; ``rtml models status`` and the admin status endpoint
sum those into the traffic share per version. Fields of processes silent for :data:`STALE_MS`
are ignored (and removed by the next reader): a dead worker drops out of the status by itself.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from bisect import bisect_left
from collections import Counter, deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import orjson
import redis

from runtime.clock import now_ms
from runtime.redis_clients import sync_client
from runtime.settings import RedisSettings

log = logging.getLogger(__name__)

HEARTBEAT_S = 2.0
STALE_MS = 15_000
WINDOW_S = 60.0

StatKey = tuple[str, str, str, str]
"""(kind, model, version, detail): kind "rows" (detail: route), "errors", "latency" (detail: the
bucket's upper bound in ms), "labels" (detail: the predicted label)."""

LATENCY_BUCKETS_MS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 60000)
MAX_LABELS = 64
"""Distinct labels counted per model version (a regressor's values are not labels)."""


class ServedRows:
    """What this process answered per model and version: rows by route, failed requests, request
    latency (bucketed) and predicted labels; counted by the serving threads, read by the heartbeat
    (and the canary judge, through it)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[StatKey] = Counter()

    def add(self, model: str, version: str, route: str, rows: int) -> None:
        with self._lock:
            self._counts["rows", model, version, route] += rows

    def add_batch(
        self,
        model: str,
        version: str,
        latencies_ms: list[float],
        labels: Sequence[object] | None,
    ) -> None:
        """Per request answered: its latency (from being sent to being predicted); per row: its label."""
        # Counted first outside the lock (Counter counts in C); merged per distinct value.
        buckets = Counter(
            LATENCY_BUCKETS_MS[min(bisect_left(LATENCY_BUCKETS_MS, latency), len(LATENCY_BUCKETS_MS) - 1)]
            for latency in latencies_ms
        )
        per_label = Counter(labels) if labels else Counter()
        with self._lock:
            counts = self._counts
            for bucket, n in buckets.items():
                counts["latency", model, version, str(bucket)] += n
            for label, n in per_label.items():
                key = ("labels", model, version, str(label))
                if key in counts or self._distinct_labels(model, version) < MAX_LABELS:
                    counts[key] += n

    def error(self, model: str, version: str, requests: int = 1) -> None:
        with self._lock:
            self._counts["errors", model, version, ""] += requests

    def _distinct_labels(self, model: str, version: str) -> int:
        return sum(1 for k in self._counts if k[0] == "labels" and k[1] == model and k[2] == version)

    def snapshot(self) -> Counter[StatKey]:
        with self._lock:
            return Counter(self._counts)


class FleetReporter:
    """A daemon thread that heartbeats this process's state for each of its models."""

    def __init__(
        self,
        settings: RedisSettings,
        kind: str,
        member: str,
        models: Callable[[], Mapping[str, list[str]]],
        served: ServedRows,
    ) -> None:
        self._prefix = settings.fleet_prefix
        self._kind = kind
        self._member = member
        self._models = models
        """model -> versions loaded (a gateway loads none: it routes)."""
        self._served = served
        self._history: deque[tuple[float, Counter[StatKey]]] = deque()
        self._stop = threading.Event()
        self._enabled = settings.enabled
        timeout = max(settings.socket_timeout_ms / 1000, 0.5)
        self._client = sync_client(settings, timeout)
        self._thread = threading.Thread(target=self._run, name="fleet-heartbeat", daemon=True)

    def start(self) -> None:
        if self._enabled:
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=2)
        self._client.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.beat()
            except redis.RedisError as exc:  # status is best effort; serving never waits on it
                log.debug("fleet heartbeat failed: %s", exc)
            self._stop.wait(HEARTBEAT_S)

    def beat(self) -> None:
        now = time.monotonic()
        totals = self._served.snapshot()
        self._history.append((now, totals))
        while len(self._history) > 1 and now - self._history[1][0] >= WINDOW_S:
            self._history.popleft()
        since, earliest = self._history[0]
        recent = totals - earliest
        pipe = self._client.pipeline(transaction=False)
        for model, loaded in self._models().items():
            stats: dict[str, dict[str, dict[str, int]]] = {
                "rows": {},
                "errors": {},
                "latency": {},
                "labels": {},
            }
            for (kind, counted, version, detail), count in recent.items():
                if counted == model and count:
                    stats[kind].setdefault(version, {})[detail] = count
            value = {
                "kind": self._kind,
                "member": self._member,
                "loaded": loaded,
                **stats,
                "window_s": round(max(now - since, HEARTBEAT_S), 1),
                "at_ms": now_ms(),
            }
            pipe.hset(f"{self._prefix}{model}", self._member, orjson.dumps(value))
        pipe.execute()


def member_id(kind: str) -> str:
    return f"{kind}-{socket.gethostname()}-{os.getpid()}"


def parse_fleet(
    raw: Mapping[bytes, bytes], at_ms: int | None = None
) -> tuple[list[dict[str, Any]], list[bytes]]:
    """Live members (sorted by kind and id) and the fields of stale ones (for the reader to drop)."""
    at_ms = now_ms() if at_ms is None else at_ms
    live: list[dict[str, Any]] = []
    stale: list[bytes] = []
    for field, value in raw.items():
        try:
            member = orjson.loads(value)
        except orjson.JSONDecodeError:
            stale.append(field)
            continue
        if not isinstance(member, dict) or at_ms - int(member.get("at_ms", 0)) > STALE_MS:
            stale.append(field)
        else:
            live.append(member)
    return sorted(live, key=lambda m: (str(m.get("kind")), str(m.get("member")))), stale


def traffic_share(members: list[dict[str, Any]]) -> dict[str, Any]:
    """Rows per version and route over the last minute, summed over the fleet, with each version's
    share of the answered rows (shadow rows are mirrored copies: counted, not in the share)."""
    rows: dict[str, dict[str, int]] = {}
    for member in members:
        for version, routes in (member.get("rows") or {}).items():
            for route, count in routes.items():
                by_route = rows.setdefault(version, {})
                by_route[route] = by_route.get(route, 0) + int(count)
    answered = {v: sum(c for r, c in routes.items() if r != "shadow") for v, routes in rows.items()}
    total = sum(answered.values())
    return {
        "window_s": WINDOW_S,
        "rows": rows,
        "share_percent": {v: round(100 * n / total, 1) for v, n in sorted(answered.items())} if total else {},
    }
