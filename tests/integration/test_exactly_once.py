"""worker.exactly_once (issue 11): a worker killed -9 mid-stream, a successor resumes, and a
read_committed reader of the prediction log sees exactly one record per request, none missing."""

from __future__ import annotations

import signal
import threading
import uuid
from collections import Counter

import orjson

from tests.integration.test_e2e_lifecycle import rows_served
from tests.kafka_tools import produce, read_topic
from tests.stack_fixtures import StackFactory

MESSAGES = 20_000


def test_kill_9_mid_stream_leaves_exactly_one_committed_record_per_request(
    stack_factory: StackFactory,
) -> None:
    running = stack_factory(
        workers=1, models=["binary_classifier"], extra_env={"RTML_WORKER__EXACTLY_ONCE": "true"}
    )
    topic = running.request_topic("binary_classifier")
    tag = uuid.uuid4().hex[:6]
    ids = [f"eos-{tag}-{i}" for i in range(MESSAGES)]
    values = [
        orjson.dumps({"request_id": rid, "model": "binary_classifier", "features": [[i / 100] * 8]})
        for i, rid in enumerate(ids)
    ]
    producer = threading.Thread(target=produce, args=(running.bootstrap, topic, values))
    producer.start()
    rows_served(running.worker_metrics_urls[0], at_least=1000, timeout_s=60)
    first = running.workers[0]
    first.process.send_signal(signal.SIGKILL)  # no drain, no commit: whatever was open is aborted
    first.process.wait(timeout=10)
    producer.join(timeout=60)
    running.stack.worker("successor", ["binary_classifier"], {"RTML_WORKER__EXACTLY_ONCE": "true"})

    wanted = set(ids)
    records = read_topic(  # librdkafka's default isolation.level is read_committed
        running.bootstrap,
        running.namespace.predictions_topic,
        lambda rs: wanted <= {r["request_id"] for r in rs},
        timeout_s=120,
    )
    counts = Counter(r["request_id"] for r in records if r["request_id"] in wanted)
    missing = wanted - set(counts)
    duplicated = {rid: n for rid, n in counts.items() if n > 1}
    assert not missing, f"{len(missing)} requests never logged"
    assert not duplicated, (
        f"{len(duplicated)} requests logged more than once, e.g. {list(duplicated.items())[:3]}"
    )
