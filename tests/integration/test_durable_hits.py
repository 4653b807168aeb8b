"""gateway.durable_hit_log (issue 11): a cache hit is answered only once its log record is on the
broker, so a gateway crash right after an answer loses no record."""

from __future__ import annotations

import time

import httpx

from tests.kafka_tools import read_topic
from tests.stack_fixtures import StackFactory


def test_a_durable_hit_is_answered_after_its_record_is_acknowledged(stack_factory: StackFactory) -> None:
    stack = stack_factory(
        workers=1, models=["iris_classifier"], extra_env={"RTML_GATEWAY__DURABLE_HIT_LOG": "true"}
    )
    body = {"model_name": "iris_classifier", "features": [6.7, 3.1, 4.4, 1.4]}
    url = f"{stack.base_url}/api/v1/predict"
    assert httpx.post(url, json=body, timeout=10).status_code == 200
    deadline = time.monotonic() + 5
    while not (hit := httpx.post(url, json=body, timeout=10).json())["from_cache"]:
        assert time.monotonic() < deadline, "never answered from the cache"
        time.sleep(0.05)
    records = read_topic(
        stack.bootstrap,
        stack.namespace.predictions_topic,
        lambda rs: any(r["request_id"] == hit["request_id"] for r in rs),
        timeout_s=5,  # acknowledged before the answer: it must be there at once
    )
    (record,) = [r for r in records if r["request_id"] == hit["request_id"]]
    assert record["served_by"] == "gateway" and record["from_cache"] is True
