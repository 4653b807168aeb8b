"""Fault injection on the real stack (issue 11): under load at about half of its capacity, two
gateways and two workers on a private broker and Redis go through, in turn, kill -9 of a worker (then
restarted, as `rtml run` would), kill -9 of a gateway (then restarted), kill -9 of Redis (then
restarted), kill -9 of the broker (then restarted) and a rebalance (a third worker added, then
removed). Then:

- every HTTP request got exactly one answer: a 200 with the model's own prediction for its row
  (checked against ONNX Runtime here, so no reply crossed to another request or gateway) or a 503/504
  JSON error, none after its deadline plus one second; the only requests without an answer are those
  in flight on a gateway at the instant it was killed, and there is no process left to answer them;
- every direct Kafka request the broker acknowledged ended as a prediction-log record or a dead
  letter: losses zero, duplicates counted and reported;
- service recovered after each fault within the bound stated for it (``RECOVERY_S``), measured as
  the time from the fault to the last failed answer of that phase.

``FAULT_SUITE=full`` (``make faults``) holds each fault longer at a higher rate; the default
(``short``) is the version `make test` and CI run; ``off`` skips it. The report is printed
(pytest -s shows it) and written to ``$FAULT_SUITE_REPORT`` when set.
"""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest

from rtml.infra.process import port_open
from rtml.stack import Child, wait_http_ok
from tests.faults.load import DEADLINE_MS, MODEL, ROWS, DirectLoad, HttpLoad, HttpOutcome
from tests.infra_fixtures import LocalKafka, LocalRedis
from tests.kafka_tools import read_topic
from tests.model_fixtures import DemoModels
from tests.stack_fixtures import RunningStack, StackFactory, free_port

# Not RTML_*: every RTML_ variable is a setting, and the settings refuse unknown ones.
MODE = os.environ.get("FAULT_SUITE", "short")
FULL = MODE == "full"
# Five phases of PHASE_S each, the capacity calibration and the stack's start: past the default
# 120 s, bounded all the same.
pytestmark = [
    pytest.mark.timeout(900 if FULL else 480),
    pytest.mark.skipif(MODE not in ("short", "full"), reason=f"FAULT_SUITE={MODE}"),
]
HOLD_S = 8.0 if FULL else 3.0
"""How long a killed process stays down before it is restarted."""
PHASE_S = 45.0 if FULL else 30.0
"""Each fault's phase: injection, hold, restart, recovery, then steady service until the next."""
MAX_RATE = 250.0 if FULL else 80.0
DIRECT_RATE = 200.0 if FULL else 50.0
RECOVERY_S = {
    # A killed worker's partitions wait for its session to time out (10 s) and a rebalance.
    "worker_kill9": 25.0,
    # The balancer moves traffic to the other gateway at once; only the crash's in-flight requests fail.
    "gateway_kill9": 5.0,
    # Every Redis client fails fast and steps aside; nothing waits for it.
    "redis_kill9": 5.0,
    # Down for HOLD_S, a JVM start, then every client reconnects and the groups re-form.
    "broker_kill9": 40.0,
    # Adding then removing a worker moves partitions twice.
    "rebalance": 25.0,
}
ACCOUNT_S = 120.0
"""How long the direct requests may take to appear on the log or the dead-letter topic."""


@dataclass
class Phase:
    name: str
    started: float
    ended: float = 0.0


@pytest.fixture
def fault_stack(
    stack_factory: StackFactory,
    throwaway_kafka: LocalKafka,
    throwaway_redis: LocalRedis,
    demo_models: DemoModels,
    tmp_path: Path,
) -> Iterator[tuple[RunningStack, Child, str]]:
    registry = demo_models.copy(tmp_path / "registry", MODEL)
    running = stack_factory(
        workers=2, models=[MODEL], bootstrap=throwaway_kafka.bootstrap, redis=throwaway_redis.url,
        registry=registry.root,
        extra_env={"RTML_GATEWAY__MAX_TIMEOUT_MS": "10000"},
    )  # fmt: skip
    port = free_port()
    second = running.stack.gateway(
        "gateway-2",
        {"RTML_GATEWAY__PORT": str(port), "RTML_GATEWAY__INSTANCE_ID": f"gw2-{running.namespace.tag}"},
    )
    second_url = f"http://127.0.0.1:{port}"
    wait_http_ok(f"{second_url}/ready", timeout_s=60, child=second)
    try:
        yield running, second, second_url
    finally:
        running.stack.stop_all()  # before the broker and Redis fixtures go away


