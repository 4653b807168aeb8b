"""Removing the labelled series of an entity that is gone (a retired model version, a revoked
partition), so dashboards and alerts do not keep seeing its last value."""

from __future__ import annotations

from collections.abc import Sequence

from prometheus_client.metrics import MetricWrapperBase


def remove_series(metric: MetricWrapperBase, labelnames: Sequence[str], **match: str) -> int:
    """Remove every child of ``metric`` whose labels include ``match``; returns how many.

    ``labelnames`` are the metric's label names in declaration order (what ``remove`` takes).
    Only public calls (``collect``, ``remove``), so it works on every prometheus-client we accept.
    """
    found: set[tuple[str, ...]] = set()
    for family in metric.collect():
        for sample in family.samples:
            labels = sample.labels
            if all(labels.get(name) == value for name, value in match.items()):
                found.add(tuple(labels[name] for name in labelnames))
    for values in found:
        metric.remove(*values)
    return len(found)
