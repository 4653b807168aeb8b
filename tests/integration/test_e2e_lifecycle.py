"""Worker lifecycle under load: SIGTERM mid-stream loses nothing; a successor picks up from the commit."""

from __future__ import annotations

import time
import uuid

import orjson

from tests.kafka_tools import committed_lag, produce, read_topic
from tests.stack_fixtures import StackFactory


def test_sigterm_mid_stream_loses_nothing_and_a_new_worker_resumes(stack_factory: StackFactory) -> None:
    running = stack_factory(workers=1, models=["binary_classifier"])
    topic = running.request_topic("binary_classifier")
    tag = uuid.uuid4().hex[:6]
    ids = [f"life-{tag}-{i}" for i in range(20000)]
    values = [
        orjson.dumps({"request_id": rid, "model": "binary_classifier", "features": [[i / 100] * 8]})
        for i, rid in enumerate(ids)
    ]
    produce(running.bootstrap, topic, values)
    time.sleep(0.5)  # let the worker get into the stream
    first = running.workers[0]
    assert first.stop(timeout_s=30) == 0, first.log_tail()  # graceful: exit code 0
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
