"""Every hand-written encoder against its schema, both of them: the pydantic model in
schemas/messages.py (which must also give back exactly what was encoded, nothing coerced or
dropped) and the committed JSON Schema export in schemas/json/ (what producers in other
languages validate against).

Encoders: schemas.wire.encode_request and join_request_batch (gateway -> workers),
schemas.wire.encode_prediction_record (workers and the gateway's cache hits -> prediction log),
workers.codec.encode_reply / encode_error_reply inside encode_reply_batch (workers -> gateway),
workers.codec.encode_dead_letter (workers -> DLQ).
"""

from __future__ import annotations

import base64
import hashlib
from functools import cache
from typing import Any

import jsonschema
import orjson
from confluent_kafka import Message
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from runtime import errors
from schemas.control import ROUTES
from schemas.export import EXPORT_DIR
from schemas.messages import (
    ALL_MESSAGES,
    DeadLetterRecord,
    PredictionRecord,
    PredictReply,
    PredictReplyBatch,
    PredictRequest,
    PredictRequestBatch,
)
from schemas.wire import (
    encode_prediction_record,
    encode_prediction_records,
    encode_request,
    is_request_batch,
    join_request_batch,
)
from workers.codec import (
    DEAD_LETTER_KEY_LIMIT,
    DEAD_LETTER_VALUE_LIMIT,
    Rejected,
    encode_dead_letter,
    encode_error_reply,
    encode_reply,
    encode_reply_batch,
    encode_reply_batches,
)

finite = st.floats(allow_nan=False, allow_infinity=False)
unit_interval = st.floats(min_value=0.0, max_value=1.0)
millis = st.integers(min_value=0, max_value=2**53)
short_text = st.text(max_size=40)
labels = st.one_of(st.integers(min_value=-(2**53), max_value=2**53), st.text(max_size=20), finite)
request_ids = st.text(min_size=1, max_size=128)
model_names = st.text(min_size=1, max_size=64)
versions = st.from_regex(r"[0-9]{1,6}", fullmatch=True)
sources = st.sampled_from(["http", "kafka"])
trace_ids = st.tuples(
    st.text(alphabet="0123456789abcdef", min_size=32, max_size=32),
    st.text(alphabet="0123456789abcdef", min_size=16, max_size=16),
)
PROPERTY = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@cache
def _validator(name: str) -> jsonschema.protocols.Validator:
    schema = orjson.loads((EXPORT_DIR / f"{name}.schema.json").read_bytes())
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)  # type: ignore[no-any-return]


def check(raw: bytes, model: type[BaseModel]) -> Any:
    """``raw`` validates against ``model`` and its exported JSON Schema, and the model gives back
    exactly the encoded document (defaults of omitted fields aside). Returns the parsed model instance."""
    name = next(key for key, value in ALL_MESSAGES.items() if value is model)
    document = orjson.loads(raw)
    errors_found = sorted(_validator(name).iter_errors(document), key=str)
    assert not errors_found, f"{name}: {errors_found[0].message} at {list(errors_found[0].absolute_path)}"
    parsed = model.model_validate_json(raw)
    assert parsed.model_dump(mode="json", exclude_unset=True) == document
    return parsed


def test_every_message_has_an_encoder_checked_here() -> None:
    checked = {
        PredictRequest,
        PredictRequestBatch,
        PredictReply,
        PredictReplyBatch,
        PredictionRecord,
        DeadLetterRecord,
    }
    assert set(ALL_MESSAGES.values()) == checked, "a new message needs its encoder checked in this file"


# -- requests -----------------------------------------------------------------------------


@st.composite
def requests(draw: st.DrawFn) -> dict[str, Any]:
    return {
        "request_id": draw(request_ids),
        "model": draw(model_names),
        "version": draw(st.none() | versions),
        "features": draw(st.lists(st.lists(finite, max_size=8), min_size=1, max_size=4)),
        "reply_to": draw(st.none() | short_text),
        "deadline_ms": draw(st.none() | millis),
        "use_cache": draw(st.booleans()),
        "source": draw(sources),
        "sent_at_ms": draw(st.none() | millis),
        "routing_key": draw(st.none() | st.text(min_size=1, max_size=256)),
        "route": draw(st.none() | st.sampled_from(ROUTES)),
        "correlation_id": draw(st.none() | st.text(min_size=1, max_size=64)),
        **_trace_context(draw),
    }


