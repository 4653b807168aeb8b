"""Producers that never touch HTTP: direct requests, poison messages and the dead-letter topic."""

from __future__ import annotations

import base64
import hashlib
import uuid
from typing import Any

import orjson
import pytest

from schemas.messages import DeadLetterRecord, PredictionRecord
from schemas.wire import join_request_batch
from tests.kafka_tools import produce, read_topic
from tests.stack_fixtures import RunningStack


def direct_request(request_id: str, features: list[list[float]], **extra: object) -> bytes:
    return orjson.dumps(
        {
            "schema_version": 1,
            "request_id": request_id,
            "model": "fraud_detector",
            "features": features,
            **extra,
        }
    )


def poison_then_good(stack: RunningStack, poison: bytes, good_id: str) -> dict[str, Any]:
    """Produce ``poison`` and a good request right behind it (same key -> same partition); return
    the poison's dead letter once it is there and check that the good one was served."""
    poison_key = uuid.uuid4().hex.encode()
    produce(
        stack.bootstrap,
        stack.request_topic("fraud_detector"),
        [poison, direct_request(good_id, [[0.5] * 30])],
        key=poison_key,
    )
    dead = read_topic(
        stack.bootstrap,
        stack.namespace.dlq_topic,
        lambda rs: any(base64.b64decode(r["key"] or "") == poison_key for r in rs),
    )
    served = read_topic(
        stack.bootstrap,
        stack.namespace.predictions_topic,
        lambda rs: any(r["request_id"] == good_id for r in rs),
    )
    assert any(r["request_id"] == good_id for r in served), "the message behind the poison was not served"
    letters = [r for r in dead if base64.b64decode(r["key"] or "") == poison_key]
    assert letters, "no dead letter for the poison message"
    return letters[0]


def test_direct_producer_prediction_reaches_the_log(stack: RunningStack) -> None:
    request_id = f"txn-{uuid.uuid4().hex[:8]}"
    rows = [[0.1 * i for i in range(30)], [1.0] * 30]
    produce(stack.bootstrap, stack.request_topic("fraud_detector"), [direct_request(request_id, rows)])
    records = read_topic(
        stack.bootstrap,
        stack.namespace.predictions_topic,
        lambda rs: sum(r["request_id"] == request_id for r in rs) >= 2,
    )
    ours = sorted((r for r in records if r["request_id"] == request_id), key=lambda r: r["row"])
    assert [r["row"] for r in ours] == [0, 1]
    for record in ours:
        PredictionRecord.model_validate(record)
        assert (
            record["source"] == "kafka" and record["model"] == "fraud_detector" and record["version"] == "1"
        )
        assert record["prediction"] in (0, 1)


@pytest.mark.parametrize(
    ("poison", "reason"),
    [
        (b"\xff\xfenot json at all", "undecodable"),
        (b'{"schema_version": 1, "request_id": "p", "model": "fraud_detector"}', "invalid_request"),
        (direct_request("wrong-width", [[1.0, 2.0]]), "invalid_input"),
        (direct_request("old", [[1.0] * 30], deadline_ms=1), "expired"),
        (direct_request("bad-version", [[1.0] * 30], version="7"), "unknown_model"),
        (direct_request("evil", [[1.0] * 30], reply_to="rtml.predictions"), "invalid_request"),
    ],
)
def test_poison_message_goes_to_dlq_and_next_message_is_served(
    stack: RunningStack, poison: bytes, reason: str
) -> None:
    record = poison_then_good(stack, poison, f"after-{uuid.uuid4().hex[:8]}")
    DeadLetterRecord.model_validate(record)
    assert record["reason"] == reason, record["message"]
    assert base64.b64decode(record["value"]) == poison
    assert record["topic"] == stack.request_topic("fraud_detector")
    assert record["offset"] >= 0 and record["message"]


