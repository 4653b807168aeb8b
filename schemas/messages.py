"""Every Kafka message rtml reads or writes.

These pydantic models are the contract. Hot paths encode plain dicts with orjson
for speed (``schemas.wire``, ``workers.codec``); ``tests/unit/test_encoders.py``
checks every such encoder against these models and against the JSON Schema that
``rtml schemas export`` writes for producers in other languages.

Topics:
- ``rtml.requests.<model>``: :class:`PredictRequest` (any producer), or :class:`PredictRequestBatch`
  (several requests in one message: what the gateway sends, and what a producer may send)
- ``rtml.replies.<gateway>``: :class:`PredictReplyBatch` (workers -> the gateway that asked: the
  replies of one consumed batch for that gateway, in one message)
- ``rtml.predictions``: :class:`PredictionRecord` (one per predicted row)
- ``rtml.dlq``: :class:`DeadLetterRecord` (what could not be served, and why)
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from schemas.control import Route

SCHEMA_VERSION: Literal[1] = 1

FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]
Label = int | str | float


class _Message(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class PredictRequest(_Message):
    """A request to predict one or more rows with one model."""

    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "schema_version": 1,
                    "request_id": "txn-000042",
                    "model": "fraud_detector",
                    "features": [[120.5, 23.0, 0.4]],
                }
            ]
        },
    )

    schema_version: Literal[1] = SCHEMA_VERSION
    request_id: str = Field(min_length=1, max_length=128)
    """Correlation id: echoed in the reply and the prediction log."""
    model: str = Field(min_length=1, max_length=64)
    version: str | None = Field(default=None, pattern=r"^[0-9]+$")
    """Concrete model version (served while it is registered and not retired); None: the model's
    traffic policy picks one (its default version, or an arm of its A/B split)."""
    routing_key: str | None = Field(default=None, min_length=1, max_length=256)
    """Sticky A/B routing: requests with the same key land on the same split arm (a user or
    account id, say); without one each request is routed on its own."""
    route: Route | None = None
    """Set by the gateway when it chose ``version`` itself: why (logged with the prediction)."""
    correlation_id: str | None = Field(default=None, max_length=64)
    """Set by the gateway: what its reply is matched by (never the caller's request_id), echoed in
    the reply."""
    features: list[list[FiniteFloat]] = Field(min_length=1)
    """Rows of features in the model's feature order."""
    reply_to: str | None = None
    """Topic to send the reply to; None for fire-and-forget producers."""
    deadline_ms: int | None = None
    """Absolute deadline (Unix ms). Past it the request is dead-lettered, not served."""
    use_cache: bool = True
    """False: the worker does not look the rows up in the cache (it still stores its predictions).
    The gateway sends False for a row it has just looked up itself. A request with ``source:
    kafka`` goes through the cache only where the workers run with
    ``redis.cache_direct_requests: true``."""
    source: Literal["http", "kafka"] = "kafka"
    sent_at_ms: int | None = None
    """When the producer sent it (Unix ms), for end-to-end latency."""
    traceparent: str | None = Field(default=None, max_length=128)
    """W3C Trace Context ``traceparent`` of this request (optional, added with tracing): the worker's
    span is its child and its records carry its trace id. Set by the gateway when tracing is on; a
    producer may set it here or as the message's ``traceparent`` header (this field wins, and is
    the only way for the requests of a PredictRequestBatch to carry a trace each). An invalid
    value is ignored, never refused."""
    tracestate: str | None = Field(default=None, max_length=512)
    """W3C ``tracestate`` that goes with ``traceparent`` (vendor data, passed on as is)."""


MAX_REQUESTS_PER_BATCH = 4096


class PredictRequestBatch(_Message):
    """Several :class:`PredictRequest` in one Kafka message (added in 0.2; version 1 of its kind).

    Why: every message costs the broker, librdkafka and the worker's Python a fixed amount
    whatever its size; the gateway coalesces the requests for one model that arrive in the same
    event-loop iteration into one message, so that cost is paid once per batch (bench/RESULTS.md).
    Each request keeps every field of its own (deadline, reply address, version): a worker serves,
    answers, logs and dead-letters them one by one, exactly as if they had come as single
    messages. Workers accept both kinds on every request topic.
    """

    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "schema_version": 1,
                    "kind": "request_batch",
                    "requests": [
                        {"request_id": "txn-1", "model": "fraud_detector", "features": [[120.5, 23.0, 0.4]]},
                        {"request_id": "txn-2", "model": "fraud_detector", "features": [[80.0, 2.0, 0.9]]},
                    ],
                }
            ]
        },
    )

    schema_version: Literal[1] = SCHEMA_VERSION
    kind: Literal["request_batch"]
    requests: list[PredictRequest] = Field(min_length=1, max_length=MAX_REQUESTS_PER_BATCH)


