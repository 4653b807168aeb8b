"""What ``rtml run`` does when one of its processes dies: start it again, with backoff.

A worker, drift or gateway process that exits (a crash, kill -9, an OOM kill) is restarted after
1 s, then 2, 4 ... up to 30 s if it keeps dying; a process that stayed up for a minute starts
again from 1 s. Every restart is logged with the exit report and counted (the count is in the
log line and in ``rtml run``'s own output). Nothing it did not start is ever touched.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

from rtml.stack import Child, Stack

log = logging.getLogger(__name__)

FIRST_DELAY_S = 1.0
MAX_DELAY_S = 30.0
HEALTHY_AFTER_S = 60.0


def restart_delay(restarts: int, uptime_s: float) -> float:
    """Seconds to wait before restarting a child that exited after ``uptime_s`` (its restarts so far)."""
    if uptime_s >= HEALTHY_AFTER_S:
        return FIRST_DELAY_S
    return float(min(MAX_DELAY_S, FIRST_DELAY_S * 2 ** min(restarts, 10)))


@dataclass
class Supervisor:
    stack: Stack
    restarts: int = 0
    _due: dict[str, float] = field(default_factory=dict)
    """Child name -> monotonic time it is to be restarted."""

    def watch(self, stop: threading.Event, tick_s: float = 0.5) -> None:
        """Until ``stop``: restart every child that exits, with backoff."""
        while not stop.wait(tick_s):
            self.tick()

    def tick(self) -> None:
        now = time.monotonic()
        for child in self.stack.children:
            if child.alive:
                continue
            due = self._due.get(child.name)
            if due is None:
                self._schedule(child, now)
            elif now >= due:
                del self._due[child.name]
                self._restart(child)

    def _schedule(self, child: Child, now: float) -> None:
        uptime = now - child.started_at
        if uptime >= HEALTHY_AFTER_S:
            child.restarts = 0
        delay = restart_delay(child.restarts, uptime)
        self._due[child.name] = now + delay
        report = child.exit_report(15)
        print(f"{child.name} died; restarting it in {delay:g} s: {report}", flush=True)
        log.error(
            "process died; restarting",
            extra={"child": child.name, "exit_code": child.process.returncode, "delay_s": delay},
        )

    def _restart(self, child: Child) -> None:
        self.stack.restart(child)
        self.restarts += 1
        print(f"restarted {child.name} (restart {child.restarts}; {self.restarts} in total)", flush=True)
        log.info(
            "process restarted",
            extra={"child": child.name, "restarts": child.restarts, "restarts_total": self.restarts},
        )