def expected_predictions(running: RunningStack) -> list[int]:
    session = ort.InferenceSession(
        str(running.registry.model_path(MODEL, "1")), providers=["CPUExecutionProvider"]
    )
    labels = session.run(None, {session.get_inputs()[0].name: np.asarray(ROWS, dtype=np.float32)})[0]
    return [int(label) for label in labels]


def capacity(urls: list[str], seconds: float = 3.0, threads: int = 16) -> float:
    """Answered requests per second, closed loop, load generator included (it shares the cores)."""
    load = HttpLoad(urls, rate=1e6, threads=threads)
    load.start()
    time.sleep(seconds)
    load.stop()
    return sum(o.status == 200 for o in load.outcomes) / seconds


def kill9(child: Child) -> None:
    child.process.send_signal(signal.SIGKILL)
    child.process.wait(timeout=10)
    assert not child.alive


def kill_server(kill: Callable[[], None], address: str) -> None:
    """kill -9 a broker or Redis, and make sure it is gone: its port refuses connections."""
    kill()
    host, port = address.rsplit("//", 1)[-1].split("/")[0].rsplit("@", 1)[-1].rsplit(":", 1)
    assert not port_open(host, int(port)), f"{address} still accepts connections after kill -9"


def run_phases(
    running: RunningStack, second: Child, kafka: LocalKafka, redis: LocalRedis
) -> tuple[list[Phase], dict[str, float]]:
    stack, worker = running.stack, running.workers[0]
    marks: dict[str, float] = {}

    def down_then_up(kill: Callable[[], None], restart: Callable[[], None], name: str) -> None:
        kill()
        marks[name] = time.monotonic()
        time.sleep(HOLD_S)
        restart()

    def rebalance() -> None:
        extra = stack.worker("worker-extra", [MODEL], {"RTML_WORKER__METRICS_PORT": str(free_port())})
        time.sleep(HOLD_S + 5)
        extra.stop()  # SIGTERM: it drains and leaves the group

    faults: list[tuple[str, Callable[[], None]]] = [
        (
            "worker_kill9",
            lambda: down_then_up(lambda: kill9(worker), lambda: stack.restart(worker), "worker"),
        ),
        (
            "gateway_kill9",
            lambda: down_then_up(lambda: kill9(second), lambda: stack.restart(second), "gateway"),
        ),
        (
            "redis_kill9",
            lambda: down_then_up(lambda: kill_server(redis.kill, redis.url), redis.start, "redis"),
        ),
        (
            "broker_kill9",
            lambda: down_then_up(lambda: kill_server(kafka.kill, kafka.bootstrap), kafka.start, "broker"),
        ),
        ("rebalance", rebalance),
    ]
    phases = []
    for name, inject in faults:
        phase = Phase(name, time.monotonic())
        inject()
        time.sleep(max(0.0, phase.started + PHASE_S - time.monotonic()))
        phase.ended = time.monotonic()
        phases.append(phase)
    return phases, marks


