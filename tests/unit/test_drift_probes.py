"""Liveness and readiness of the drift app (drift/probes.py), judged from its log reader's polls."""

from __future__ import annotations

from drift.probes import DriftProbes


class Clock:
    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


def test_ready_once_the_reader_polled_and_live_while_it_keeps_polling() -> None:
    clock = Clock()
    probes = DriftProbes(stall_after_s=60, startup_grace_s=300, clock=clock)
    assert probes.health()[0]
    ok, body = probes.ready()
    assert not ok and body["reasons"] == ["starting: the prediction-log reader has not polled yet"]
    probes.polled()
    assert probes.ready() == (True, {"status": "ready", "reasons": []})
    clock.now += 61
    ok, body = probes.health()
    assert not ok and body["problems"]["ingest"] == "the prediction-log reader has not polled for 61 s"
    assert not probes.ready()[0]
    probes.polled()
    assert probes.health()[0] and probes.ready()[0]


def test_a_reader_that_never_polls_fails_liveness_after_the_startup_grace() -> None:
    clock = Clock()
    probes = DriftProbes(stall_after_s=60, startup_grace_s=300, clock=clock)
    clock.now += 301
    ok, body = probes.health()
    assert not ok and "has not polled in 301 s since start" in body["problems"]["ingest"]
