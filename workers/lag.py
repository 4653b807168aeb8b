"""Consumer lag per partition, from librdkafka's own statistics (no broker round trip, nothing per
message).

The request consumers set ``statistics.interval.ms`` (runtime/kafka/profiles.py); librdkafka then
hands a JSON document to ``stats_cb`` from inside the loop's own ``consume`` call, at most once per
interval. Per partition it knows the high watermark (from the last fetch response; with
``read_committed`` the last stable offset) and the application's position, so the lag is their
difference: requests in the topic that this worker has not taken yet (a backlog, or a worker
that stopped taking them: a stalled loop stops refreshing ``..._stats_timestamp_seconds``).
"""

from __future__ import annotations

import logging
import time
from typing import Any

import orjson

from workers import metrics

log = logging.getLogger(__name__)


class ConsumerLag:
    """Exports ``rtml_worker_consumer_lag{model,partition}`` and ``rtml_worker_assigned_partitions``
    for one model's consumer; partitions it no longer holds are removed."""

    def __init__(self, model: str, topic: str, read_committed: bool = False) -> None:
        self.model = model
        self.topic = topic
        self.read_committed = read_committed
        self._exported: set[str] = set()
        self.stats_at: float | None = None
        """Monotonic time of the last statistics: the loop's heartbeat (workers/probes.py)."""

    def on_stats(self, stats_json: str) -> None:
        try:
            stats = orjson.loads(stats_json)
            lags = partition_lags(stats, self.topic, self.read_committed)
        except (orjson.JSONDecodeError, TypeError, ValueError, AttributeError) as exc:
            log.warning("unreadable consumer statistics", extra={"model": self.model, "error": str(exc)})
            return
        for partition, lag in lags.items():
            if lag is not None:
                metrics.CONSUMER_LAG.labels(self.model, partition).set(lag)
        for partition in self._exported - {p for p, lag in lags.items() if lag is not None}:
            metrics.CONSUMER_LAG.remove(self.model, partition)
        self._exported = {p for p, lag in lags.items() if lag is not None}
        metrics.ASSIGNED_PARTITIONS.labels(self.model).set(len(lags))
        metrics.STATS_TIMESTAMP.labels(self.model).set(time.time())
        self.stats_at = time.monotonic()

    def close(self) -> None:
        metrics.forget_consumer(self.model)
        self._exported = set()


def partition_lags(stats: dict[str, Any], topic: str, read_committed: bool = False) -> dict[str, int | None]:
    """Assigned partition -> lag (None while not yet known: no fetch answered, no position).

    Assigned: ``desired`` (the application holds it). End: ``ls_offset`` under read_committed
    (what such a consumer can read), else ``hi_offset``. Position: the offset after the last
    message handed to the application (``app_offset``), else the stored or committed offset, else
    the log start (auto.offset.reset=earliest: a new group starts there).
    """
    partitions = stats.get("topics", {}).get(topic, {}).get("partitions", {})
    lags: dict[str, int | None] = {}
    for key, p in partitions.items():
        if int(p.get("partition", key)) < 0 or not p.get("desired"):
            continue  # -1 is librdkafka's "unassigned" placeholder
        end = int(p.get("ls_offset" if read_committed else "hi_offset", -1))
        position = max(int(p.get(name, -1)) for name in ("app_offset", "stored_offset", "committed_offset"))
        if position < 0:
            position = int(p.get("lo_offset", -1))
        lags[str(key)] = max(0, end - position) if end >= 0 and position >= 0 else None
    return lags
