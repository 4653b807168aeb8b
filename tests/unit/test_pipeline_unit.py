"""The worker pipeline's own logic, with the Kafka/Redis edges replaced by recorders
(the real edges are covered by the stack tests) and a real ONNX model."""

from __future__ import annotations

import base64
from typing import Any

import numpy as np
import orjson
import pytest
from confluent_kafka import Message

from runtime.cache_keys import cache_key, encode_value, version_tag
from runtime.settings import load_settings
from schemas.messages import PredictReplyBatch, PredictRequest
from schemas.wire import join_request_batch
from tests.model_fixtures import DemoModels
from workers.inference import Predictions, RuntimeTable
from workers.pipeline import Pipeline

PREFIX = "unit:p:"


class RecordingCache:
    def __init__(self, stored: dict[str, bytes] | None = None) -> None:
        self.stored = dict(stored or {})
        self.gets: list[list[str]] = []

    def get_many(self, keys: list[str]) -> list[bytes | None]:
        self.gets.append(list(keys))
        return [self.stored.get(key) for key in keys]

    def put_many(self, items: list[tuple[str, bytes]]) -> None:
        self.stored.update(items)


class RecordingOutbox:
    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []

    def send(self, topic: str, value: bytes, key: bytes | None = None) -> None:
        self.sent.append((topic, orjson.loads(value)))

    def send_many(self, topic: str, values: list[bytes], key: bytes | None = None) -> None:
        for value in values:
            self.send(topic, value, key)

    def of(self, topic: str) -> list[dict[str, Any]]:
        return [value for sent_topic, value in self.sent if sent_topic == topic]


class RecordingReplies:
    def __init__(self) -> None:
        self.sent: list[tuple[str, str, dict[str, Any]]] = []
        """(topic, request id, reply) of every reply, in order."""
        self.messages = 0

    def send(self, topic: str, value: bytes) -> None:
        batch = PredictReplyBatch.model_validate_json(value)
        self.messages += 1
        self.sent.extend((topic, reply.request_id, reply.model_dump()) for reply in batch.replies)

    def poll(self) -> None:
        pass


def message(offset: int, value: bytes) -> Message:
    return Message(topic="req", partition=0, offset=offset, key=b"k", value=value)


def request(request_id: str, rows: list[list[float]], **extra: object) -> bytes:
    return orjson.dumps({"request_id": request_id, "model": "iris_classifier", "features": rows, **extra})


@pytest.fixture(scope="module")
def runtimes(demo_models: DemoModels) -> RuntimeTable:
    return RuntimeTable(demo_models.registry("iris_classifier"), "iris_classifier")


def make(
    runtimes: RuntimeTable, cache: RecordingCache | None = None, cache_direct: bool = True
) -> tuple[Pipeline, Any, Any, Any]:
    """``cache_direct``: these requests come with ``source: kafka`` (the schema's default), so the
    cache tests opt in to caching them; the default policy has its own test."""
    settings = load_settings(redis={"key_prefix": PREFIX, "cache_direct_requests": cache_direct})
    cache = cache or RecordingCache()
    outbox, replies = RecordingOutbox(), RecordingReplies()
    return Pipeline(settings, runtimes, cache, outbox, replies, "w1"), cache, outbox, replies  # type: ignore[arg-type]


