"""When to retry, and how long to wait: a pure policy shared by the sync and async clients.

Retried: HTTP 429 and 503 (honouring ``Retry-After``) and failures to get any HTTP answer
(connection refused or reset, a keep-alive connection closed under us). Predictions are pure
functions of their input, so sending one again is safe. Never retried: other 4xx (they cannot
succeed as sent), 504 (the gateway already waited the whole deadline) and client-side read timeouts.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime

RETRY_STATUSES = frozenset({429, 503})


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter: before retry ``n`` (0-based) wait a uniform random
    time in ``[0, min(max_backoff_s, backoff_s * 2**n)]``, unless the server sent ``Retry-After``."""

    retries: int = 3
    """Retries after the first attempt (0 disables retrying)."""
    backoff_s: float = 0.1
    """Upper bound of the first wait."""
    max_backoff_s: float = 5.0
    """Upper bound of any computed wait."""
    max_retry_after_s: float = 30.0
    """A ``Retry-After`` longer than this is not waited for: the error is raised at once."""
    random: Callable[[], float] = field(default=random.random, repr=False, compare=False)
    """Source of jitter in [0, 1) (injectable for tests)."""

    def __post_init__(self) -> None:
        if self.retries < 0 or self.backoff_s < 0 or self.max_backoff_s < 0:
            raise ValueError("retries, backoff_s and max_backoff_s must be >= 0")

    def backoff(self, attempt: int) -> float:
        cap = min(self.max_backoff_s, self.backoff_s * 2.0**attempt)
        return cap * self.random()

    def delay(self, attempt: int, status: int | None, retry_after: float | None = None) -> float | None:
        """Seconds to wait before retrying after failed attempt ``attempt`` (0-based), or None to
        give up. ``status`` None means no HTTP answer was received."""
        if attempt >= self.retries:
            return None
        if status is not None and status not in RETRY_STATUSES:
            return None
        if retry_after is not None:
            return retry_after if retry_after <= self.max_retry_after_s else None
        return self.backoff(attempt)


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """``Retry-After`` as seconds from now: delta-seconds or an HTTP date; None if absent or bad."""
    if value is None:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))
