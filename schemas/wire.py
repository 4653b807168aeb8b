"""Fast encoders for the messages several processes write (plain dicts + orjson).

Each mirrors a model in :mod:`schemas.messages`; ``tests/unit/test_encoders.py`` checks
(hypothesis) that what they produce validates against it and against its JSON Schema export.
"""

from __future__ import annotations

from collections.abc import Sequence

import orjson

from schemas.messages import SCHEMA_VERSION, Label


def encode_request(
    *,
    request_id: str,
    model: str,
    version: str | None,
    features: Sequence[Sequence[float]],
    reply_to: str | None,
    deadline_ms: int | None,
    use_cache: bool,
    source: str,
    sent_at_ms: int | None,
    routing_key: str | None = None,
    route: str | None = None,
    correlation_id: str | None = None,
    traceparent: str | None = None,
    tracestate: str | None = None,
) -> bytes:
    envelope = {
        "schema_version": SCHEMA_VERSION,
        "request_id": request_id,
        "model": model,
        "version": version,
        "features": features,
        "reply_to": reply_to,
        "deadline_ms": deadline_ms,
        "use_cache": use_cache,
        "source": source,
        "sent_at_ms": sent_at_ms,
    }
    # Only when set: workers from before these fields (extra="forbid") keep reading plain requests.
    if routing_key is not None:
        envelope["routing_key"] = routing_key
    if route is not None:
        envelope["route"] = route
    if correlation_id is not None:
        envelope["correlation_id"] = correlation_id
    if traceparent is not None:  # tracing on (runtime/tracing.py)
        envelope["traceparent"] = traceparent
        if tracestate:
            envelope["tracestate"] = tracestate
    return orjson.dumps(envelope)


REQUEST_BATCH_HEAD = b'{"schema_version":%d,"kind":"request_batch","requests":[' % SCHEMA_VERSION
REQUEST_BATCH_TAIL = b"]}"
REQUEST_BATCH_OVERHEAD = len(REQUEST_BATCH_HEAD) + len(REQUEST_BATCH_TAIL)


def join_request_batch(encoded_requests: Sequence[bytes]) -> bytes:
    """A :class:`~schemas.messages.PredictRequestBatch` of requests already encoded by
    :func:`encode_request` (joined as bytes: each request is encoded once, when it arrives, so its
    size is known before it is added to a message)."""
    return REQUEST_BATCH_HEAD + b",".join(encoded_requests) + REQUEST_BATCH_TAIL


def is_request_batch(value: bytes) -> bool:
    """Cheap first guess at a message's kind (the schema validation that follows decides)."""
    return b'"request_batch"' in value


def encode_prediction_record(
    *,
    request_id: str,
    row: int,
    model: str,
    version: str,
    features: Sequence[float],
    prediction: Label,
    probabilities: Sequence[float] | None,
    from_cache: bool,
    source: str,
    predicted_at_ms: int,
    sent_at_ms: int | None,
    served_by: str,
    top_probability: bool = True,
    route: str = "default",
    trace: tuple[str, str] | None = None,
) -> bytes:
    """``top_probability``: classifiers report max(probabilities) as ``probability``; clustering
    models carry distances in ``probabilities`` and report no ``probability``. ``trace``: the
    (trace id, span id) of the span that made the prediction, written only when there is one (a
    record without is byte for byte what it was before tracing existed)."""
    record = {
        "schema_version": SCHEMA_VERSION,
        "request_id": request_id,
        "row": row,
        "model": model,
        "version": version,
        "features": features,
        "prediction": prediction,
        "probability": max(probabilities) if probabilities and top_probability else None,
        "probabilities": probabilities,
        "from_cache": from_cache,
        "source": source,
        "predicted_at_ms": predicted_at_ms,
        "sent_at_ms": sent_at_ms,
        "latency_ms": float(predicted_at_ms - sent_at_ms) if sent_at_ms is not None else None,
        "served_by": served_by,
        "route": route,
    }
    if trace is not None:
        record["trace_id"], record["span_id"] = trace
    return orjson.dumps(record)


def encode_prediction_records(
    *,
    request_id: str,
    model: str,
    version: str,
    features: Sequence[Sequence[float]],
    predictions: Sequence[Label],
    probabilities: Sequence[Sequence[float] | None],
    from_cache: Sequence[bool],
    source: str,
    predicted_at_ms: int,
    sent_at_ms: int | None,
    served_by: str,
    top_probability: bool = True,
    route: str = "default",
    trace: tuple[str, str] | None = None,
) -> list[bytes]:
    """The records of one request's rows (row ``i`` from ``features[i]``, ``predictions[i]``, ...),
    byte for byte what :func:`encode_prediction_record` writes for each. One dict is built per
    request and only its per-row fields change, so the fixed part of a record (half its fields) is
    not rebuilt per row: this is the worker's hottest loop under direct-producer load."""
    record: dict[str, object] = {
        "schema_version": SCHEMA_VERSION,
        "request_id": request_id,
        "row": 0,
        "model": model,
        "version": version,
        "features": None,
        "prediction": None,
        "probability": None,
        "probabilities": None,
        "from_cache": False,
        "source": source,
        "predicted_at_ms": predicted_at_ms,
        "sent_at_ms": sent_at_ms,
        "latency_ms": float(predicted_at_ms - sent_at_ms) if sent_at_ms is not None else None,
        "served_by": served_by,
        "route": route,
    }
    if trace is not None:
        record["trace_id"], record["span_id"] = trace
    dumps = orjson.dumps
    encoded = []
    for row, (row_features, prediction, row_probabilities, cached) in enumerate(
        zip(features, predictions, probabilities, from_cache, strict=True)
    ):
        record["row"] = row
        record["features"] = row_features
        record["prediction"] = prediction
        record["probability"] = max(row_probabilities) if row_probabilities and top_probability else None
        record["probabilities"] = row_probabilities
        record["from_cache"] = cached
        encoded.append(dumps(record))
    return encoded
