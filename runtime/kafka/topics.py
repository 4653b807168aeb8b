"""The table of every topic rtml uses: name, partitions, retention, cleanup policy, creator.

Brokers run with ``auto.create.topics.enable=false``, so a topic exists only if
:func:`runtime.kafka.ensure_topics` created it from a spec built here (Faust creates its
table changelogs itself, with the partitions listed here). Each process ensures what it needs
at start: workers :func:`serving_topics`, the gateway :func:`gateway_topics`, the drift app
:func:`drift_topics`; ``rtml topics ensure`` all of them but the per-gateway reply topics.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from runtime.settings import DriftSettings, KafkaSettings, Settings

REPLY_RETENTION_MS = 60_000
"""Replies are worthless after their deadline (gateway.max_timeout_ms, 60 s); keep the topic small."""
PARTIALS_RETENTION_MS = 24 * 3600 * 1000
"""Partial aggregates feed the drift tables; a day covers any window and a restart's replay."""
MODEL_EVENTS_RETENTION_MS = 30 * 24 * 3600 * 1000
"""Lifecycle events are an audit trail: a month covers any post-mortem."""
STEPS_TABLE = "drift-steps"
"""Faust table of per-step sub-histograms (changelog ``<app_id>-drift-steps-changelog``)."""
STATE_TABLE = "drift-state"
"""Faust table of per-model detector state (changelog ``<app_id>-drift-state-changelog``)."""


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    key: str
    """What messages are keyed by (documentation; ordering holds per key)."""
    retention_ms: int | None = None
    """None: the broker's log.retention (7 days by default)."""
    cleanup_policy: Literal["delete", "compact"] = "delete"
    created_by: Literal["rtml", "faust"] = "rtml"

    def config(self) -> dict[str, str]:
        """Topic-level configuration given to CreateTopics."""
        config: dict[str, str] = {"cleanup.policy": self.cleanup_policy}
        if self.retention_ms is not None:
            config["retention.ms"] = str(self.retention_ms)
        return config


def request_topic(kafka: KafkaSettings, model: str) -> TopicSpec:
    """One per model; its partitions bound the workers of the model."""
    return TopicSpec(kafka.request_topic(model), kafka.request_partitions, "correlation id")


def reply_topic(kafka: KafkaSettings, instance_id: str) -> TopicSpec:
    """One per gateway instance, read by manual assignment; deleted on graceful shutdown, or by
    another gateway's janitor once its heartbeat stopped (gateway/reply_janitor.py)."""
    return TopicSpec(f"{kafka.reply_topic_prefix}{instance_id}", 1, "correlation id", REPLY_RETENTION_MS)


def prediction_log(kafka: KafkaSettings) -> TopicSpec:
    """Every prediction, cache hits included."""
    return TopicSpec(kafka.predictions_topic, kafka.log_partitions, "request id")


def dead_letters(kafka: KafkaSettings) -> TopicSpec:
    """Requests that could not be decoded, validated or served, with their reason."""
    return TopicSpec(kafka.dlq_topic, kafka.log_partitions, "original key")


def drift_partials(drift: DriftSettings) -> TopicSpec:
    """Partial aggregates; co-partitioned with the Faust table changelogs (same partitions)."""
    return TopicSpec(drift.partials_topic, drift.partitions, "model|version", PARTIALS_RETENTION_MS)


def drift_alerts(drift: DriftSettings) -> TopicSpec:
    """One DriftAlert per state change, in order (one partition)."""
    return TopicSpec(drift.alerts_topic, 1, "alert id")


def alert_dead_letters(drift: DriftSettings) -> TopicSpec:
    """Alerts the forwarder could not deliver."""
    return TopicSpec(drift.dead_letter_topic, 1, "alert id")


def changelog(drift: DriftSettings, table: str) -> TopicSpec:
    """A Faust table changelog: compacted, created by Faust with the partials' partitions."""
    return TopicSpec(
        f"{drift.app_id}-{table}-changelog", drift.partitions, "table key", None, "compact", "faust"
    )


def control(kafka: KafkaSettings) -> TopicSpec:
    """The latest ModelPolicy of every model (runtime/control.py): compacted, so it holds one
    record per model forever; one partition, so changes are totally ordered."""
    return TopicSpec(kafka.control_topic, 1, "model name", None, "compact")


def model_events(kafka: KafkaSettings) -> TopicSpec:
    """One ModelEvent per lifecycle change, for subscribers; a month of history."""
    return TopicSpec(kafka.model_events_topic, 1, "model name", MODEL_EVENTS_RETENTION_MS)


def artifacts(kafka: KafkaSettings) -> TopicSpec:
    """Model artifacts in checksummed chunks (runtime/artifacts.py): compacted, kept forever."""
    return TopicSpec(kafka.artifacts_topic, 1, "model/version/sha256/chunk", None, "compact")


def artifact_topics(kafka: KafkaSettings) -> list[TopicSpec]:
    return [artifacts(kafka)]


def control_topics(kafka: KafkaSettings) -> list[TopicSpec]:
    return [control(kafka), model_events(kafka)]


def serving_topics(kafka: KafkaSettings, models: Iterable[str]) -> list[TopicSpec]:
    """What workers need: the request topic of each model, the prediction log, dead letters and
    the control plane."""
    return [
        *(request_topic(kafka, model) for model in models),
        prediction_log(kafka),
        dead_letters(kafka),
        *control_topics(kafka),
        artifacts(kafka),
    ]


def gateway_topics(kafka: KafkaSettings, instance_id: str, models: Iterable[str]) -> list[TopicSpec]:
    """What a gateway needs: its reply topic, and what it publishes to (requests, the log)."""
    return [
        reply_topic(kafka, instance_id),
        *(request_topic(kafka, m) for m in models),
        prediction_log(kafka),
        *control_topics(kafka),
        artifacts(kafka),
    ]


def drift_topics(settings: Settings) -> list[TopicSpec]:
    """What the drift app needs (its changelogs are Faust's to create)."""
    drift = settings.drift
    return [
        prediction_log(settings.kafka),
        drift_partials(drift),
        drift_alerts(drift),
        alert_dead_letters(drift),
    ]


def topic_table(
    settings: Settings, models: Iterable[str] = (), gateway_ids: Iterable[str] = ()
) -> list[TopicSpec]:
    """Every topic rtml uses, for ``models`` and gateway instances ``gateway_ids``, once each."""
    kafka, drift = settings.kafka, settings.drift
    specs = [
        *(reply_topic(kafka, instance) for instance in gateway_ids),
        *serving_topics(kafka, models),
        *drift_topics(settings),
        changelog(drift, STEPS_TABLE),
        changelog(drift, STATE_TABLE),
    ]
    return list({spec.name: spec for spec in specs}.values())