def test_every_message_ends_as_prediction_or_dead_letter(runtimes: RuntimeTable) -> None:
    pipeline, cache, outbox, replies = make(runtimes)
    settings = load_settings()
    reply_to = f"{settings.kafka.reply_topic_prefix}gw"
    batch = [
        message(0, request("a", [[5.1, 3.5, 1.4, 0.2], [7.3, 2.9, 6.3, 1.8]], reply_to=reply_to)),
        message(1, b"{not json"),
        message(2, request("late", [[1, 2, 3, 4]], deadline_ms=1)),
        message(3, request("narrow", [[1, 2, 3]], reply_to=reply_to)),
        message(4, request("b", [[6.2, 2.9, 4.3, 1.3]])),
    ]
    pipeline.process(batch)
    log = outbox.of(settings.kafka.predictions_topic)
    assert [(r["request_id"], r["row"], r["prediction"]) for r in log] == [
        ("a", 0, 0),
        ("a", 1, 2),
        ("b", 0, 1),
    ]
    dead = outbox.of(settings.kafka.dlq_topic)
    assert sorted((d["offset"], d["reason"]) for d in dead) == [
        (1, "undecodable"),
        (2, "expired"),
        (3, "invalid_input"),
    ]
    answered = {request_id: value for _topic, request_id, value in replies.sent}
    assert answered["a"]["ok"] and answered["a"]["predictions"] == [0, 2]
    assert not answered["narrow"]["ok"] and "expects 4" in answered["narrow"]["error"]["message"]
    assert "late" not in answered  # its gateway already answered 504
    assert len(cache.gets) == 1  # one MGET for the whole batch


def test_cache_hits_skip_the_model_and_are_marked(runtimes: RuntimeTable) -> None:
    row = [5.0, 3.0, 1.0, 0.5]
    latest = runtimes.resolve(None)[0].metadata
    tag = version_tag(latest.version, latest.onnx_sha256)
    stored = {cache_key(PREFIX, "iris_classifier", tag, row): encode_value(2, [0.0, 0.0, 1.0])}
    pipeline, _cache, outbox, _ = make(runtimes, RecordingCache(stored))
    pipeline.process([message(0, request("hit", [row, [6.0, 3.0, 4.0, 1.0]]))])
    log = outbox.of(load_settings().kafka.predictions_topic)
    assert [(r["prediction"], r["from_cache"]) for r in log] == [(2, True), (1, False)]


def test_by_default_only_requests_from_the_gateway_use_the_cache(runtimes: RuntimeTable) -> None:
    row = [5.0, 3.0, 1.0, 0.5]
    latest = runtimes.resolve(None)[0].metadata
    tag = version_tag(latest.version, latest.onnx_sha256)
    key = cache_key(PREFIX, "iris_classifier", tag, row)
    pipeline, cache, outbox, _ = make(
        runtimes, RecordingCache({key: encode_value(2, [0.0, 0.0, 1.0])}), False
    )
    pipeline.process([message(0, request("direct", [row, [6.0, 3.0, 4.0, 1.0]]))])
    assert cache.gets == []  # neither looked up ...
    assert list(cache.stored) == [key]  # ... nor stored
    pipeline.process(
        [
            message(1, request("direct", [row])),
            message(2, request("via-gateway", [row, [6.1, 3.0, 4.0, 1.0]], source="http")),
        ]
    )
    assert len(cache.gets) == 1 and len(cache.gets[0]) == 2  # only the gateway's rows
    assert len(cache.stored) == 2  # its miss is stored
    log = outbox.of(load_settings().kafka.predictions_topic)
    # The stored answer (2) is not the model's (0): only the gateway's request was served from it.
    assert [(r["request_id"], r["prediction"], r["from_cache"]) for r in log] == [
        ("direct", 0, False),
        ("direct", 1, False),
        ("direct", 0, False),
        ("via-gateway", 2, True),
        ("via-gateway", 1, False),
    ]


