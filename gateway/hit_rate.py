"""Whether the gateway's own cache lookup is worth making: under load, only while it pays.

Why: a lookup at the gateway answers a hit without Kafka (0.3 ms at c1), but every miss pays for
it, and under load it paid in latency too. In an open-loop run at 80% of c64 with random rows
(issue 9), the time from the handler to the request's publish was p50 6.4 / p90 24 ms: the
lookup waits for a busy event loop twice (the MGET's send and its reply) before the request
even leaves, and the Redis client's Python ran on that same thread. The worker reads the cache
too, batched (one MGET per batch of requests), so a lookup skipped here is not a hit lost: the
worker answers it from the cache, over Kafka.

So the gateway keeps a running hit ratio of single-row lookups (its own, and the workers' as the
replies report them) and, while it is under load, skips its lookup when fewer than
``MIN_HIT_RATIO`` of recent rows were hits. Lightly loaded it always looks up: c1 latency is
what a hit saves there. A rise in hits is seen in the replies, so lookups resume by themselves.
"""

from __future__ import annotations

MIN_HIT_RATIO = 0.1
"""Below this, a gateway lookup under load costs more than it saves: a hit saves a Kafka round
trip (~0.3 ms of CPU across the stack), a lookup costs the gateway ~0.05 ms whether it hits."""

WEIGHT = 0.005
"""Weight of each new row in the running ratio (the last few hundred rows count)."""


class HitRate:
    __slots__ = ("ratio",)

    def __init__(self) -> None:
        self.ratio = 1.0
        """Starts optimistic: a new gateway looks up until it has seen that rows do not repeat."""

    def observe(self, hit: bool) -> None:
        self.ratio += WEIGHT * ((1.0 if hit else 0.0) - self.ratio)

    def worth_looking_up(self, busy: bool) -> bool:
        return not busy or self.ratio >= MIN_HIT_RATIO
