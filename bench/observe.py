"""What the bench reads from the processes under test: Prometheus metrics and /proc memory."""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

Samples = list[tuple[str, dict[str, str], float]]


def scrape(url: str, timeout_s: float = 10.0, attempts: int = 3) -> Samples | None:
    """Every sample of a /metrics page as (name, labels, value); None if it never answered."""
    for attempt in range(attempts):
        try:
            with urllib.request.urlopen(url, timeout=timeout_s) as response:
                text = response.read().decode()
        except OSError:
            time.sleep(0.2 * (attempt + 1))
            continue
        return [
            (sample.name, dict(sample.labels), float(sample.value))
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        ]
    return None


def total(samples: Samples, name: str, **labels: str) -> float:
    """Sum of ``name`` over samples whose labels include ``labels``."""
    return sum(
        value
        for sample_name, sample_labels, value in samples
        if sample_name == name and all(sample_labels.get(k) == v for k, v in labels.items())
    )


@dataclass(frozen=True)
class Snapshot:
    """Metrics of the gateway and every worker at one moment; ``complete`` if all answered."""

    gateway: Samples
    workers: list[Samples]
    complete: bool = True

    @classmethod
    def take(cls, gateway_url: str | None, worker_urls: Iterable[str]) -> Snapshot:
        gateway = scrape(gateway_url) if gateway_url else []
        workers = [scrape(url) for url in worker_urls]
        complete = gateway is not None and all(w is not None for w in workers)
        return cls(gateway or [], [w or [] for w in workers], complete)

    def workers_total(self, name: str, **labels: str) -> float:
        return sum(total(samples, name, **labels) for samples in self.workers)


def _both(before: Snapshot, after: Snapshot) -> bool:
    return before.complete and after.complete


def mean_batch_rows(before: Snapshot, after: Snapshot, model: str) -> float | None:
    """Mean rows per ONNX Runtime call between two snapshots (rtml_worker_batch_rows _sum/_count)."""
    if not _both(before, after):
        return None
    rows = after.workers_total("rtml_worker_batch_rows_sum", model=model) - before.workers_total(
        "rtml_worker_batch_rows_sum", model=model
    )
    calls = after.workers_total("rtml_worker_batch_rows_count", model=model) - before.workers_total(
        "rtml_worker_batch_rows_count", model=model
    )
    return rows / calls if calls > 0 else None


def gateway_cache_hit_ratio(before: Snapshot, after: Snapshot, model: str) -> float | None:
    """Share of gateway cache lookups that hit (rtml_gateway_cache_total) between two snapshots."""
    if not _both(before, after):
        return None

    def count(snapshot: Snapshot, result: str) -> float:
        return total(snapshot.gateway, "rtml_gateway_cache_total", model=model, result=result)

    hits = count(after, "hit") - count(before, "hit")
    misses = count(after, "miss") - count(before, "miss")
    return hits / (hits + misses) if hits + misses > 0 else None


GATEWAY_ERROR_COUNTERS = {
    "cache_errors": "rtml_gateway_cache_errors_total",
    "timeouts_504": "rtml_gateway_timeouts_total",
    "unavailable_503": "rtml_gateway_unavailable_total",
    "late_replies": "rtml_gateway_late_replies_total",
}


def gateway_trouble(before: Snapshot, after: Snapshot) -> dict[str, int]:
    """Increase of the gateway's error counters between two snapshots (only the non-zero ones)."""
    if not _both(before, after):
        return {"metrics_unavailable": 1}
    deltas = {
        label: int(total(after.gateway, name) - total(before.gateway, name))
        for label, name in GATEWAY_ERROR_COUNTERS.items()
    }
    return {label: value for label, value in deltas.items() if value}


def worker_rows(snapshot: Snapshot, model: str, source: str) -> float:
    return snapshot.workers_total("rtml_worker_rows_total", model=model, source=source)


def worker_dead_letters(snapshot: Snapshot, model: str) -> float:
    return snapshot.workers_total("rtml_worker_dead_letters_total", model=model)


def memory_mb(pid: int) -> dict[str, float | None]:
    """VmRSS (now) and VmHWM (peak) of ``pid`` in MB, from /proc/PID/status; None once it is gone."""
    values: dict[str, float | None] = {"rss_mb": None, "peak_rss_mb": None}
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                key, _, rest = line.partition(":")
                if key in ("VmRSS", "VmHWM"):
                    kilobytes = float(rest.split()[0])
                    values["rss_mb" if key == "VmRSS" else "peak_rss_mb"] = kilobytes / 1024
    except OSError:
        pass
    return values


def gateway_latency(before: Snapshot, after: Snapshot, model: str) -> dict[str, float] | None:
    """The gateway's own view of its requests between two snapshots: mean and bucket-bound p50/p99
    of rtml_gateway_request_seconds (handler entry to answer), in ms. Set beside the load
    generator's latency, it says whether time is lost inside the gateway or in front of it (the
    listen backlog, the event loop's accept, the load generator)."""
    if not _both(before, after):
        return None
    name = "rtml_gateway_request_seconds"
    count = total(after.gateway, f"{name}_count", model=model) - total(
        before.gateway, f"{name}_count", model=model
    )
    if count <= 0:
        return None
    seconds = total(after.gateway, f"{name}_sum", model=model) - total(
        before.gateway, f"{name}_sum", model=model
    )
    buckets: dict[float, float] = {}
    for sample_name, labels, value in after.gateway:
        if sample_name == f"{name}_bucket" and labels.get("model") == model:
            bound = float(labels["le"])
            buckets[bound] = buckets.get(bound, 0.0) + value
    for sample_name, labels, value in before.gateway:
        if sample_name == f"{name}_bucket" and labels.get("model") == model:
            bound = float(labels["le"])
            buckets[bound] = buckets.get(bound, 0.0) - value

    def quantile(q: float) -> float:
        for bound in sorted(buckets):
            if buckets[bound] >= q * count:
                return bound * 1000
        return float("inf")

    return {"mean_ms": seconds / count * 1000, "p50_le_ms": quantile(0.5), "p99_le_ms": quantile(0.99)}