def test_a_request_that_breaks_the_model_is_isolated(
    runtimes: RuntimeTable, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime, _route = runtimes.resolve(None)
    real_predict = runtime.predict

    def fragile(rows: np.ndarray) -> Predictions:
        if (rows == 666).any():
            raise RuntimeError("kernel exploded")
        return real_predict(rows)

    monkeypatch.setattr(runtime, "predict", fragile)
    pipeline, _cache, outbox, _ = make(runtimes)
    pipeline.process(
        [
            message(0, request("ok1", [[5.1, 3.5, 1.4, 0.2]])),
            message(1, request("bad", [[666, 1, 1, 1]])),
            message(2, request("ok2", [[7.3, 2.9, 6.3, 1.8]])),
        ]
    )
    settings = load_settings()
    assert [r["request_id"] for r in outbox.of(settings.kafka.predictions_topic)] == ["ok1", "ok2"]
    dead = outbox.of(settings.kafka.dlq_topic)
    assert [(d["request_id"], d["reason"]) for d in dead] == [("bad", "model_error")]
    assert "kernel exploded" in dead[0]["message"]


def test_a_request_batch_is_served_request_by_request(runtimes: RuntimeTable) -> None:
    """A PredictRequestBatch message: each request predicted, logged or dead-lettered on its own
    (the dead letter keeps that request alone), and every reply for one gateway in one message."""
    pipeline, _cache, outbox, replies = make(runtimes)
    reply_to = f"{load_settings().kafka.reply_topic_prefix}gw"
    value = join_request_batch(
        [
            request("ok-1", [[5.1, 3.5, 1.4, 0.2]], reply_to=reply_to),
            request("narrow", [[1, 2, 3]], reply_to=reply_to),
            request("late", [[1, 2, 3, 4]], reply_to=reply_to, deadline_ms=1),
            request("ok-2", [[6.2, 2.9, 4.3, 1.3], [7.3, 2.9, 6.3, 1.8]], reply_to=reply_to),
        ]
    )
    pipeline.process([message(7, value)])
    settings = load_settings()
    logged = outbox.of(settings.kafka.predictions_topic)
    assert sorted((r["request_id"], r["row"]) for r in logged) == [("ok-1", 0), ("ok-2", 0), ("ok-2", 1)]
    dead = {d["request_id"]: d for d in outbox.of(settings.kafka.dlq_topic)}
    assert {k: d["reason"] for k, d in dead.items()} == {"narrow": "invalid_input", "late": "expired"}
    kept = PredictRequest.model_validate_json(base64.b64decode(dead["narrow"]["value"]))
    assert kept.request_id == "narrow" and dead["narrow"]["offset"] == 7
    assert replies.messages == 1  # one message for the gateway, expired request unanswered
    assert [(rid, reply["ok"]) for _t, rid, reply in replies.sent] == [
        ("narrow", False),
        ("ok-1", True),
        ("ok-2", True),
    ]


def test_one_malformed_request_in_a_batch_does_not_take_the_others_down(runtimes: RuntimeTable) -> None:
    """Only the request that fails the schema is dead-lettered (alone, with the field named); the
    rest of its PredictRequestBatch is served."""
    pipeline, _cache, outbox, _replies = make(runtimes)
    bad = b'{"request_id":"bad","model":"iris_classifier","features":"not rows"}'
    value = join_request_batch(
        [request("ok-1", [[5.1, 3.5, 1.4, 0.2]]), bad, request("ok-2", [[6.2, 2.9, 4.3, 1.3]])]
    )
    pipeline.process([message(3, value)])
    settings = load_settings()
    assert sorted(r["request_id"] for r in outbox.of(settings.kafka.predictions_topic)) == ["ok-1", "ok-2"]
    dead = outbox.of(settings.kafka.dlq_topic)
    assert [d["reason"] for d in dead] == ["invalid_request"] and "features" in dead[0]["message"]
    assert orjson.loads(base64.b64decode(dead[0]["value"]))["request_id"] == "bad"


def test_a_batch_with_a_broken_envelope_is_dead_lettered_whole(runtimes: RuntimeTable) -> None:
    pipeline, _cache, outbox, _replies = make(runtimes)
    value = b'{"schema_version":1,"kind":"request_batch","requests":[]}'  # min_length 1
    pipeline.process([message(4, value)])
    settings = load_settings()
    assert outbox.of(settings.kafka.predictions_topic) == []
    dead = outbox.of(settings.kafka.dlq_topic)
    assert [d["reason"] for d in dead] == ["invalid_request"] and base64.b64decode(dead[0]["value"]) == value
