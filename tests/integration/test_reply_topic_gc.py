"""Reply topics under scale-up and scale-down (issue 12): three gateways and a worker under HTTP
load, scaled to one by a graceful SIGTERM of one and a kill -9 of another. Every request sent to a
gateway that was not killed -9 is answered 200, and within the stated bound only the survivor's
reply topic (and heartbeat group) is left on the broker. Plus `rtml gateway gc-reply-topics` on
topics left by gateways that are gone, beside one that is alive and one of another stack."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field

import httpx
import pytest
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from gateway.reply_janitor import REQUEST_TIMEOUT_S, ReplyOwners, heartbeat_group
from rtml.infra.process import free_ports
from rtml.stack import Child, wait_http_ok
from runtime.clock import now_ms
from runtime.kafka import ensure_topics, reply_topic
from runtime.settings import KafkaSettings
from tests.stack_fixtures import RunningStack, StackFactory, free_port

ORPHAN_AFTER_S = 6.0
"""gateway.reply_topic_orphan_after_s here (heartbeat every 1 s, confirmed over 3 s)."""
GC_INTERVAL_S = 1.0
GC_BOUND_S = ORPHAN_AFTER_S + 2 * GC_INTERVAL_S + 5.0
"""The documented bound (orphan bound + two sweep intervals), plus slack for a loaded machine."""
GC_ENV = {
    "RTML_GATEWAY__REPLY_TOPIC_ORPHAN_AFTER_S": str(ORPHAN_AFTER_S),
    "RTML_GATEWAY__REPLY_TOPIC_GC_INTERVAL_S": str(GC_INTERVAL_S),
    "RTML_GATEWAY__MAX_TIMEOUT_MS": "5000",  # the orphan bound must outlive every deadline
    "RTML_GATEWAY__DRAIN_S": "2",
}
BALANCER_PROBE_S = 0.5
"""How long the test's balancer takes to notice a draining gateway (inside its 2 s drain)."""
THREADS_PER_GATEWAY = 2
MODEL = "iris_classifier"


@dataclass
class Gateway:
    name: str
    url: str
    child: Child
    serving: threading.Event = field(default_factory=threading.Event)
    """The balancer sends to it while set."""
    answers: list[tuple[float, int | str]] = field(default_factory=list)
    """(sent at, status or the transport error's name)."""


def load(gateway: Gateway, stop: threading.Event, seed: int) -> None:
    with httpx.Client(timeout=10) as client:
        index = 0
        while not stop.is_set() and gateway.serving.is_set():
            index += 1
            features = [4.5 + (seed * 7919 + index) % 300 / 100, 3.0, 1.4, 0.2]
            body = {"model_name": MODEL, "features": features, "use_cache": False, "timeout_ms": 4000}
            sent = time.monotonic()
            try:
                status: int | str = client.post(f"{gateway.url}/api/v1/predict", json=body).status_code
            except httpx.HTTPError as exc:
                status = type(exc).__name__
            gateway.answers.append((sent, status))


def reply_topics(stack: RunningStack) -> set[str]:
    topics = AdminClient({"bootstrap.servers": stack.bootstrap}).list_topics(timeout=10).topics
    return {name for name in topics if name.startswith(stack.namespace.reply_prefix)}


def heartbeat_groups(stack: RunningStack) -> set[str]:
    admin = AdminClient({"bootstrap.servers": stack.bootstrap})
    groups = admin.list_consumer_groups(request_timeout=10).result(timeout=15).valid
    return {g.group_id for g in groups if g.group_id.startswith(stack.namespace.reply_prefix)}


def start_gateways(stack: RunningStack) -> list[Gateway]:
    """The stack's own gateway plus two more processes on their own ports, started together."""
    first = Gateway("a", stack.base_url, stack.gateway)
    more = []
    for name, port in zip("bc", free_ports(2), strict=True):
        env = {
            "RTML_GATEWAY__PORT": str(port),
            "RTML_GATEWAY__INSTANCE_ID": f"gw-{stack.namespace.tag}-{name}",
        }
        more.append(Gateway(name, f"http://127.0.0.1:{port}", stack.stack.gateway(f"gateway-{name}", env)))
    for gateway in more:
        wait_http_ok(f"{gateway.url}/ready", timeout_s=60, child=gateway.child)
    return [first, *more]


