"""``/health`` and ``/ready`` for a worker process, beside ``/metrics`` on ``worker.metrics_port``.

Kubernetes (deploy/helm) and compose probe these; nothing routes traffic to a worker, so
readiness only tells an operator (and a rollout) that the process is serving:

- ``/health`` (liveness): 503 when a model thread has died or its loop has stopped polling Kafka
  for ``stall_after_s`` (librdkafka hands its statistics over inside the loop's own consume call,
  every 5 s, so their age is the loop's heartbeat: the same signal as the RtmlWorkerLoopStalled
  alert). A restart is then the fix. A draining worker (SIGTERM) stays live until it exits.
- ``/ready``: 503 while starting (models loading, first poll not yet made) and once stopping.

Answers are small JSON objects naming the reasons (served by runtime/probe_server.py); no lock
is taken on the serving path (the loop only writes a float that these handlers read).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

STALL_AFTER_S = 60.0
"""Statistics every 5 s: twelve missed in a row is a wedged loop, not a slow batch."""
STARTUP_GRACE_S = 300.0
"""How long a model may take to load and make its first poll before liveness gives up on it."""


@dataclass
class _Watched:
    thread: threading.Thread
    stats_at: Callable[[], float | None]
    """Monotonic time of the loop's last consumer statistics (None before the first)."""
    since: float


@dataclass
class WorkerProbes:
    """What the probe handlers judge; the worker process registers each model's loop."""

    stopping: threading.Event
    stall_after_s: float = STALL_AFTER_S
    startup_grace_s: float = STARTUP_GRACE_S
    clock: Callable[[], float] = time.monotonic
    _models: dict[str, _Watched] = field(default_factory=dict)
    _started: bool = False

    def watch(self, model: str, thread: threading.Thread, stats_at: Callable[[], float | None]) -> None:
        self._models[model] = _Watched(thread, stats_at, self.clock())

    def started(self) -> None:
        """Every model is registered (before this, the process is still building them)."""
        self._started = True

    def health(self) -> tuple[bool, dict[str, Any]]:
        now = self.clock()
        problems: dict[str, str] = {}
        for model, watched in self._models.items():
            if not watched.thread.is_alive() and not self.stopping.is_set():
                problems[model] = "model thread exited"
                continue
            at = watched.stats_at()
            if at is None:
                if now - watched.since > self.startup_grace_s:
                    problems[model] = f"no poll of Kafka in {now - watched.since:.0f} s since start"
            elif now - at > self.stall_after_s:
                problems[model] = f"loop has not polled Kafka for {now - at:.0f} s"
        return not problems, {"status": "ok" if not problems else "unhealthy", "problems": problems}

    def ready(self) -> tuple[bool, dict[str, Any]]:
        live, answer = self.health()
        waiting = sorted(model for model, w in self._models.items() if w.stats_at() is None)
        reasons = list(answer["problems"].values()) if not live else []
        if self.stopping.is_set():
            reasons.append("stopping")
        if not self._started:
            reasons.append("starting: models loading")
        elif waiting:
            reasons.append(f"starting: no poll yet for {', '.join(waiting)}")
        return not reasons, {"status": "ready" if not reasons else "not_ready", "reasons": reasons}