def test_faults_lose_nothing_and_every_request_gets_one_answer(
    fault_stack: tuple[RunningStack, Child, str], throwaway_kafka: LocalKafka, throwaway_redis: LocalRedis
) -> None:
    running, second, second_url = fault_stack
    urls = [running.base_url, second_url]
    expected = expected_predictions(running)
    measured = capacity(urls)
    rate = min(MAX_RATE, measured / 2)
    http = HttpLoad(urls, rate=rate)
    gateways = [running.gateway, second]

    def gateway_state() -> str:
        listening = [port_open("127.0.0.1", int(url.rsplit(":", 1)[1])) for url in urls]
        return (
            ", ".join(
                f"gateway {i}: pid {g.process.pid} alive={g.alive} listening={up}"
                for i, (g, up) in enumerate(zip(gateways, listening, strict=True))
            )
            + f"; this process has {len(os.listdir('/proc/self/fd'))} open files"
        )

    http.on_all_refused = gateway_state
    direct = DirectLoad(throwaway_kafka.bootstrap, running.request_topic(MODEL), DIRECT_RATE)
    warm_up = time.monotonic()
    http.start()
    direct.start()
    time.sleep(5)  # steady state first: the checks below compare every phase against it
    try:
        phases, marks = run_phases(running, second, throwaway_kafka, throwaway_redis)
    finally:
        http.stop()
        direct.stop()
    logged, dead = account_direct(running, throwaway_kafka.bootstrap, direct)
    report = Report(
        measured, rate, http.outcomes, http.connect_retries, http.refused, http.refused_at, http.all_refused,
        http.crashes,
        phases, marks, direct, logged, dead,
    )  # fmt: skip
    print(report.text())
    if os.environ.get("FAULT_SUITE_REPORT"):
        Path(os.environ["FAULT_SUITE_REPORT"]).write_text(report.text())
    report.check(expected, warm_up)


def account_direct(
    running: RunningStack, bootstrap: str, direct: DirectLoad
) -> tuple[Counter[str], Counter[str]]:
    """How many log records, and how many dead letters, each acknowledged direct request ended as.
    The dead letters are read first (a few seconds: they are few), then the log until every
    request is accounted for or ``ACCOUNT_S`` has passed."""
    ids = set(direct.acknowledged)

    def ours(records: list[dict[str, Any]]) -> Counter[str]:
        return Counter(r["request_id"] for r in records if r.get("request_id") in ids)

    dead = ours(read_topic(bootstrap, running.namespace.dlq_topic, lambda _: False, timeout_s=5))
    logged = ours(
        read_topic(
            bootstrap,
            running.namespace.predictions_topic,
            lambda got: len(ids - set(dead) - set(ours(got))) == 0,
            timeout_s=ACCOUNT_S,
        )
    )
    return logged, dead