def own_topic(gateway: Gateway) -> str:
    return str(httpx.get(f"{gateway.url}/ready", timeout=5).json()["reply_topic"])


def wait_draining(gateway: Gateway) -> None:
    deadline = time.monotonic() + 5
    while httpx.get(f"{gateway.url}/ready", timeout=5).status_code != 503:
        assert time.monotonic() < deadline, f"gateway {gateway.name} never said it was draining"
        time.sleep(0.05)


def test_three_gateways_scaled_to_one_leave_nothing_behind_and_lose_no_reply(
    stack_factory: StackFactory,
) -> None:
    stack = stack_factory(workers=1, models=[MODEL], extra_env=GC_ENV)
    a, b, c = gateways = start_gateways(stack)
    topics = {gateway.name: own_topic(gateway) for gateway in gateways}
    assert reply_topics(stack) == set(topics.values())

    stop = threading.Event()
    threads = []
    for gateway in gateways:
        gateway.serving.set()
        for seed in range(THREADS_PER_GATEWAY):
            threads.append(threading.Thread(target=load, args=(gateway, stop, seed), daemon=True))
    for thread in threads:
        thread.start()
    try:
        # Longer than the orphan bound: every janitor has watched the live gateways that long.
        time.sleep(ORPHAN_AFTER_S + 2)
        assert reply_topics(stack) == set(topics.values()), "a janitor deleted a live gateway's topic"
        assert all(g.answers for g in gateways), "load did not reach every gateway"

        # Graceful scale-down of b: the balancer stops sending once /ready says it drains.
        terminated_at = time.monotonic()
        b.child.process.send_signal(signal.SIGTERM)
        wait_draining(b)
        time.sleep(BALANCER_PROBE_S)
        b.serving.clear()
        # A crash of c, with requests in flight on it.
        os.kill(c.child.process.pid, signal.SIGKILL)
        killed_at = time.monotonic()
        c.serving.clear()
        assert b.child.process.wait(timeout=30) in (0, -signal.SIGTERM)
        assert c.child.process.wait(timeout=10) == -signal.SIGKILL

        while reply_topics(stack) != {topics["a"]} and time.monotonic() - killed_at < GC_BOUND_S:
            time.sleep(0.25)
        gone_after_s = time.monotonic() - killed_at
        time.sleep(1.0)  # a is still answering after the sweep
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=15)

    assert reply_topics(stack) == {topics["a"]}, f"left behind {GC_BOUND_S:.0f} s after the kill -9"
    print(f"kill -9 -> only the survivor's reply topic left after {gone_after_s:.1f} s")
    deadline = time.monotonic() + 5
    while heartbeat_groups(stack) != {heartbeat_group(topics["a"])} and time.monotonic() < deadline:
        time.sleep(0.25)
    assert heartbeat_groups(stack) == {heartbeat_group(topics["a"])}

    for gateway in (a, b):  # not killed -9: every request sent got its 200
        failed = [
            (round(sent - terminated_at, 2), status) for sent, status in gateway.answers if status != 200
        ]
        assert not failed, (
            f"gateway {gateway.name}: {len(failed)} of {len(gateway.answers)} not 200: {failed[:10]}"
        )
    drained = [status for sent, status in b.answers if sent > terminated_at]
    assert drained, "no request reached b while it drained"
    after_kill = [status for sent, status in a.answers if sent > killed_at]
    assert len(after_kill) > 10 and set(after_kill) == {200}
    log_a = a.child.log_tail(2000)
    assert "deleted orphaned reply topic" in log_a and topics["c"] in log_a
    assert "reply topic deleted; re-creating it" not in log_a
    counts = {g.name: len(g.answers) for g in gateways}
    print(f"requests per gateway: {counts}; answered by b while draining: {len(drained)}")


