"""The control plane on Kafka: every process follows the compacted ``rtml.control`` topic.

Why a compacted topic: it needs no infrastructure beyond the Kafka every process already uses;
compaction keeps the latest :class:`~schemas.control.ModelPolicy` of every model forever, so a
process that starts later reads the same state from the beginning; one partition orders every
change. A :class:`ControlView` reads it from the start at boot (``start`` returns once it has
read to the end) and then follows it in a thread, calling ``on_change`` with each policy that
changed; a held fetch of 500 ms makes a change visible everywhere well within the promised 5 s
at two idle fetches a second per process.

Writers (``rtml models ...`` and the gateway's admin endpoints) compute the next policy with
:mod:`runtime.model_policy` from the state they read, and publish it with :class:`ControlWriter`
together with a :class:`~schemas.control.ModelEvent`. Two operators changing one model at the
same instant: the later record wins everywhere (compaction keeps it; readers apply every record
in offset order), and both events are on the events topic.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable

from confluent_kafka import OFFSET_BEGINNING, KafkaError, TopicPartition
from pydantic import ValidationError

from runtime.clock import now_ms
from runtime.errors import Unavailable
from runtime.kafka import (
    CONTROL_READER,
    CONTROL_WRITER,
    KafkaProducer,
    control_topics,
    ensure_topics,
    new_consumer,
)
from runtime.settings import KafkaSettings
from schemas.control import EventAction, ModelEvent, ModelPolicy

log = logging.getLogger(__name__)

POLL_S = 1.0
BOOT_TIMEOUT_S = 30.0
"""How long a process waits at start to read the control topic to its end before giving up."""

OnChange = Callable[[ModelPolicy], None]


class ControlView:
    """The latest policy of every model, followed from the control topic in a daemon thread."""

    def __init__(self, kafka: KafkaSettings, client_id: str, on_change: OnChange | None = None) -> None:
        self._kafka = kafka
        self._client_id = client_id
        self._on_change = on_change
        self._policies: dict[str, ModelPolicy] = {}
        self._applied: dict[str, int] = {}
        """Revision per model whose on_change has run (what wait_for waits for)."""
        self._caught_up = threading.Event()
        self._stop = threading.Event()
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None
        self.failure: str | None = None

    # -- reading ------------------------------------------------------------------------

    def policy(self, model: str) -> ModelPolicy | None:
        return self._policies.get(model)

    def policies(self) -> dict[str, ModelPolicy]:
        return dict(self._policies)

    @property
    def ready(self) -> bool:
        """Read to the end once, and still following."""
        return self._caught_up.is_set() and self._thread is not None and self._thread.is_alive()

    def wait_for(self, model: str, revision: int, timeout_s: float) -> bool:
        """Until this view holds ``model`` at ``revision`` or later (read-your-writes)."""
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while True:
                if self._applied.get(model, -1) >= revision:
                    return True
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._changed.wait(left)

    # -- lifecycle ----------------------------------------------------------------------

    def start(self, timeout_s: float = BOOT_TIMEOUT_S) -> None:
        """Start following; returns once the topic was read to its end (raises Unavailable if it
        was not within ``timeout_s``: a process that serves must not guess the defaults)."""
        self._thread = threading.Thread(target=self._follow, name="control-view", daemon=True)
        self._thread.start()
        if not self._caught_up.wait(timeout_s):
            self.stop()
            raise Unavailable(
                f"could not read the control topic {self._kafka.control_topic} within {timeout_s:.0f} s"
                f"{': ' + self.failure if self.failure else ''}"
            )

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)

    def _follow(self) -> None:
        consumer = new_consumer(
            self._kafka,
            CONTROL_READER,
            {"client.id": self._client_id, "group.id": f"rtml.control.{uuid.uuid4().hex}"},
        )
        try:
            consumer.assign([TopicPartition(self._kafka.control_topic, 0, OFFSET_BEGINNING)])
            while not self._stop.is_set():
                message = consumer.poll(POLL_S)
                if message is None:
                    continue
                error = message.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        self._caught_up.set()
                    else:
                        self.failure = str(error)
                        log.warning("control topic read error: %s", error)
                    continue
                self._apply(message.key(), message.value())
        except Exception as exc:  # the view must say it stopped, not serve stale state silently
            self.failure = repr(exc)
            log.exception("control view stopped")
        finally:
            consumer.close()

    def _apply(self, key: bytes | None, value: bytes | None) -> None:
        if key is None:
            return
        model = key.decode(errors="replace")
        if value is None:  # a tombstone: the model's record was deleted
            with self._changed:
                self._policies.pop(model, None)
                self._applied.pop(model, None)
                self._changed.notify_all()
            return
        try:
            policy = ModelPolicy.model_validate_json(value)
        except ValidationError as exc:
            log.error("ignoring an invalid control record", extra={"model": model, "error": str(exc)[:300]})
            return
        with self._changed:
            unchanged = self._policies.get(model) == policy
            self._policies[model] = policy
        if not unchanged and self._on_change is not None:
            try:
                self._on_change(policy)
            except Exception:
                log.exception("applying a model policy failed", extra={"model": model})
        with self._changed:  # waiters wake once the change is applied, not just read
            self._applied[model] = policy.revision
            self._changed.notify_all()


def read_policies(kafka: KafkaSettings, timeout_s: float = BOOT_TIMEOUT_S) -> dict[str, ModelPolicy]:
    """Every model's current policy, read once (command-line tools)."""
    ensure_topics(kafka, control_topics(kafka))
    view = ControlView(kafka, "rtml-cli-control")
    view.start(timeout_s)
    try:
        return view.policies()
    finally:
        view.stop()