def _trace_context(draw: st.DrawFn) -> dict[str, str | None]:
    """traceparent (written only when set) and tracestate (only with a traceparent)."""
    traceparent = draw(st.none() | st.text(min_size=1, max_size=128))
    state = draw(st.none() | st.text(min_size=1, max_size=512)) if traceparent is not None else None
    return {"traceparent": traceparent, "tracestate": state}


@PROPERTY
@given(requests())
def test_encode_request(fields: dict[str, Any]) -> None:
    request = check(encode_request(**fields), PredictRequest)
    assert request.model_dump(exclude={"schema_version"}) == fields


@PROPERTY
@given(st.lists(requests(), min_size=1, max_size=6))
def test_join_request_batch(many: list[dict[str, Any]]) -> None:
    raw = join_request_batch([encode_request(**fields) for fields in many])
    batch = check(raw, PredictRequestBatch)
    assert [r.model_dump(exclude={"schema_version"}) for r in batch.requests] == many
    assert is_request_batch(raw)


# -- prediction log -------------------------------------------------------------------------


@PROPERTY
@given(
    row=st.integers(min_value=0, max_value=10_000),
    features=st.lists(finite, max_size=8),
    prediction=labels,
    probabilities=st.none() | st.lists(unit_interval, max_size=5),
    top_probability=st.booleans(),
    served_by=st.sampled_from(["gateway", "worker"]),
    sent_at_ms=st.none() | millis,
    latency=st.integers(min_value=0, max_value=60_000),
    data=st.data(),
)
def test_encode_prediction_record(
    row: int,
    features: list[float],
    prediction: object,
    probabilities: list[float] | None,
    top_probability: bool,
    served_by: str,
    sent_at_ms: int | None,
    latency: int,
    data: st.DataObject,
) -> None:
    predicted_at_ms = (sent_at_ms or 0) + latency
    raw = encode_prediction_record(
        request_id=data.draw(request_ids),
        row=row,
        model=data.draw(model_names),
        version=data.draw(versions),
        features=features,
        prediction=prediction,  # type: ignore[arg-type]
        probabilities=probabilities,
        from_cache=data.draw(st.booleans()),
        source=data.draw(sources),
        predicted_at_ms=predicted_at_ms,
        sent_at_ms=sent_at_ms,
        served_by=served_by,
        top_probability=top_probability,
        route=data.draw(st.sampled_from(ROUTES)),
        trace=(trace := data.draw(st.none() | trace_ids)),
    )
    record = check(raw, PredictionRecord)
    assert (record.trace_id, record.span_id) == (trace or (None, None))
    expected = max(probabilities) if probabilities and top_probability else None
    assert record.probability == expected
    assert record.latency_ms == (None if sent_at_ms is None else float(latency))


@PROPERTY
@given(
    rows=st.lists(
        st.tuples(
            st.lists(finite, max_size=6),
            labels,
            st.none() | st.lists(unit_interval, max_size=4),
            st.booleans(),
        ),
        min_size=1,
        max_size=6,
    ),
    top_probability=st.booleans(),
    sent_at_ms=st.none() | millis,
    data=st.data(),
)
def test_encode_prediction_records_equals_one_record_per_row(
    rows: list[tuple[list[float], Any, list[float] | None, bool]],
    top_probability: bool,
    sent_at_ms: int | None,
    data: st.DataObject,
) -> None:
    """The batch encoder the workers use writes each row's record byte for byte as the per-row one."""
    common: dict[str, Any] = {
        "request_id": data.draw(request_ids),
        "model": data.draw(model_names),
        "version": data.draw(versions),
        "source": data.draw(sources),
        "predicted_at_ms": (sent_at_ms or 0) + 5,
        "sent_at_ms": sent_at_ms,
        "served_by": "worker",
        "top_probability": top_probability,
        "route": data.draw(st.sampled_from(ROUTES)),
        "trace": data.draw(st.none() | trace_ids),
    }
    features, predictions, probabilities, from_cache = (list(column) for column in zip(*rows, strict=True))
    batch = encode_prediction_records(
        features=features,
        predictions=predictions,
        probabilities=probabilities,
        from_cache=from_cache,
        **common,
    )
    one_by_one = [
        encode_prediction_record(
            row=index, features=f, prediction=label, probabilities=p, from_cache=cached, **common
        )
        for index, (f, label, p, cached) in enumerate(rows)
    ]
    assert batch == one_by_one
    for raw in batch:
        check(raw, PredictionRecord)


