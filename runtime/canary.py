"""Canary ramps: judge the candidate against the default version, step it up, promote or roll back.

The evidence is what the fleet answered over the last minute (:mod:`runtime.fleet` heartbeats:
every worker and gateway counts rows, failed requests, request latency and predicted labels per
version): the same predictions the log carries, already aggregated where they were made, so the
judge reads one Redis hash instead of re-reading the prediction log. :func:`judge` is pure.

:class:`CanaryController` runs in every gateway and worker process; for each model with a running
canary one of them holds a short Redis lease and acts, so a canary keeps moving when any process
dies. An action is a control-plane change (:class:`runtime.model_admin.ModelAdmin`), so its
reason is in ``rtml models status`` and on the events topic.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import redis

from runtime.clock import now_ms
from runtime.control import ControlView
from runtime.errors import RtmlError
from runtime.fleet import LATENCY_BUCKETS_MS, parse_fleet
from runtime.model_admin import ModelAdmin
from runtime.redis_clients import sync_client
from runtime.settings import RedisSettings
from schemas.control import CanaryState

log = logging.getLogger(__name__)

TICK_S = 1.0
LEASE_MS = 5_000
P99_SLACK_MS = 5.0
"""Below a few milliseconds, latency ratios measure noise: the ratio limit allows this much more."""
P99_MIN_ROWS = 100
"""A p99 over fewer samples is the slowest one: a GC pause or a busy core would roll back a healthy
candidate (seen on a loaded CI machine with 30 rows). Latency is judged from this many rows on."""


@dataclass
class VersionStats:
    rows: int = 0
    errors: int = 0
    latency: dict[int, int] = field(default_factory=dict)
    labels: dict[str, int] = field(default_factory=dict)

    @property
    def attempts(self) -> int:
        return self.rows + self.errors

    def p99_ms(self) -> float | None:
        total = sum(self.latency.values())
        if not total:
            return None
        seen = 0
        for bound in sorted(self.latency):
            seen += self.latency[bound]
            if seen >= 0.99 * total:
                return float(bound)
        return float(LATENCY_BUCKETS_MS[-1])


def fleet_stats(members: list[dict[str, Any]]) -> dict[str, VersionStats]:
    """Per version, summed over every live process (shadow rows are not the version's answers)."""
    stats: dict[str, VersionStats] = {}
    for member in members:
        for version, routes in (member.get("rows") or {}).items():
            entry = stats.setdefault(version, VersionStats())
            entry.rows += sum(int(n) for route, n in routes.items() if route != "shadow")
        for version, detail in (member.get("errors") or {}).items():
            stats.setdefault(version, VersionStats()).errors += sum(int(n) for n in detail.values())
        for version, buckets in (member.get("latency") or {}).items():
            latency = stats.setdefault(version, VersionStats()).latency
            for bound, n in buckets.items():
                latency[int(bound)] = latency.get(int(bound), 0) + int(n)
        for version, labels in (member.get("labels") or {}).items():
            counts = stats.setdefault(version, VersionStats()).labels
            for label, n in labels.items():
                counts[label] = counts.get(label, 0) + int(n)
    return stats


def distribution_shift(a: Mapping[str, int], b: Mapping[str, int]) -> float:
    """Total variation distance between two label distributions (0: same, 1: disjoint)."""
    total_a, total_b = sum(a.values()), sum(b.values())
    if not total_a or not total_b:
        return 0.0
    return 0.5 * sum(abs(a.get(k, 0) / total_a - b.get(k, 0) / total_b) for k in set(a) | set(b))


@dataclass(frozen=True)
class Verdict:
    action: Literal["hold", "advance", "rollback"]
    reason: str


def judge(canary: CanaryState, stats: Mapping[str, VersionStats], at_ms: int) -> Verdict:
    candidate = stats.get(canary.version, VersionStats())
    baseline = stats.get(canary.baseline, VersionStats())
    limits = canary.limits
    if candidate.attempts >= limits.min_requests:
        rate = candidate.errors / candidate.attempts
        if rate > limits.max_error_rate:
            return Verdict(
                "rollback",
                f"error rate {rate:.1%} over {candidate.attempts} requests "
                f"exceeds {limits.max_error_rate:.1%}",
            )
    p99, base_p99 = candidate.p99_ms(), baseline.p99_ms()
    if candidate.rows >= max(limits.min_requests, P99_MIN_ROWS) and p99 is not None:
        if limits.max_p99_ms is not None and p99 > limits.max_p99_ms:
            return Verdict("rollback", f"p99 latency {p99:.0f} ms exceeds {limits.max_p99_ms:.0f} ms")
        judged = base_p99 is not None and baseline.rows >= P99_MIN_ROWS
        if judged and base_p99 is not None and p99 > base_p99 * limits.max_p99_ratio + P99_SLACK_MS:
            return Verdict(
                "rollback",
                f"p99 latency {p99:.0f} ms exceeds {limits.max_p99_ratio:g}x the default's {base_p99:.0f} ms",
            )
    shift = distribution_shift(candidate.labels, baseline.labels)
    enough_labels = min(sum(candidate.labels.values()), sum(baseline.labels.values())) >= limits.min_requests
    if enough_labels and shift > limits.max_shift:
        return Verdict(
            "rollback",
            f"prediction distribution differs from v{canary.baseline}'s by {shift:.2f} "
            f"(total variation; limit {limits.max_shift:.2f})",
        )
    if at_ms - canary.step_started_at_ms < canary.step_s * 1000:
        return Verdict("hold", "step in progress")
    if candidate.rows < limits.min_requests:
        return Verdict("hold", f"waiting for {limits.min_requests} requests (has {candidate.rows})")
    evidence = (
        f"{candidate.attempts} requests, error rate {candidate.errors / max(candidate.attempts, 1):.1%}, "
        f"p99 {_ms(p99)} (default {_ms(base_p99)}), shift {shift:.2f}"
    )
    return Verdict("advance", evidence)


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0f} ms"


