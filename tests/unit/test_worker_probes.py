"""Liveness and readiness of a worker process (workers/probes.py), judged from its model loops."""

from __future__ import annotations

import threading
from typing import cast

from workers.probes import WorkerProbes


class FakeThread:
    def __init__(self) -> None:
        self.alive = True

    def is_alive(self) -> bool:
        return self.alive


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make() -> tuple[WorkerProbes, Clock, FakeThread, list[float | None]]:
    clock = Clock()
    probes = WorkerProbes(threading.Event(), stall_after_s=60, startup_grace_s=300, clock=clock)
    thread = FakeThread()
    stats: list[float | None] = [None]
    probes.watch("iris", cast(threading.Thread, thread), lambda: stats[0])
    return probes, clock, thread, stats


def test_starting_is_live_but_not_ready_until_every_model_polled() -> None:
    probes, clock, _, stats = make()
    assert probes.health()[0]
    ok, body = probes.ready()
    assert not ok and body["reasons"] == ["starting: models loading"]
    probes.started()
    ok, body = probes.ready()
    assert not ok and body["reasons"] == ["starting: no poll yet for iris"]
    stats[0] = clock.now
    assert probes.ready() == (True, {"status": "ready", "reasons": []})


def test_a_loop_that_stops_polling_fails_liveness_and_readiness() -> None:
    probes, clock, _, stats = make()
    probes.started()
    stats[0] = clock.now
    clock.now += 59
    assert probes.health()[0]
    clock.now += 2
    ok, body = probes.health()
    assert not ok and "has not polled Kafka for 61 s" in body["problems"]["iris"]
    assert not probes.ready()[0]


def test_a_model_that_never_polls_fails_liveness_after_the_startup_grace() -> None:
    probes, clock, _, _ = make()
    clock.now += 299
    assert probes.health()[0]
    clock.now += 2
    ok, body = probes.health()
    assert not ok and "no poll of Kafka in 301 s" in body["problems"]["iris"]


def test_a_dead_model_thread_fails_liveness_unless_the_process_is_stopping() -> None:
    probes, clock, thread, stats = make()
    probes.started()
    stats[0] = clock.now
    thread.alive = False
    ok, body = probes.health()
    assert not ok and body["problems"] == {"iris": "model thread exited"}
    probes.stopping.set()  # SIGTERM: threads finish their batch and exit; still live until exit
    assert probes.health()[0]
    ok, body = probes.ready()
    assert not ok and body["reasons"] == ["stopping"]