def test_oversized_poison_is_dead_lettered_truncated_and_the_partition_moves_on(stack: RunningStack) -> None:
    """A 900 KB undecodable request: its base64 (1.2 MB) would exceed the 1 MB message limit and
    block the partition; the dead letter keeps the first 512 KiB, the size and the hash."""
    poison = b"\xff" + uuid.uuid4().bytes * (900_000 // 16)
    record = DeadLetterRecord.model_validate(
        poison_then_good(stack, poison, f"after-big-{uuid.uuid4().hex[:8]}")
    )
    assert record.reason == "undecodable"
    assert record.value_truncated and record.value_bytes == len(poison)
    assert base64.b64decode(record.value) == poison[: 512 * 1024]
    assert record.value_sha256 == hashlib.sha256(poison).hexdigest()


def test_a_huge_key_with_a_big_poison_value_is_dead_lettered_bounded_and_the_partition_moves_on(
    stack: RunningStack,
) -> None:
    """A 250 KB key and a 700 KB undecodable value (the broker takes the 950 KB message): base64 of
    both would be ~1.27 MB, over the message limit, and the partition would be retried forever.
    The dead letter keeps the key's first 16 KiB and says both were cut."""
    key = uuid.uuid4().bytes * (250_000 // 16)
    poison = b"\xff" + uuid.uuid4().bytes * (700_000 // 16)
    good_id = f"after-huge-key-{uuid.uuid4().hex[:8]}"
    produce(
        stack.bootstrap,
        stack.request_topic("fraud_detector"),
        [poison, direct_request(good_id, [[0.5] * 30])],
        key=key,
    )
    dead = read_topic(
        stack.bootstrap,
        stack.namespace.dlq_topic,
        lambda rs: any(r.get("key_truncated") and r.get("value_bytes") == len(poison) for r in rs),
    )
    served = read_topic(
        stack.bootstrap,
        stack.namespace.predictions_topic,
        lambda rs: any(r["request_id"] == good_id for r in rs),
    )
    assert any(r["request_id"] == good_id for r in served), "the message behind the poison was not served"
    record = DeadLetterRecord.model_validate(
        next(r for r in dead if r.get("key_truncated") and r.get("value_bytes") == len(poison))
    )
    assert record.reason == "undecodable"
    assert base64.b64decode(record.key or "") == key[: 16 * 1024]
    assert record.value_truncated and record.value_sha256 == hashlib.sha256(poison).hexdigest()
    assert len(orjson.dumps(record.model_dump(mode="json"))) < 1_000_000


def test_a_batch_with_one_malformed_request_serves_the_rest(stack: RunningStack) -> None:
    """A producer's PredictRequestBatch: the request that fails the schema is dead-lettered alone
    (its own bytes, the field named); the others reach the log."""
    tag = uuid.uuid4().hex[:8]
    good = [f"batch-{tag}-ok-{i}" for i in range(2)]
    bad = orjson.dumps({"request_id": f"batch-{tag}-bad", "model": "fraud_detector", "features": "x"})
    value = join_request_batch(
        [direct_request(good[0], [[0.5] * 30]), bad, direct_request(good[1], [[0.2] * 30])]
    )
    produce(stack.bootstrap, stack.request_topic("fraud_detector"), [value])
    served = read_topic(
        stack.bootstrap,
        stack.namespace.predictions_topic,
        lambda rs: set(good) <= {r["request_id"] for r in rs},
    )
    assert set(good) <= {r["request_id"] for r in served}
    dead = read_topic(
        stack.bootstrap,
        stack.namespace.dlq_topic,
        lambda rs: any(f"batch-{tag}-bad".encode() in base64.b64decode(r["value"]) for r in rs),
    )
    letters = [r for r in dead if f"batch-{tag}" in base64.b64decode(r["value"]).decode(errors="replace")]
    assert [r["reason"] for r in letters] == ["invalid_request"] and "features" in letters[0]["message"]
    assert orjson.loads(base64.b64decode(letters[0]["value"]))["request_id"] == f"batch-{tag}-bad"