@dataclass
class Report:
    capacity: float
    rate: float
    outcomes: list[HttpOutcome]
    connect_retries: int
    refused: Counter[tuple[int, str]]
    refused_at: list[float]
    all_refused: list[str]
    crashes: list[str]
    phases: list[Phase]
    marks: dict[str, float]
    direct: DirectLoad
    logged: Counter[str]
    dead: Counter[str]

    @property
    def accounted(self) -> Counter[str]:
        return self.logged + self.dead

    def phase_of(self, outcome: HttpOutcome) -> Phase | None:
        for phase in self.phases:
            if phase.started <= outcome.sent_at < phase.ended:
                return phase
        return None

    def recovery_s(self, phase: Phase) -> float:
        """From the fault to the last failed answer of its phase (0 when none failed).

        Answers after the phase's end are the next fault's: a request sent in the last second of
        the Redis phase and still in flight when the broker was killed failed 2 s into the broker
        phase (CI, 2026-12-07), which read as a 32 s Redis recovery."""
        failed = [
            o.sent_at + o.elapsed_s
            for o in self.outcomes
            if self.phase_of(o) is phase and o.status != 200 and o.sent_at + o.elapsed_s <= phase.ended
        ]
        return max(failed) - phase.started if failed else 0.0

    def text(self) -> str:
        statuses = Counter(o.status for o in self.outcomes)
        lost = [o for o in self.outcomes if o.status == 0]
        duplicates = sum(n - 1 for n in self.accounted.values() if n > 1)
        missing = len(self.direct.acknowledged) - len(self.accounted)
        lines = [
            f"fault suite ({'full' if FULL else 'short'}): capacity {self.capacity:.0f} req/s closed loop, "
            f"HTTP load {self.rate:.0f} req/s over 2 gateways, direct {DIRECT_RATE:.0f} msg/s",
            f"HTTP: {len(self.outcomes)} requests, statuses {dict(sorted(statuses.items()))}, "
            f"{len(lost)} lost in a gateway crash, {self.connect_retries} refused connections sent elsewhere",
            f"direct: {len(self.direct.acknowledged)} acknowledged, {len(self.logged)} logged, "
            f"{len(self.dead)} dead-lettered, {missing} unaccounted (lost), {duplicates} duplicates, "
            f"{self.direct.failed} never acknowledged (not sent)",
        ]
        for (gateway, error), count in sorted(self.refused.items()):
            lines.append(f"  refused by gateway {gateway}: {count} x {error}")
        lines += [f"  load thread died: {crash}" for crash in self.crashes]
        lines += [f"  every gateway refused at {state}" for state in self.all_refused]
        for phase in self.phases:
            inside = [o for o in self.outcomes if self.phase_of(o) is phase]
            bad = sum(o.status != 200 for o in inside)
            refused = sum(phase.started <= t < phase.ended for t in self.refused_at)
            lines.append(
                f"  {phase.name:14} {len(inside):6} requests, {bad:5} not 200, {refused:5} refused, "
                f"recovered after {self.recovery_s(phase):5.1f} s (bound {RECOVERY_S[phase.name]:.0f} s)"
            )
        return "\n".join(lines)

    def check(self, expected: list[int], warm_up: float) -> None:
        assert not self.crashes, f"HTTP load threads died: {self.crashes}"
        assert not self.all_refused, f"every gateway refused connections: {self.all_refused}"
        assert len(self.outcomes) > 100 * len(self.phases), "the load generator barely ran"
        late = [o for o in self.outcomes if o.elapsed_s > DEADLINE_MS / 1000 + 1.0]
        assert not late, f"{len(late)} answers came after the deadline + 1 s, e.g. {late[:3]}"
        unexpected = Counter(
            (o.status, o.error_code) for o in self.outcomes if o.status not in (0, 200, 503, 504)
        )
        assert not unexpected, f"answers other than 200/503/504: {unexpected}"
        unnamed = [o for o in self.outcomes if o.status in (503, 504) and o.error_code is None]
        assert not unnamed, f"{len(unnamed)} 503/504 answers without a JSON error body"
        wrong = [o for o in self.outcomes if o.status == 200 and o.prediction != expected[o.row]]
        assert not wrong, f"{len(wrong)} answers carried another row's prediction, e.g. {wrong[:3]}"
        for gateway in (0, 1):
            assert sum(o.status == 200 and o.gateway == gateway for o in self.outcomes) > 50, gateway
        killed = self.marks["gateway"]
        crashed = [o for o in self.outcomes if o.status == 0]
        stray = [
            o
            for o in crashed
            if not (o.gateway == 1 and o.sent_at <= killed <= o.sent_at + o.elapsed_s + 1.0)
        ]
        assert not stray, (
            f"requests without an answer that were not in flight at the gateway kill: {stray[:3]}"
        )
        steady = [o for o in self.outcomes if warm_up <= o.sent_at < self.phases[0].started]
        unhealthy = Counter((o.status, o.error_code) for o in steady if o.status != 200)
        assert steady and not unhealthy, (
            f"the stack was not healthy before the faults: {len(steady)} requests in the first 5 s, "
            f"not 200: {dict(unhealthy)}, e.g. {[o for o in steady if o.status != 200][:3]}"
        )
        for phase in self.phases:
            assert self.recovery_s(phase) <= RECOVERY_S[phase.name], self.text()
        ids = self.direct.acknowledged
        missing = sorted(ids - set(self.accounted))
        assert len(ids) > 100, "the direct producer barely ran"
        assert not missing, (
            f"{len(missing)} acknowledged direct requests never reached the log or DLQ: {missing[:5]}"
        )
        # Valid requests are predicted, not dead-lettered: else the accounting would prove little.
        assert len(self.dead) <= len(ids) // 100, f"{len(self.dead)} valid direct requests were dead-lettered"
