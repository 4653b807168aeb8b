"""Decode and validate request messages; encode replies, log records and dead letters.

Untrusted input is validated by the :class:`~schemas.messages.PredictRequest`
model (pydantic-core, a few microseconds a message). Outgoing messages are
built as plain dicts and serialised with orjson: they are ours, and the
round-trip tests check them against the schema models.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import orjson
from confluent_kafka import Message
from pydantic import ValidationError

from runtime.errors import (
    BadRequest,
    DeadlineExceeded,
    InvalidInput,
    ModelNotFound,
    PayloadTooLarge,
    RtmlError,
    Undecodable,
)
from runtime.tracing import TraceIds
from schemas.control import Route
from schemas.messages import SCHEMA_VERSION, DeadLetterReason, Label, PredictRequest, PredictRequestBatch
from schemas.wire import is_request_batch

__all__ = ["DecodedRequest", "PredictRequest", "Rejected"]
from workers.inference import ModelRuntime, RuntimeTable


@dataclass(frozen=True)
class DecodedRequest:
    message: Message
    request: PredictRequest
    runtime: ModelRuntime
    route: Route = "default"
    """Why this version serves it (logged with every record)."""
    shadow: bool = False
    """A mirrored copy: predicted and logged as ``shadow``, never answered."""
    trace: TraceIds | None = None
    """(trace id, span id) of the span serving it, for its records (tracing on, context given)."""


@dataclass(frozen=True)
class Rejected:
    """A message that will not be served: dead-lettered with its error's reason, and
    answered with its error's code if it asked for a reply."""

    message: Message
    error: RtmlError
    request: PredictRequest | None = None
    value: bytes | None = None
    """What the dead letter keeps: the message's value, or (for one request of a
    PredictRequestBatch) that request alone, so it can be replayed by itself."""
    shadow: str | None = None
    """The shadow version that failed on a mirrored copy (counted, never dead-lettered: the
    request itself was served)."""

    @property
    def reason(self) -> DeadLetterReason:
        return self.error.dead_letter_reason

    @property
    def detail(self) -> str:
        return self.error.message


def _validation_summary(error: ValidationError) -> str:
    first = error.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "message"
    return f"{where}: {first['msg']} ({error.error_count()} error(s))"


def decode(
    message: Message, runtimes: RuntimeTable, now_ms: int, reply_prefix: str
) -> list[DecodedRequest | Rejected]:
    """One outcome per request the message carries (one, or a PredictRequestBatch's many)."""
    value = message.value()
    if not value:
        return [Rejected(message, Undecodable("empty message value"))]
    if is_request_batch(value):
        try:
            batch = PredictRequestBatch.model_validate_json(value)
        except ValidationError as exc:
            if not _not_a_batch(exc):
                salvaged = _request_by_request(message, value, exc, runtimes, now_ms, reply_prefix)
                return salvaged if salvaged is not None else [Rejected(message, _invalid(exc))]
        else:
            return [
                _check(message, request, runtimes, now_ms, reply_prefix, _alone(request))
                for request in batch.requests
            ]
    try:
        request = PredictRequest.model_validate_json(value)
    except ValidationError as exc:
        return [Rejected(message, _invalid(exc))]
    return [_check(message, request, runtimes, now_ms, reply_prefix, None)]


