"""Worker lifecycle under load: SIGTERM mid-stream loses nothing; a successor picks up from the commit."""

from __future__ import annotations

import threading
import time
import uuid

import httpx
import orjson

from tests.kafka_tools import committed_lag, produce, read_topic
from tests.stack_fixtures import StackFactory

MESSAGES = 100_000


def rows_served(metrics_url: str, at_least: int, timeout_s: float) -> None:
    """Until the worker's rtml_worker_rows_total reaches ``at_least`` (bounded)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        text = httpx.get(metrics_url, timeout=5).text
        served = sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("rtml_worker_rows_total{")
        )
        if served >= at_least:
            return
        time.sleep(0.02)
    raise AssertionError(f"worker served fewer than {at_least} rows in {timeout_s} s")


def test_sigterm_mid_stream_loses_nothing_and_a_new_worker_resumes(stack_factory: StackFactory) -> None:
    running = stack_factory(workers=1, models=["binary_classifier"])
    topic = running.request_topic("binary_classifier")
    tag = uuid.uuid4().hex[:6]
    ids = [f"life-{tag}-{i}" for i in range(MESSAGES)]
    values = [
        orjson.dumps({"request_id": rid, "model": "binary_classifier", "features": [[i / 100] * 8]})
        for i, rid in enumerate(ids)
    ]
    # Produced in the background while the worker serves; SIGTERM lands once the worker has served
    # some but (at tens of thousands a second) cannot have served them all. A fixed sleep did not:
    # a faster worker finished all 20,000 within it.
    producer = threading.Thread(target=produce, args=(running.bootstrap, topic, values))
    producer.start()
    rows_served(running.worker_metrics_urls[0], at_least=1000, timeout_s=60)
    first = running.workers[0]
    assert first.stop(timeout_s=30) == 0, first.log_tail()  # graceful: exit code 0
    producer.join(timeout=60)
    wanted = set(ids)
    before = read_topic(running.bootstrap, running.namespace.predictions_topic, lambda rs: False, timeout_s=3)
    served_by_first = len(wanted & {r["request_id"] for r in before})
    assert 0 < served_by_first < len(ids), f"SIGTERM did not land mid-stream ({served_by_first} served)"
    running.stack.worker("successor", ["binary_classifier"])

    def all_seen(records: list[dict[str, object]]) -> bool:
        return wanted <= {r["request_id"] for r in records}

    records = read_topic(running.bootstrap, running.namespace.predictions_topic, all_seen, timeout_s=90)
    seen = {r["request_id"] for r in records}
    assert wanted <= seen, f"{len(wanted - seen)} requests lost"
    duplicates = len([r for r in records if r["request_id"] in wanted]) - len(wanted)
    assert duplicates <= 256, f"{duplicates} re-served rows: more than one uncommitted batch"
    deadline = time.monotonic() + 15
    while (
        committed_lag(running.bootstrap, running.group("binary_classifier"), topic)
        and time.monotonic() < deadline
    ):
        time.sleep(0.3)
    assert committed_lag(running.bootstrap, running.group("binary_classifier"), topic) == 0