# -- replies ----------------------------------------------------------------------------------


def _request(fields: dict[str, Any]) -> PredictRequest:
    return PredictRequest.model_validate(fields)


@PROPERTY
@given(
    fields=requests(),
    version=versions,
    rows=st.integers(min_value=1, max_value=5),
    classes=st.integers(min_value=0, max_value=4),
    data=st.data(),
)
def test_encode_reply(
    fields: dict[str, Any], version: str, rows: int, classes: int, data: st.DataObject
) -> None:
    """``classes`` 0: a regressor (no probabilities, each row's entry None); else each row has
    ``classes`` probabilities."""
    probabilities: list[list[float] | None] = [
        data.draw(st.lists(unit_interval, min_size=classes, max_size=classes)) if classes else None
        for _ in range(rows)
    ]
    predictions = data.draw(st.lists(labels, min_size=rows, max_size=rows))
    from_cache = data.draw(st.lists(st.booleans(), min_size=rows, max_size=rows))
    worker_ms = data.draw(st.floats(min_value=0, max_value=1e6))
    route = data.draw(st.sampled_from(ROUTES))
    raw = orjson.dumps(
        encode_reply(_request(fields), version, predictions, probabilities, from_cache, worker_ms, route)
    )
    reply = check(raw, PredictReply)
    assert reply.ok and reply.error is None and reply.request_id == fields["request_id"]
    assert reply.predictions == predictions and reply.from_cache == from_cache
    assert reply.probabilities == (probabilities if classes else None)


REPLY_ERRORS = [
    errors.BadRequest("features: Field required (1 error(s))"),
    errors.Undecodable("empty message value"),
    errors.InvalidInput("features[0] has 3 values; model 'iris_classifier' v1 expects 4"),
    errors.ModelNotFound("model 'nope' not found; available models: iris_classifier"),
    errors.DeadlineExceeded("deadline passed 12 ms before the worker got it"),
    errors.ModelError("kernel exploded"),
]


@PROPERTY
@given(fields=requests(), error=st.sampled_from(REPLY_ERRORS))
def test_encode_error_reply(fields: dict[str, Any], error: errors.RtmlError) -> None:
    reply = check(orjson.dumps(encode_error_reply(_request(fields), error)), PredictReply)
    assert not reply.ok and reply.predictions is None and reply.version == fields["version"]
    assert reply.error is not None and (reply.error.code, reply.error.message) == (error.code, error.message)


@PROPERTY
@given(many=st.lists(requests(), min_size=1, max_size=6), error=st.sampled_from(REPLY_ERRORS))
def test_encode_reply_batch(many: list[dict[str, Any]], error: errors.RtmlError) -> None:
    replies = [
        encode_reply(_request(fields), "1", [0], [[0.5, 0.5]], [False], 1.0)
        if index % 2
        else encode_error_reply(_request(fields), error)
        for index, fields in enumerate(many)
    ]
    batch = check(encode_reply_batch(replies), PredictReplyBatch)
    assert [reply.request_id for reply in batch.replies] == [fields["request_id"] for fields in many]