def _request_by_request(
    message: Message,
    value: bytes,
    error: ValidationError,
    runtimes: RuntimeTable,
    now_ms: int,
    reply_prefix: str,
) -> list[DecodedRequest | Rejected] | None:
    """A batch whose only faults are inside some of its requests: the others are served, each bad
    one is dead-lettered alone with its own reason. None when the envelope itself is at fault."""
    if not all(len(part["loc"]) >= 2 and part["loc"][0] == "requests" for part in error.errors()):
        return None
    try:
        items = orjson.loads(value)["requests"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return None
    if not isinstance(items, list):
        return None
    outcomes: list[DecodedRequest | Rejected] = []
    for item in items:
        try:
            request = PredictRequest.model_validate(item)
        except ValidationError as exc:
            outcomes.append(Rejected(message, _invalid(exc), value=orjson.dumps(item)))
        else:
            outcomes.append(_check(message, request, runtimes, now_ms, reply_prefix, _alone(request)))
    return outcomes


def _invalid(error: ValidationError) -> RtmlError:
    kind = Undecodable if error.errors()[0]["type"] == "json_invalid" else BadRequest
    return kind(_validation_summary(error))


def _not_a_batch(error: ValidationError) -> bool:
    """The value only mentioned "request_batch" (in an id, say): read it as a single request."""
    return any(part["loc"][:1] == ("kind",) for part in error.errors())


def _alone(request: PredictRequest) -> bytes:
    return request.model_dump_json(exclude_none=True).encode()


def _check(
    message: Message,
    request: PredictRequest,
    runtimes: RuntimeTable,
    now_ms: int,
    reply_prefix: str,
    value: bytes | None,
) -> DecodedRequest | Rejected:
    if request.reply_to is not None and not request.reply_to.startswith(reply_prefix):
        # Never let a producer make workers write into arbitrary topics (e.g. the log).
        detail = f"reply_to {request.reply_to[:80]!r} is not a reply topic (must start with {reply_prefix!r})"
        return Rejected(message, BadRequest(detail), value=value)
    if request.deadline_ms is not None and request.deadline_ms < now_ms:
        late = DeadlineExceeded(f"deadline passed {now_ms - request.deadline_ms} ms before the worker got it")
        return Rejected(message, late, request, value)
    return _bind_model(message, request, runtimes, value)


def _bind_model(
    message: Message, request: PredictRequest, runtimes: RuntimeTable, value: bytes | None
) -> DecodedRequest | Rejected:
    try:
        if request.model != runtimes.model:
            raise ModelNotFound(
                f"request for model '{request.model}' on the topic of model '{runtimes.model}'"
            )
        runtime, routed = runtimes.resolve(request.version, request.routing_key)
        _check_widths(request.features, runtime)
    except (ModelNotFound, InvalidInput) as exc:
        return Rejected(message, exc, request, value)
    # The gateway routed the request itself (to read the cache of the right version) and says why.
    route = request.route if request.route is not None and request.version is not None else routed.route
    return DecodedRequest(message, request, runtime, route)


def _check_widths(rows: list[list[float]], runtime: ModelRuntime) -> None:
    """Values are already finite floats (the schema says so); only the width is model-specific."""
    n = runtime.n_features
    for index, row in enumerate(rows):
        if len(row) != n:
            raise InvalidInput(
                f"features[{index}] has {len(row)} values; model '{runtime.metadata.name}' "
                f"v{runtime.version} expects {n}"
            )


Reply = dict[str, object]
"""One PredictReply as a plain dict; a batch's replies for one gateway go out in one message."""


def encode_reply_batch(replies: Sequence[Reply]) -> bytes:
    """A :class:`~schemas.messages.PredictReplyBatch`."""
    return orjson.dumps({"schema_version": SCHEMA_VERSION, "kind": "reply_batch", "replies": replies})


REPLY_MESSAGE_LIMIT = 900_000
"""Replies for one gateway are split over several messages above this many bytes (the broker's
default limit is 1 MB)."""


def encode_reply_batches(replies: Sequence[Reply], limit: int = REPLY_MESSAGE_LIMIT) -> list[bytes]:
    """``replies`` as PredictReplyBatch messages of at most ``limit`` bytes each where possible
    (halving until they fit; a single reply over the limit goes alone and may be refused)."""
    value = encode_reply_batch(replies)
    if len(value) <= limit:
        return [value]
    if len(replies) == 1:  # one answer too large for a message: the caller gets an error, at once
        return [encode_reply_batch([_too_large(replies[0], len(value), limit)])]
    half = len(replies) // 2
    return encode_reply_batches(replies[:half], limit) + encode_reply_batches(replies[half:], limit)


def _too_large(reply: Reply, size: int, limit: int) -> Reply:
    rows = len(reply.get("predictions") or [])  # type: ignore[arg-type]
    return {
        "schema_version": SCHEMA_VERSION,
        "request_id": reply["request_id"],
        "model": reply["model"],
        "version": reply["version"],
        "ok": False,
        "error": {
            "code": PayloadTooLarge.code,
            "message": f"the answer to {rows} rows is {size} bytes, over the {limit}-byte message limit: "
            "send fewer rows per request (the predictions are in the log)",
        },
        "correlation_id": reply.get("correlation_id"),
    }


def encode_reply(
    request: PredictRequest,
    version: str,
    labels: Sequence[Label],
    probabilities: Sequence[Sequence[float] | None],
    from_cache: Sequence[bool],
    worker_ms: float,
    route: Route = "default",
) -> Reply:
    has_probabilities = bool(probabilities) and probabilities[0] is not None
    return {
        "schema_version": SCHEMA_VERSION,
        "request_id": request.request_id,
        "model": request.model,
        "version": version,
        "ok": True,
        "predictions": labels,
        "probabilities": probabilities if has_probabilities else None,
        "from_cache": from_cache,
        "worker_ms": worker_ms,
        "route": route,
        "correlation_id": request.correlation_id,
    }


def encode_error_reply(request: PredictRequest, error: RtmlError) -> Reply:
    return {
        "schema_version": SCHEMA_VERSION,
        "request_id": request.request_id,
        "model": request.model,
        "version": request.version,
        "ok": False,
        "error": {"code": error.code, "message": error.message},
        "correlation_id": request.correlation_id,
    }


DEAD_LETTER_VALUE_LIMIT = 512 * 1024
"""Original bytes kept in a dead letter. Base64 grows them by 4/3: a whole 1 MB request would
not fit the broker's 1 MB message limit, and a dead letter that cannot be written would block
its partition. Larger values keep their first bytes, their size and their SHA-256."""


DEAD_LETTER_KEY_LIMIT = 16 * 1024
"""Original key bytes kept in a dead letter: a key can be as large as the value (a 250 KB key made a
dead letter over the broker's limit, and the partition was retried forever)."""


def encode_dead_letter(rejected: Rejected, worker: str, now_ms: int) -> bytes:
    message = rejected.message
    key = message.key()
    value = rejected.value if rejected.value is not None else (message.value() or b"")
    kept = value[:DEAD_LETTER_VALUE_LIMIT]
    kept_key = key[:DEAD_LETTER_KEY_LIMIT] if key is not None else None
    return orjson.dumps(
        {
            "schema_version": SCHEMA_VERSION,
            "reason": rejected.reason,
            "message": rejected.detail,
            "topic": message.topic(),
            "partition": message.partition(),
            "offset": message.offset(),
            "key": base64.b64encode(kept_key).decode() if kept_key is not None else None,
            "key_truncated": key is not None and len(key) > DEAD_LETTER_KEY_LIMIT,
            "value": base64.b64encode(kept).decode(),
            "value_bytes": len(value),
            "value_truncated": len(kept) < len(value),
            "value_sha256": hashlib.sha256(value).hexdigest(),
            "request_id": rejected.request.request_id if rejected.request else None,
            "failed_at_ms": now_ms,
            "worker": worker,
        }
    )
