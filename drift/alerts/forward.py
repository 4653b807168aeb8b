"""``rtml alerts forward``: deliver drift alerts to Slack and PagerDuty, at least once.

One alert at a time, in topic order: deliver to every configured destination
(with retries, :mod:`drift.alerts.sinks`); if a destination still fails, write an
:class:`~schemas.drift.AlertDeadLetter` to ``drift.dead_letter_topic`` and wait
for Kafka to acknowledge it; only then commit the alert's offset. A crash before
the commit redelivers the alert (PagerDuty deduplicates on ``alert_id``; Slack
may show it twice); within a run, repeated ``event_id``s are skipped.
"""

from __future__ import annotations

import base64
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from confluent_kafka import KafkaError, Message
from pydantic import ValidationError

from drift.alerts.sinks import PagerDutySink, RetryPolicy, Sink, SlackSink, deliver
from runtime.kafka import ALERT_CONSUMER, ALERT_PRODUCER, KafkaProducer, drain_timeout_s, new_consumer
from runtime.settings import Settings
from schemas.drift import AlertDeadLetter, DriftAlert

log = logging.getLogger(__name__)

SEEN_EVENTS = 10_000


def sinks_from(settings: Settings) -> list[Sink]:
    drift = settings.drift
    sinks: list[Sink] = []
    if drift.slack_webhook_url is not None:
        sinks.append(SlackSink(drift.slack_webhook_url.get_secret_value()))
    if drift.pagerduty_routing_key is not None:
        sinks.append(PagerDutySink(drift.pagerduty_url, drift.pagerduty_routing_key.get_secret_value()))
    return sinks


@dataclass(frozen=True)
class Limits:
    max_messages: int | None = None
    idle_timeout_s: float | None = None


@dataclass
class Forwarder:
    settings: Settings
    sinks: list[Sink]
    sleep: Callable[[float], None] = time.sleep
    should_stop: Callable[[], bool] = lambda: False
    _seen: OrderedDict[str, None] = field(default_factory=OrderedDict)

    def __post_init__(self) -> None:
        drift, kafka = self.settings.drift, self.settings.kafka
        self.policy = RetryPolicy(
            drift.forward_max_attempts, drift.forward_backoff_s, drift.forward_max_backoff_s
        )
        self.consumer = new_consumer(kafka, ALERT_CONSUMER, {"group.id": drift.forward_group})
        self.producer = KafkaProducer(kafka, ALERT_PRODUCER)

    def run(self, limits: Limits | None = None) -> int:
        """Forward until stopped or a limit is reached; returns the number of alerts handled."""
        limits = limits or Limits()
        self.consumer.subscribe([self.settings.drift.alerts_topic])
        handled, idle_since = 0, time.monotonic()
        try:
            while not self.should_stop() and (limits.max_messages is None or handled < limits.max_messages):
                message = self.consumer.poll(0.5)
                if message is None or message.error() is not None:
                    if (
                        limits.idle_timeout_s is not None
                        and time.monotonic() - idle_since > limits.idle_timeout_s
                    ):
                        break
                    continue
                self.handle(message)
                handled += 1
                idle_since = time.monotonic()
        finally:
            self.producer.flush(10)
            self.consumer.close()
        return handled

    def handle(self, message: Message) -> None:
        """Deliver or dead-letter one alert, then commit its offset."""
        raw = message.value() or b""
        try:
            alert = DriftAlert.model_validate_json(raw)
        except ValidationError as exc:
            self._dead_letter(message, "invalid_alert", f"not a DriftAlert: {exc.errors()[:3]}", {}, None)
        else:
            if alert.event_id not in self._seen:
                failed = self._deliver(alert)
                if failed:
                    summary = "; ".join(f"{name}: {error}" for name, error in failed.items())
                    self._dead_letter(message, "delivery_failed", summary, failed, alert)
                self._remember(alert.event_id)
        self.consumer.commit(message=message, asynchronous=False)

    def _deliver(self, alert: DriftAlert) -> dict[str, str]:
        timeout = self.settings.drift.forward_timeout_s
        failed = {}
        for sink in self.sinks:
            error = deliver(sink, alert, self.policy, timeout, self.sleep, self.should_stop)
            if error is not None:
                failed[sink.name] = error
        return failed

    def _dead_letter(
        self, message: Message, reason: str, text: str, failed: dict[str, str], alert: DriftAlert | None
    ) -> None:
        record = AlertDeadLetter(
            reason=reason,  # type: ignore[arg-type]
            message=text,
            failed=failed,
            alert=alert,
            value=base64.b64encode(message.value() or b"").decode(),
            topic=message.topic() or "",
            partition=message.partition() or 0,
            offset=message.offset() or 0,
            failed_at_ms=time.time_ns() // 1_000_000,
        )
        errors: list[KafkaError] = []

        def on_delivery(error: KafkaError | None, _message: Message) -> None:
            if error is not None:
                errors.append(error)

        value = record.model_dump_json().encode()
        self.producer.produce(self.settings.drift.dead_letter_topic, value, message.key(), on_delivery)
        if self.producer.flush(drain_timeout_s(self.producer.delivery_timeout_s)) != 0 or errors:
            failure = errors[0].str() if errors else "no acknowledgement"
            raise RuntimeError(f"dead letter not acknowledged by Kafka ({failure}); not committing the alert")
        log.error("alert dead-lettered: %s", text, extra={"reason": reason, "offset": message.offset()})

    def _remember(self, event_id: str) -> None:
        self._seen[event_id] = None
        while len(self._seen) > SEEN_EVENTS:
            self._seen.popitem(last=False)
