"""Which reply topics have outlived their gateway: the decision, as pure functions over what one
observer has seen. No Kafka here; gateway/reply_janitor.py reads the heartbeats and deletes.

Every gateway stamps a heartbeat on its own reply topic every :attr:`OrphanPolicy.heartbeat_s`:
an offset committed for the consumer group named like the topic, whose commit metadata is
``{"at_ms": <wall clock>, "instance": <instance id>}``. The gateway never joins that group; the
broker keeps the commit in ``__consumer_offsets`` and drops it with the topic. A janitor lists the
topics under the reply prefix, reads each one's heartbeat and remembers since when, on its own
monotonic clock, it has seen that very heartbeat unchanged. A topic is an orphan when either

1. its heartbeat (or the lack of one) has not changed for ``orphan_after_s`` of this observer's
   continuous watching; or
2. its heartbeat is older than ``orphan_after_s`` by the wall clock *and* has not changed for
   :attr:`OrphanPolicy.confirm_s` (three heartbeat periods) of watching. A live gateway beats in
   that time, so neither clock skew nor a broker outage that stopped every heartbeat at once can
   condemn one; the wall clock only spares a fresh observer (or the CLI) the full wait for a
   topic that is plainly old.

Never the observer's own topic, never a name outside the prefix. What has been watched is
forgotten when a pass fails or passes come too far apart (a frozen observer was not watching), so
the watch starts again.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

HEARTBEAT_MAX_S = 10.0
"""A gateway heartbeats every sixth of the orphan bound, but at least this often."""
HEARTBEATS_PER_BOUND = 6
CONFIRM_BEATS = 3
"""Heartbeat periods a wall-clock-old heartbeat must stay unchanged before it is believed."""


@dataclass(frozen=True)
class OrphanPolicy:
    orphan_after_s: float
    """Silence after which a reply topic's gateway is taken for gone (gateway.reply_topic_orphan_after_s)."""

    @property
    def heartbeat_s(self) -> float:
        return min(HEARTBEAT_MAX_S, self.orphan_after_s / HEARTBEATS_PER_BOUND)

    @property
    def confirm_s(self) -> float:
        return CONFIRM_BEATS * self.heartbeat_s


@dataclass(frozen=True)
class Sighting:
    """One topic's heartbeat as an observer last read it, and since when it has read that same one."""

    heartbeat: str | None
    """The commit metadata as read (None: the topic has no heartbeat record)."""
    since: float
    """Observer's monotonic time at which it first read this heartbeat (or its absence)."""


@dataclass(frozen=True)
class Verdict:
    topic: str
    orphan: bool
    reason: str


def encode_heartbeat(instance_id: str, at_ms: int) -> str:
    return orjson.dumps({"at_ms": at_ms, "instance": instance_id}).decode()


def heartbeat_at_ms(heartbeat: str | None) -> int | None:
    """The wall-clock time a heartbeat was written, or None for no (or an unreadable) record."""
    if not heartbeat:
        return None
    try:
        value: Any = orjson.loads(heartbeat)
        at_ms = value["at_ms"]
    except (orjson.JSONDecodeError, TypeError, KeyError):
        return None
    return at_ms if isinstance(at_ms, int) and not isinstance(at_ms, bool) else None


def candidates(topics: Iterable[str], prefix: str, own: Iterable[str] = ()) -> list[str]:
    """Reply topics another gateway may own: under ``prefix`` (the cluster's namespace), not ours."""
    mine = set(own)
    return sorted(t for t in topics if t.startswith(prefix) and len(t) > len(prefix) and t not in mine)


def judge(sighting: Sighting, policy: OrphanPolicy, now: float, now_ms: int, topic: str = "") -> Verdict:
    """Whether ``sighting`` shows an orphan at observer time ``now`` (wall clock ``now_ms``), and why."""
    watched = now - sighting.since
    at_ms = heartbeat_at_ms(sighting.heartbeat)
    if watched >= policy.orphan_after_s:
        what = "no heartbeat record" if at_ms is None else "the same heartbeat"
        return Verdict(topic, True, f"{what} for {watched:.0f} s of watching")
    if at_ms is None:
        needed = policy.orphan_after_s - watched
        return Verdict(topic, False, f"no heartbeat record; judged after {needed:.0f} s more watching")
    age_s = (now_ms - at_ms) / 1000
    if age_s >= policy.orphan_after_s and watched >= policy.confirm_s:
        return Verdict(topic, True, f"last heartbeat {age_s:.0f} s ago, unchanged over {watched:.0f} s")
    return Verdict(topic, False, f"heartbeat {age_s:.1f} s ago")


class Watch:
    """What one observer has seen of every reply topic, pass after pass."""

    def __init__(self, policy: OrphanPolicy, max_gap_s: float) -> None:
        self.policy = policy
        self._max_gap_s = max_gap_s
        """Passes further apart than this break the watch (the observer was not looking)."""
        self._seen: dict[str, Sighting] = {}
        self._last: float | None = None

    def forget(self) -> None:
        """A pass failed: nothing seen so far proves a silence any more."""
        self._seen.clear()
        self._last = None

    def update(self, heartbeats: Mapping[str, str | None], now: float) -> None:
        """Record one pass: ``heartbeats`` maps every topic read to its heartbeat. A topic not in it
        (gone, or its heartbeat unreadable this time) is forgotten."""
        if self._last is not None and now - self._last > self._max_gap_s:
            self._seen.clear()
        self._last = now
        seen: dict[str, Sighting] = {}
        for topic, heartbeat in heartbeats.items():
            old = self._seen.get(topic)
            seen[topic] = old if old is not None and old.heartbeat == heartbeat else Sighting(heartbeat, now)
        self._seen = seen

    def verdicts(self, now: float, now_ms: int) -> list[Verdict]:
        return [judge(s, self.policy, now, now_ms, topic) for topic, s in sorted(self._seen.items())]

    def orphans(self, now: float, now_ms: int) -> list[str]:
        return [verdict.topic for verdict in self.verdicts(now, now_ms) if verdict.orphan]

    def unchanged(self, topic: str, heartbeat: str | None) -> bool:
        """``heartbeat``, read again just before deleting, is still the one the verdict rests on."""
        sighting = self._seen.get(topic)
        return sighting is not None and sighting.heartbeat == heartbeat
