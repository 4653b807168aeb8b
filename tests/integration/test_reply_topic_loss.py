"""A deleted reply topic (issue 11): the gateway notices, says so, re-creates it and answers again,
instead of staying ready while every request times out."""

from __future__ import annotations

import time

import httpx

from runtime.kafka import delete_topics
from runtime.settings import KafkaSettings
from tests.stack_fixtures import StackFactory


def test_the_gateway_recreates_a_deleted_reply_topic(stack_factory: StackFactory) -> None:
    stack = stack_factory(workers=1, models=["iris_classifier"])
    body = {
        "model_name": "iris_classifier",
        "features": [5.1, 3.5, 1.4, 0.2],
        "use_cache": False,
        "timeout_ms": 2000,
    }
    assert httpx.post(f"{stack.base_url}/api/v1/predict", json=body, timeout=10).status_code == 200
    topic = httpx.get(f"{stack.base_url}/ready", timeout=10).json()["reply_topic"]
    delete_topics(KafkaSettings(bootstrap_servers=stack.bootstrap), [topic])
    deadline = time.monotonic() + 30
    while True:
        status = httpx.post(f"{stack.base_url}/api/v1/predict", json=body, timeout=10).status_code
        if status == 200:
            break
        assert status in (503, 504), status
        assert time.monotonic() < deadline, "no answer 30 s after the reply topic was deleted"
    assert "reply topic deleted; re-creating it" in stack.gateway.log_tail(200)
