"""gateway.processes: several gateway processes on one port, each with its own reply topic."""

from __future__ import annotations

import os
import signal
import time

import httpx
from confluent_kafka.admin import AdminClient

from tests.stack_fixtures import RunningStack, StackFactory

PROCESSES = 2


def ready_instances(stack: RunningStack, deadline_s: float = 60.0) -> set[str]:
    """Instance ids answering /ready, each on a fresh connection (the kernel picks the process)."""
    seen: set[str] = set()
    deadline = time.monotonic() + deadline_s
    while len(seen) < PROCESSES and time.monotonic() < deadline:
        response = httpx.get(f"{stack.base_url}/ready", timeout=5)
        if response.status_code == 200:
            seen.add(response.json()["instance_id"])
    return seen


def reply_topics(stack: RunningStack) -> set[str]:
    topics = AdminClient({"bootstrap.servers": stack.bootstrap}).list_topics(timeout=10).topics
    return {name for name in topics if name.startswith(stack.namespace.reply_prefix)}


def test_processes_share_the_port_and_each_gets_its_replies(stack_factory: StackFactory) -> None:
    stack = stack_factory(workers=1, extra_env={"RTML_GATEWAY__PROCESSES": str(PROCESSES)})
    instance = f"gw-{stack.namespace.tag}"
    expected = {f"{instance}-{index}" for index in range(PROCESSES)}
    assert ready_instances(stack) == expected
    assert reply_topics(stack) == {f"{stack.namespace.reply_prefix}{name}" for name in expected}

    # Fresh connections land on both processes; every answer reaches the process that asked.
    answered = 0
    for index in range(40):
        features = [5.0 + index / 100, 3.4, 1.5, 0.2]
        with httpx.Client(timeout=10) as client:
            response = client.post(
                f"{stack.base_url}/api/v1/predict",
                json={"model_name": "iris_classifier", "features": features, "use_cache": False},
            )
        assert response.status_code == 200, response.text
        answered += 1
    assert answered == 40

    # SIGTERM to the supervisor stops every process gracefully; each deletes its reply topic.
    stack.gateway.process.send_signal(signal.SIGTERM)
    assert stack.gateway.process.wait(timeout=30) == 0
    deadline = time.monotonic() + 15
    while reply_topics(stack) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert reply_topics(stack) == set()


def test_a_dead_process_takes_the_gateway_down(stack_factory: StackFactory) -> None:
    stack = stack_factory(workers=1, extra_env={"RTML_GATEWAY__PROCESSES": str(PROCESSES)})
    ready_instances(stack)
    children = _children_of(stack.gateway.process.pid)
    assert len(children) == PROCESSES
    os.kill(children[0], signal.SIGKILL)
    # The supervisor stops the survivor and exits non-zero, for its own supervisor to restart.
    code = stack.gateway.process.wait(timeout=60)
    assert code != 0
    assert not any(_alive(pid) for pid in children)


def _children_of(pid: int) -> list[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as handle:
        return [int(child) for child in handle.read().split()]


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split()[2] != "Z"
    except FileNotFoundError:
        return False
