"""One wall clock for every process, in the unit every message uses (epoch milliseconds).

Deadlines (``deadline_ms``), prediction timestamps and drift event time all compare values made by
different processes, so they all come from here; tests pass their own ``Clock`` instead.
"""

from __future__ import annotations

import time
from collections.abc import Callable

Clock = Callable[[], int]
"""A function returning epoch milliseconds."""


def now_ms() -> int:
    return time.time_ns() // 1_000_000
