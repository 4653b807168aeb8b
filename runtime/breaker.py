"""Outage breaker: after a dependency fails, skip it for a while.

An outage then costs one timeout per ``retry_after_s``, not one per request, and
is logged once per outage rather than per call.
"""

from __future__ import annotations

import logging
import time

log = logging.getLogger(__name__)


class OutageBreaker:
    def __init__(self, name: str, retry_after_s: float) -> None:
        self._name = name
        self._retry_after_s = retry_after_s
        self._open_until = 0.0

    @property
    def open(self) -> bool:
        return time.monotonic() < self._open_until

    def trip(self) -> None:
        if not self.open:
            log.warning(f"{self._name} unavailable; degrading", extra={"retry_after_s": self._retry_after_s})
        self._open_until = time.monotonic() + self._retry_after_s
