"""``/health`` and ``/ready`` of the drift app, beside ``/metrics`` on ``drift.metrics_port``
(served by runtime/probe_server.py; Kubernetes and compose probe them).

The signal is the prediction-log reader: it polls the log in a loop (an empty poll returns
within a second), so the time since its last poll is the app's heartbeat whether or not any
prediction arrives. ``/ready``: the reader has polled once (Faust started, the reader built and
assigned). ``/health``: 503 once the reader has not polled for ``stall_after_s`` (the event loop
or the reader thread is wedged, or the reader crashed, which stops the app), or never polled
within ``startup_grace_s``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

STALL_AFTER_S = 60.0
STARTUP_GRACE_S = 300.0


@dataclass
class DriftProbes:
    stall_after_s: float = STALL_AFTER_S
    startup_grace_s: float = STARTUP_GRACE_S
    clock: Callable[[], float] = time.monotonic
    polled_at: float | None = None
    """Monotonic time of the log reader's last poll (written by the app's ingest loop)."""
    started_at: float = field(default=0.0)

    def __post_init__(self) -> None:
        self.started_at = self.clock()

    def polled(self) -> None:
        self.polled_at = self.clock()

    def health(self) -> tuple[bool, dict[str, Any]]:
        now = self.clock()
        problem = None
        if self.polled_at is None:
            if now - self.started_at > self.startup_grace_s:
                problem = (
                    f"the prediction-log reader has not polled in {now - self.started_at:.0f} s since start"
                )
        elif now - self.polled_at > self.stall_after_s:
            problem = f"the prediction-log reader has not polled for {now - self.polled_at:.0f} s"
        problems = {} if problem is None else {"ingest": problem}
        return problem is None, {"status": "ok" if problem is None else "unhealthy", "problems": problems}

    def ready(self) -> tuple[bool, dict[str, Any]]:
        live, answer = self.health()
        reasons = list(answer["problems"].values())
        if self.polled_at is None and live:
            reasons.append("starting: the prediction-log reader has not polled yet")
        return not reasons, {"status": "ready" if not reasons else "not_ready", "reasons": reasons}
