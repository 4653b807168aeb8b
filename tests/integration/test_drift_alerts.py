"""`rtml alerts forward|tail` against a real broker and a real local HTTP receiver."""

from __future__ import annotations

import argparse
import io
import json
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from pydantic import SecretStr

from drift.alerts import run_alerts
from drift.alerts.forward import Forwarder, Limits, sinks_from
from drift.alerts.tail import tail
from runtime.kafka import TopicSpec, ensure_topics
from runtime.settings import DriftSettings, KafkaSettings, Settings
from schemas.drift import BaselineReference, DriftAlert
from tests.kafka_tools import committed_lag, produce, read_topic


@dataclass
class Receiver:
    """Records every POST; answers each path with the queued statuses, then 200."""

    server: ThreadingHTTPServer
    received: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    statuses: dict[str, list[int]] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def bodies(self, path: str) -> list[dict[str, Any]]:
        return [body for got, body in self.received if got == path]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state: dict[str, Receiver] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            rec = state["r"]
            rec.received.append((self.path, body))
            queued = rec.statuses.get(self.path) or [202]
            status = queued.pop(0) if len(queued) > 1 else queued[0]
            self.send_response(status)
            self.end_headers()
            self.wfile.write(b'{"status": "ok"}')

        def log_message(self, *_args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state["r"] = Receiver(server)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state["r"]
    server.shutdown()
    server.server_close()


def settings_for(bootstrap: str, receiver: Receiver, **drift: Any) -> Settings:
    tag = uuid.uuid4().hex[:8]
    drift_settings = DriftSettings(
        alerts_topic=f"t{tag}.drift.alerts",
        dead_letter_topic=f"t{tag}.drift.dlq",
        forward_group=f"t{tag}.forwarder",
        slack_webhook_url=SecretStr(f"{receiver.url}/slack"),
        pagerduty_routing_key=SecretStr("routing-key-123"),
        pagerduty_url=f"{receiver.url}/pd",
        forward_backoff_s=0.01,
        forward_max_backoff_s=0.05,
        forward_max_attempts=3,
        **drift,
    )
    settings = Settings(kafka=KafkaSettings(bootstrap_servers=bootstrap), drift=drift_settings)
    topics = [drift_settings.alerts_topic, drift_settings.dead_letter_topic]
    ensure_topics(settings.kafka, [TopicSpec(name, 1, "alert id") for name in topics])
    return settings


def alert(status: str, alert_id: str = "a1b2c3d4e5f60718", severity: str = "critical") -> DriftAlert:
    return DriftAlert(
        alert_id=alert_id,
        event_id=f"{alert_id}:{status}:{severity}",
        status=status,  # type: ignore[arg-type]
        severity=severity,  # type: ignore[arg-type]
        model="fraud_detector",
        version="1",
        subject="amount",
        subject_kind="feature",
        statistic="psi",
        value=0.31,
        threshold=0.2,
        p_value=1e-9,
        window_start_ms=1_700_000_000_000,
        window_end_ms=1_700_000_300_000,
        sample_count=6000,
        baseline=BaselineReference(model="fraud_detector", version="1", onnx_sha256="0" * 64, count=4000),
        message=f"fraud_detector v1 feature 'amount': psi 0.31 ({status})",
        emitted_at_ms=1_700_000_301_000,
    )


def publish(settings: Settings, values: list[bytes]) -> None:
    produce(settings.kafka.bootstrap_servers, settings.drift.alerts_topic, values)


def forward(settings: Settings, messages: int) -> int:
    return Forwarder(settings, sinks_from(settings)).run(Limits(max_messages=messages, idle_timeout_s=20))


def test_trigger_and_resolve_reach_slack_and_pagerduty_with_retries(
    kafka_bootstrap: str, receiver: Receiver
) -> None:
    settings = settings_for(kafka_bootstrap, receiver)
    receiver.statuses["/pd"] = [500, 503, 202]
    firing, resolved = alert("firing"), alert("resolved")
    publish(
        settings,
        [
            firing.model_dump_json().encode(),
            firing.model_dump_json().encode(),
            resolved.model_dump_json().encode(),
        ],
    )

    assert forward(settings, 3) == 3

    pd = receiver.bodies("/pd")
    assert [b["event_action"] for b in pd] == ["trigger", "trigger", "trigger", "resolve"]
    assert {b["dedup_key"] for b in pd} == {firing.alert_id}
    assert pd[0]["payload"]["severity"] == "critical" and pd[0]["routing_key"] == "routing-key-123"
    slack = [b["text"] for b in receiver.bodies("/slack")]
    assert len(slack) == 2 and firing.alert_id in slack[0], "the redelivered firing record was not skipped"
    drift = settings.drift
    assert committed_lag(kafka_bootstrap, drift.forward_group, drift.alerts_topic) == 0


def test_undeliverable_and_unreadable_alerts_are_dead_lettered_then_committed(
    kafka_bootstrap: str, receiver: Receiver
) -> None:
    settings = settings_for(kafka_bootstrap, receiver)
    receiver.statuses["/pd"] = [500]
    receiver.statuses["/slack"] = [400]
    publish(settings, [b"not an alert", alert("firing").model_dump_json().encode()])

    assert forward(settings, 2) == 2

    assert len(receiver.bodies("/pd")) == 3, "retried up to forward_max_attempts"
    assert len(receiver.bodies("/slack")) == 1, "a 400 is final"
    dead = read_topic(kafka_bootstrap, settings.drift.dead_letter_topic, lambda got: len(got) >= 2)
    assert [d["reason"] for d in dead] == ["invalid_alert", "delivery_failed"]
    assert (
        set(dead[1]["failed"]) == {"slack", "pagerduty"}
        and dead[1]["alert"]["alert_id"] == "a1b2c3d4e5f60718"
    )
    drift = settings.drift
    assert committed_lag(kafka_bootstrap, drift.forward_group, drift.alerts_topic) == 0


def test_tail_prints_alerts(kafka_bootstrap: str, receiver: Receiver) -> None:
    settings = settings_for(kafka_bootstrap, receiver)
    publish(
        settings,
        [alert("firing").model_dump_json().encode(), b"junk", alert("resolved").model_dump_json().encode()],
    )
    out = io.StringIO()

    assert tail(settings, from_beginning=True, limits=Limits(max_messages=2, idle_timeout_s=20), out=out) == 2

    lines = out.getvalue().splitlines()
    assert "FIRING" in lines[0] and "RESOLVED" in lines[1] and "id=a1b2c3d4e5f60718" in lines[1]


def test_forward_without_destinations_refuses_to_start(capsys: pytest.CaptureFixture[str]) -> None:
    args = argparse.Namespace(
        action="forward", max_messages=1, idle_timeout=1.0, from_beginning=False, json=False
    )
    assert run_alerts(Settings(drift=DriftSettings()), args) == 2
    assert "RTML_DRIFT__SLACK_WEBHOOK_URL" in capsys.readouterr().err
