"""A one-line progress display for long CSV runs, drawn only on a terminal (no dependency)."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """Redraws ``rows done, % of the file, rows/s, failures`` at most every ``interval_s``."""

    def __init__(
        self,
        enabled: bool | None = None,
        total_chars: int | None = None,
        stream: TextIO | None = None,
        interval_s: float = 0.2,
    ) -> None:
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self.total_chars = total_chars
        self.interval_s = interval_s
        self._started = time.monotonic()
        self._drawn = 0.0

    def update(self, rows: int, failed: int, chars: int, final: bool = False) -> None:
        now = time.monotonic()
        if not self.enabled or (not final and now - self._drawn < self.interval_s):
            return
        self._drawn = now
        rate = rows / max(now - self._started, 1e-9)
        share = f" {min(100.0, 100 * chars / self.total_chars):5.1f}%" if self.total_chars else ""
        self.stream.write(f"\r{share} {rows:,} rows  {rate:,.0f} rows/s  {failed:,} failed ")
        if final:
            self.stream.write("\n")
        self.stream.flush()
