"""Graceful drain (issue 11): SIGTERM turns /ready to 503 while new requests are still served,
then the gateway stops accepting, answers what is in flight, and exits 0."""

from __future__ import annotations

import signal
import threading
import time

import httpx

from tests.stack_fixtures import UNSERVED_MODEL, StackFactory


def test_sigterm_drains_then_exits(stack_factory: StackFactory) -> None:
    stack = stack_factory(workers=1, models=["iris_classifier"], extra_env={"RTML_GATEWAY__DRAIN_S": "2"})
    n_features = stack.registry.metadata(UNSERVED_MODEL, "1").n_features
    in_flight: list[httpx.Response] = []

    def slow_request() -> None:  # nobody serves this model: it waits out its 4 s deadline
        body = {"model_name": UNSERVED_MODEL, "features": [0.5] * n_features, "timeout_ms": 4000}
        in_flight.append(httpx.post(f"{stack.base_url}/api/v1/predict", json=body, timeout=20))

    waiter = threading.Thread(target=slow_request)
    waiter.start()
    time.sleep(0.5)
    stack.gateway.process.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    ready = httpx.get(f"{stack.base_url}/ready", timeout=5)
    assert ready.status_code == 503 and any("draining" in r for r in ready.json()["reasons"])
    served = httpx.post(
        f"{stack.base_url}/api/v1/predict",
        json={"model_name": "iris_classifier", "features": [5.1, 3.5, 1.4, 0.2]},
        timeout=5,
    )
    assert served.status_code == 200  # still served while load balancers notice
    waiter.join(timeout=20)
    assert in_flight and in_flight[0].status_code == 504  # answered, not cut off
    assert in_flight[0].json()["error"]["code"] == "timeout"
    # uvicorn re-raises the signal it captured once it has shut down: the conventional "terminated
    # by SIGTERM" status, after the drain, not a crash.
    assert stack.gateway.process.wait(timeout=20) in (0, -signal.SIGTERM)
    assert "gateway stopped" in stack.gateway.log_tail(20)