def test_gc_command_deletes_only_topics_of_gateways_that_are_gone(kafka_bootstrap: str) -> None:
    tag = uuid.uuid4().hex[:8]
    prefix, other_prefix = f"t{tag}.replies.", f"u{tag}.replies."
    kafka = KafkaSettings(bootstrap_servers=kafka_bootstrap, reply_topic_prefix=prefix)
    other = KafkaSettings(bootstrap_servers=kafka_bootstrap, reply_topic_prefix=other_prefix)
    ensure_topics(kafka, [reply_topic(kafka, name) for name in ("dead", "live", "legacy")])
    ensure_topics(other, [reply_topic(other, "dead")])
    stale_ms = now_ms() - 3_600_000
    owners, others = ReplyOwners(kafka), ReplyOwners(other)
    for owner, topic in ((owners, f"{prefix}dead"), (others, f"{other_prefix}dead")):
        stamp_old_heartbeat(owner, topic, stale_ms)

    beating = threading.Event()

    def live_gateway() -> None:
        while not beating.wait(0.3):
            try:
                owners.beat(f"{prefix}live", "live")
            except KafkaException:
                continue  # just created: the broker takes commits on it a moment later

    heart = threading.Thread(target=live_gateway, daemon=True)
    heart.start()
    env = {
        **os.environ,
        "RTML_KAFKA__BOOTSTRAP_SERVERS": kafka_bootstrap,
        "RTML_KAFKA__REPLY_TOPIC_PREFIX": prefix,
        "RTML_GATEWAY__REPLY_TOPIC_ORPHAN_AFTER_S": "6",
        "RTML_GATEWAY__MAX_TIMEOUT_MS": "5000",
    }
    try:
        dry = gc_command(env, "--dry-run")  # watches three heartbeat periods (3 s) by default
        assert set(dry) == {f"{prefix}dead", f"{prefix}live", f"{prefix}legacy"}
        assert dry[f"{prefix}dead"].startswith("would delete: last heartbeat 36")
        assert dry[f"{prefix}live"].startswith("kept: heartbeat")
        assert dry[f"{prefix}legacy"].startswith("kept: no heartbeat record")
        assert list_names(kafka_bootstrap, prefix) == {f"{prefix}dead", f"{prefix}live", f"{prefix}legacy"}

        done = gc_command(env, "--watch", "7")  # a topic without any heartbeat needs the whole 6 s
        assert done[f"{prefix}dead"].startswith("deleted:")
        assert done[f"{prefix}legacy"].startswith("deleted: no heartbeat record for")
        assert done[f"{prefix}live"].startswith("kept:")
    finally:
        beating.set()
        heart.join(timeout=15)
    assert list_names(kafka_bootstrap, prefix) == {f"{prefix}live"}
    assert list_names(kafka_bootstrap, other_prefix) == {f"{other_prefix}dead"}  # not its namespace
    owners.delete([f"{prefix}live"])
    others.delete([f"{other_prefix}dead"])


def gc_command(env: dict[str, str], *args: str) -> dict[str, str]:
    """``rtml gateway gc-reply-topics ARGS`` as an operator (or a CronJob) runs it: topic -> verdict."""
    command = [sys.executable, "-m", "rtml.cli", "gateway", "gc-reply-topics", *args]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return dict(line.split("\t", 1) for line in done.stdout.splitlines())


def stamp_old_heartbeat(owners: ReplyOwners, topic: str, at_ms: int) -> None:
    """What a gateway killed an hour ago left behind: its last heartbeat, an hour old."""
    deadline = time.monotonic() + 15
    while True:
        try:
            owners.beat(topic, "dead", at_ms=at_ms)
            return
        except KafkaException:  # a just-created topic takes a moment before commits on it are taken
            assert time.monotonic() < deadline, f"no heartbeat could be written on {topic}"
            time.sleep(0.2)


def list_names(bootstrap: str, prefix: str) -> set[str]:
    topics = AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=10).topics
    return {name for name in topics if name.startswith(prefix)}


def test_a_heartbeat_without_a_broker_fails_within_its_bound_instead_of_blocking() -> None:
    """A real librdkafka consumer with no broker behind its address: the commit is asynchronous and
    waited for with a bound (a synchronous one blocks 45 s), and no admin request is involved (they
    can abort the process on a timeout, librdkafka #4605)."""
    port = free_port()  # nothing listens there
    owners = ReplyOwners(KafkaSettings(bootstrap_servers=f"127.0.0.1:{port}", reply_topic_prefix="x."))
    try:
        started = time.monotonic()
        with pytest.raises((TimeoutError, KafkaException)):
            owners.beat("x.me", "me")
        assert time.monotonic() - started < REQUEST_TIMEOUT_S + 2
        started = time.monotonic()
        assert owners.heartbeats(["x.other"]) == {}  # unreadable: left out, not judged
        assert time.monotonic() - started < REQUEST_TIMEOUT_S + 2
    finally:
        owners.close()