class CanaryController:
    """Drives every running canary from this process while it holds the model's lease."""

    def __init__(self, settings: RedisSettings, member: str, control: ControlView, admin: ModelAdmin) -> None:
        self._prefix = settings.fleet_prefix
        self._member = member
        self._control = control
        self._admin = admin
        self._enabled = settings.enabled
        timeout = max(settings.socket_timeout_ms / 1000, 0.5)
        self._client = sync_client(settings, timeout)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="canary-controller", daemon=True)

    def start(self) -> None:
        if self._enabled:  # the evidence lives in Redis
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=3)
        self._client.close()

    def _run(self) -> None:
        while not self._stop.wait(TICK_S):
            for model, policy in self._control.policies().items():
                canary = policy.running_canary
                if canary is None:
                    continue
                try:
                    if self._lease(model):
                        self.tick(model, canary)
                except (redis.RedisError, RtmlError) as exc:
                    log.warning("canary tick failed: %s", exc, extra={"model": model})

    def tick(self, model: str, canary: CanaryState) -> Verdict:
        raw = self._client.hgetall(f"{self._prefix}{model}")
        members, _stale = parse_fleet(raw)  # type: ignore[arg-type]  # bytes: no decode_responses
        verdict = judge(canary, fleet_stats(members), now_ms())
        if verdict.action == "hold":
            return verdict
        if verdict.action == "rollback":
            policy = self._admin.end_canary(model, verdict.reason)
        else:
            policy = self._admin.advance_canary(model, verdict.reason)
        log.info("canary %s", verdict.action, extra={"model": model, "reason": verdict.reason})
        # Act again only on the state this change produced, never on a stale one.
        self._control.wait_for(model, policy.revision, 5.0)
        return verdict

    def _lease(self, model: str) -> bool:
        key = f"{self._prefix}canary-lease:{model}"
        if self._client.set(key, self._member, nx=True, px=LEASE_MS):
            return True
        if self._client.get(key) == self._member.encode():
            self._client.pexpire(key, LEASE_MS)
            return True
        return False