def test_reply_batches_are_split_under_the_message_limit() -> None:
    fields = {"request_id": "r", "model": "m", "version": None, "features": [[0.0]], "reply_to": "t",
              "deadline_ms": None, "use_cache": True, "source": "http", "sent_at_ms": None}  # fmt: skip
    replies = [encode_reply(_request(fields), "1", [0] * 50, [[0.25] * 4] * 50, [False] * 50, 1.0)] * 40
    whole = encode_reply_batch(replies)
    parts = encode_reply_batches(replies, limit=len(whole) // 5)
    assert len(parts) > 1 and all(len(part) <= len(whole) // 5 for part in parts)
    assert sum(len(check(part, PredictReplyBatch).replies) for part in parts) == len(replies)


def test_a_single_reply_over_the_limit_becomes_an_error_reply() -> None:
    """Issue 11: 10k rows of a many-class model made a reply the broker refused; the caller hung."""
    fields = {"request_id": "big", "model": "m", "version": None, "features": [[0.0]], "reply_to": "t",
              "deadline_ms": None, "use_cache": True, "source": "http", "sent_at_ms": None,
              "correlation_id": "c1"}  # fmt: skip
    reply = encode_reply(_request(fields), "1", [0] * 2000, [[0.125] * 50] * 2000, [False] * 2000, 1.0)
    (part,) = encode_reply_batches([reply], limit=100_000)
    (answer,) = check(part, PredictReplyBatch).replies
    assert not answer.ok and answer.error is not None and answer.error.code == "payload_too_large"
    assert answer.correlation_id == "c1" and "2000 rows" in answer.error.message and len(part) < 1000


# -- dead letters -----------------------------------------------------------------------------


DEAD_LETTER_ERRORS = [*REPLY_ERRORS, errors.PayloadTooLarge("value of 2000000 bytes")]


@st.composite
def rejections(draw: st.DrawFn) -> Rejected:
    message = Message(
        topic=draw(st.text(min_size=1, max_size=30)),
        partition=draw(st.integers(min_value=0, max_value=1000)),
        offset=draw(st.integers(min_value=0, max_value=2**53)),
        key=draw(st.none() | st.binary(max_size=64)),
        value=draw(st.none() | st.binary(max_size=2048)),
    )
    request = draw(st.none() | requests().map(_request))
    return Rejected(message, draw(st.sampled_from(DEAD_LETTER_ERRORS)), request)


@PROPERTY
@given(rejected=rejections(), worker=short_text, now_ms=millis)
def test_encode_dead_letter(rejected: Rejected, worker: str, now_ms: int) -> None:
    record = check(encode_dead_letter(rejected, worker, now_ms), DeadLetterRecord)
    value = rejected.message.value() or b""
    assert base64.b64decode(record.value) == value and not record.value_truncated
    assert record.reason == rejected.error.dead_letter_reason and record.message == rejected.error.message
    assert record.request_id == (rejected.request.request_id if rejected.request else None)


def test_a_large_dead_letter_keeps_its_head_size_and_checksum() -> None:
    value = bytes(range(256)) * (DEAD_LETTER_VALUE_LIMIT // 256 + 10)
    rejected = Rejected(
        Message(topic="t", partition=0, offset=7, key=b"k", value=value), errors.Undecodable("x")
    )
    record = check(encode_dead_letter(rejected, "w1", 1), DeadLetterRecord)
    assert base64.b64decode(record.value) == value[:DEAD_LETTER_VALUE_LIMIT]
    assert record.value_truncated and record.value_bytes == len(value)
    assert record.value_sha256 == hashlib.sha256(value).hexdigest()


def test_a_dead_letter_stays_under_the_broker_limit_whatever_the_key() -> None:
    key, value = b"k" * 250_000, b"v" * 900_000
    rejected = Rejected(
        Message(topic="t", partition=0, offset=7, key=key, value=value), errors.Undecodable("x")
    )
    raw = encode_dead_letter(rejected, "w1", 1)
    record = check(raw, DeadLetterRecord)
    assert len(raw) < 1_000_000
    assert record.key_truncated and base64.b64decode(record.key or "") == key[:DEAD_LETTER_KEY_LIMIT]