class ControlWriter:
    """Publishes a policy and its event, acknowledged by every replica before it returns."""

    def __init__(self, kafka: KafkaSettings, client_id: str) -> None:
        self._kafka = kafka
        self._client_id = client_id
        self._client: KafkaProducer | None = None
        self._lock = threading.Lock()
        self._timeout_s = CONTROL_WRITER.message_timeout_ms(kafka) / 1000

    @property
    def _producer(self) -> KafkaProducer:
        """Created on the first change: most processes that can write never do (idle cost)."""
        with self._lock:
            if self._client is None:
                self._client = KafkaProducer(self._kafka, CONTROL_WRITER, {"client.id": self._client_id})
            return self._client

    def publish(self, policy: ModelPolicy, action: EventAction, version: str | None = None) -> ModelEvent:
        event = ModelEvent(
            model=policy.model,
            action=action,
            revision=policy.revision,
            version=version,
            default=policy.default,
            detail=policy.change,
            at_ms=now_ms(),
            by=policy.updated_by,
        )
        failures: list[str] = []

        def delivered(error: KafkaError | None, _message: object) -> None:
            if error is not None:
                failures.append(str(error))

        key = policy.model.encode()
        self._producer.produce(
            self._kafka.control_topic, policy.model_dump_json().encode(), key, on_delivery=delivered
        )
        self._producer.produce(
            self._kafka.model_events_topic, event.model_dump_json().encode(), key, on_delivery=delivered
        )
        left = self._producer.flush(self._timeout_s + 1)
        if failures or left:
            raise Unavailable(f"the control topic did not acknowledge the change: {failures or 'timed out'}")
        log.info(
            "model policy changed",
            extra={"model": policy.model, "revision": policy.revision, "change": policy.change},
        )
        return event

    def close(self) -> None:
        if self._client is not None:
            self._client.flush(1.0)


def publish_change(
    kafka: KafkaSettings,
    policy: ModelPolicy,
    action: EventAction,
    version: str | None = None,
    client_id: str = "rtml-cli",
) -> ModelEvent:
    """One change from a short-lived tool: ensure the topics, publish, close."""
    ensure_topics(kafka, control_topics(kafka))
    writer = ControlWriter(kafka, client_id)
    try:
        return writer.publish(policy, action, version)
    finally:
        writer.close()
