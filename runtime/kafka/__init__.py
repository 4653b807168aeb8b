"""The Kafka layer: every client, every topic and the full-queue policy of rtml, in one place.

Nothing else in rtml calls ``confluent_kafka.Consumer``, ``Producer`` or ``AdminClient``
(the Faust app's own aiokafka clients aside, configured in ``drift/app.py``).

- :mod:`~runtime.kafka.profiles`: one named profile per client role. A profile fixes the
  librdkafka properties of its role (each with its reason); callers set only the ids and the
  choices the profile lists. The factories (:func:`new_consumer`, :func:`new_admin`,
  :class:`KafkaProducer`, :class:`PolledProducer`) add the connection settings
  (:func:`client_config`: bootstrap, security extras, TCP_NODELAY) and an ``error_cb`` to
  every client; profiles with ``broker_health`` also get a ``stats_cb`` (:class:`BrokerHealth`).
- :mod:`~runtime.kafka.topics`: the table of every topic (partitions, key, retention, cleanup
  policy); :func:`ensure_topics` is the one place topics are created.

==================  ===========================  =============================================
profile             used by                      delivery
==================  ===========================  =============================================
REQUEST_CONSUMER    workers/consume.py           auto.offset.store off; auto-commit of stored
DURABLE_PRODUCER    workers/outbox.py            acks=all, idempotent; log and dead letters
EXACTLY_ONCE_CONSUMER workers/consume.py         worker.exactly_once: offsets go in the transaction
TRANSACTIONAL_PRODUCER workers/transactional.py  worker.exactly_once: a batch's log + offsets, atomic
REPLY_PRODUCER      workers/reply.py             acks=1, linger 0; latency first
REQUEST_PRODUCER    gateway/lifecycle.py         acks=all, idempotent; requests, cache-hit log
REPLY_CONSUMER      gateway/replies.py           manual assignment; never commits
LOG_READER          drift/ingest.py              explicit commit after partials are acked
ALERT_CONSUMER      drift/alerts/forward.py      explicit commit after delivery/dead letter
ALERT_TAIL          drift/alerts/tail.py         private group; never commits
ALERT_PRODUCER      drift/alerts/forward.py      acks=all, idempotent; alert dead letters
CONTROL_READER      runtime/control.py           manual assignment from the start; never commits
CONTROL_WRITER      runtime/control.py           acks=all, idempotent; policies and model events
ARTIFACT_READER     runtime/artifacts.py         manual assignment from the start; never commits
ARTIFACT_WRITER     runtime/artifacts.py         acks=all, idempotent; chunks before their manifest
LAG_PROBE           :func:`committed_lag`        reads committed offsets; never commits
REPLY_HEARTBEAT     gateway/reply_janitor.py     commits/reads one heartbeat offset; never joins
ADMIN               :func:`ensure_topics`, ...   -
==================  ===========================  =============================================

Delivery guarantees (ARCHITECTURE.md), and the profile values that carry them:

- Requests -> predictions, at least once: REQUEST_CONSUMER has ``enable.auto.offset.store``
  False, so the auto-committer commits only offsets the worker loop stored, which it does only
  after every log record and dead letter of the batch was acknowledged by DURABLE_PRODUCER
  (``acks=all``, ``enable.idempotence``) within ``kafka.delivery_timeout_ms``; replies from
  REPLY_PRODUCER count too, but a failed reply is dropped, not retried (``acks=1``).
- Prediction log -> drift partials, at least once: LOG_READER never auto-commits; the app
  commits after Faust acknowledges the partials.
- Drift alerts -> destinations, at least once: ALERT_CONSUMER never auto-commits; an alert is
  committed after delivery or after ALERT_PRODUCER (``acks=all``) acknowledged its dead letter.
- Requests reach Kafka once: REQUEST_PRODUCER is idempotent with ``acks=all``; a request not
  acknowledged within its ``message.timeout.ms`` (``gateway.max_timeout_ms``) fails its caller.

Full queue, one policy (:meth:`KafkaProducer.produce`): when librdkafka's local queue is full
(``BufferError``), the producer serves delivery reports in 10 ms polls until the message fits,
for at most its profile's ``queue_full_wait_s``, then raises :class:`QueueFull` (a
``BufferError``) naming the client, the topic and the queue length. The waits: gateway 0 (it
runs on the event loop: the caller gets 503 at once), worker replies 0 (dropped and counted),
durable and alert producers their ``message.timeout.ms`` (every queued message is settled by
then, so only a broken producer raises; the worker treats it as a failed write and re-reads).
Waits that must cover every delivery report (the worker's drain) come from the producers'
``message.timeout.ms`` too: :func:`drain_timeout_s`.
"""

from runtime.errors import QueueFull
from runtime.kafka.admin import committed_lag, delete_topics, ensure_topics
from runtime.kafka.clients import (
    DELIVERY_REPORT_MARGIN_S,
    DeliveryCallback,
    KafkaProducer,
    PolledProducer,
    drain_timeout_s,
    new_admin,
    new_consumer,
)
from runtime.kafka.config import BrokerHealth, client_config, log_errors
from runtime.kafka.profiles import (
    ADMIN,
    ALERT_CONSUMER,
    ALERT_PRODUCER,
    ALERT_TAIL,
    ARTIFACT_READER,
    ARTIFACT_WRITER,
    CONTROL_READER,
    CONTROL_WRITER,
    DURABLE_PRODUCER,
    EXACTLY_ONCE_CONSUMER,
    LAG_PROBE,
    LOG_READER,
    PROFILES,
    REPLY_CONSUMER,
    REPLY_HEARTBEAT,
    REPLY_PRODUCER,
    REQUEST_CONSUMER,
    REQUEST_PRODUCER,
    TRANSACTIONAL_PRODUCER,
    Profile,
)
from runtime.kafka.topics import (
    STATE_TABLE,
    STEPS_TABLE,
    TopicSpec,
    artifact_topics,
    control_topics,
    drift_topics,
    gateway_topics,
    reply_topic,
    serving_topics,
    topic_table,
)

__all__ = [
    "ADMIN",
    "ALERT_CONSUMER",
    "ALERT_PRODUCER",
    "ALERT_TAIL",
    "ARTIFACT_READER",
    "ARTIFACT_WRITER",
    "CONTROL_READER",
    "CONTROL_WRITER",
    "DELIVERY_REPORT_MARGIN_S",
    "DURABLE_PRODUCER",
    "EXACTLY_ONCE_CONSUMER",
    "LAG_PROBE",
    "LOG_READER",
    "PROFILES",
    "REPLY_CONSUMER",
    "REPLY_HEARTBEAT",
    "REPLY_PRODUCER",
    "REQUEST_CONSUMER",
    "REQUEST_PRODUCER",
    "STATE_TABLE",
    "STEPS_TABLE",
    "TRANSACTIONAL_PRODUCER",
    "BrokerHealth",
    "DeliveryCallback",
    "KafkaProducer",
    "PolledProducer",
    "Profile",
    "QueueFull",
    "TopicSpec",
    "artifact_topics",
    "client_config",
    "committed_lag",
    "control_topics",
    "delete_topics",
    "drain_timeout_s",
    "drift_topics",
    "ensure_topics",
    "gateway_topics",
    "log_errors",
    "new_admin",
    "new_consumer",
    "reply_topic",
    "serving_topics",
    "topic_table",
]