class ErrorInfo(_Message):
    code: str
    """Stable machine-readable code, e.g. ``invalid_input``."""
    message: str
    """Human-readable, names the offending field and what was expected."""


class PredictReply(_Message):
    """The worker's answer to one :class:`PredictRequest`."""

    schema_version: Literal[1] = SCHEMA_VERSION
    request_id: str
    model: str
    version: str | None
    ok: bool
    predictions: list[Label] | None = None
    probabilities: list[list[float]] | None = None
    """Per-class probabilities per row (classifiers), else None."""
    from_cache: list[bool] | None = None
    error: ErrorInfo | None = None
    worker_ms: float | None = None
    """Time from the worker receiving the batch to producing this reply."""
    route: Route | None = None
    """Why ``version`` answered (see PredictionRecord.route)."""
    correlation_id: str | None = None
    """The request's correlation_id, echoed."""


class PredictReplyBatch(_Message):
    """The replies of one consumed batch for one gateway, in one message (see PredictRequestBatch)."""

    schema_version: Literal[1] = SCHEMA_VERSION
    kind: Literal["reply_batch"]
    replies: list[PredictReply] = Field(min_length=1)


class PredictionRecord(_Message):
    """One predicted row, appended to the prediction log."""

    schema_version: Literal[1] = SCHEMA_VERSION
    request_id: str
    row: int = Field(ge=0)
    """Index of this row within its request."""
    model: str
    version: str
    features: list[float]
    prediction: Label
    probability: float | None
    probabilities: list[float] | None
    from_cache: bool
    source: Literal["http", "kafka"]
    predicted_at_ms: int
    """Event time: when the prediction was made (Unix ms)."""
    sent_at_ms: int | None = None
    latency_ms: float | None = None
    """From the request being sent to the prediction being made, when known."""
    served_by: Literal["gateway", "worker"]
    route: Route | None = None
    """Why this version served the row: ``default``, ``split`` (an A/B arm), ``pinned`` (the request
    named the version), ``canary``, or ``shadow`` (a mirrored prediction nobody was answered
    with: exclude these when counting answers)."""
    trace_id: str | None = Field(default=None, pattern=r"^[0-9a-f]{32}$")
    """OpenTelemetry trace id (32 hex) of the request that made this prediction (optional, added
    with tracing): the span that served it is ``span_id`` of that trace. None (absent) when tracing is
    off or the request came with no trace context."""
    span_id: str | None = Field(default=None, pattern=r"^[0-9a-f]{16}$")
    """Span id (16 hex) of the span that made the prediction: the worker's processing span, or the
    gateway's server span for a cache hit it answered itself."""


DeadLetterReason = Literal[
    "undecodable", "invalid_request", "unknown_model", "invalid_input", "expired", "model_error"
]


class DeadLetterRecord(_Message):
    """A message that could not be turned into a prediction, with the reason."""

    schema_version: Literal[1] = SCHEMA_VERSION
    reason: DeadLetterReason
    message: str
    topic: str
    partition: int
    offset: int
    key: str | None
    """Original key, base64-encoded (its first 16 KiB: see key_truncated)."""
    key_truncated: bool = False
    """True when ``key`` holds only the first 16 KiB of a larger original key."""
    value: str
    """Original value bytes, base64-encoded, so the message can be replayed (the first 512 KiB
    of a larger value: see value_truncated)."""
    value_bytes: int | None = None
    """Size of the original value in bytes."""
    value_truncated: bool = False
    """True when ``value`` holds only the first bytes of a larger original."""
    value_sha256: str | None = None
    """SHA-256 (hex) of the whole original value."""
    request_id: str | None = None
    failed_at_ms: int
    worker: str


ALL_MESSAGES: dict[str, type[BaseModel]] = {
    "predict_request": PredictRequest,
    "predict_request_batch": PredictRequestBatch,
    "predict_reply": PredictReply,
    "predict_reply_batch": PredictReplyBatch,
    "prediction_record": PredictionRecord,
    "dead_letter_record": DeadLetterRecord,
}
