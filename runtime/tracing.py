"""OpenTelemetry tracing, off by default: one trace per request, across the gateway, Kafka and a worker.

Decided once per process, at start-up: :func:`start_tracing` returns None when ``tracing.enabled``
is false, and every caller holds that None (the hot paths test it once per request or batch, and
make no OpenTelemetry call). OpenTelemetry itself is imported only when tracing is on
(:mod:`runtime.tracing_otel`), from the ``tracing`` extra.

The W3C Trace Context travels as text: the ``traceparent`` (and ``tracestate``) of the HTTP
request, of a request inside a Kafka message (a field of each PredictRequest, so it survives
coalescing) and of a Kafka message (its ``traceparent`` header, as a direct producer sets it).
The helpers below parse and choose among them without OpenTelemetry, so they cost nothing to
import and are tested on their own (tests/unit/test_tracing.py).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, NamedTuple

from runtime.errors import SettingsError

if TYPE_CHECKING:
    from runtime.settings import TracingSettings
    from runtime.tracing_otel import Tracing

TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"

MISSING_EXTRA = "tracing.enabled is true, but OpenTelemetry is not installed: pip install 'rtml[tracing]'"

TraceIds = tuple[str, str]
"""(trace id, span id) in lowercase hex, as a PredictionRecord carries them."""


class Traceparent(NamedTuple):
    """A valid W3C ``traceparent``, parsed."""

    trace_id: str
    """32 lowercase hex digits, not all zero."""
    span_id: str
    """The parent span: 16 lowercase hex digits, not all zero."""
    flags: int
    """Trace flags; bit 0 is ``sampled``."""
    tracestate: str | None = None

    @property
    def sampled(self) -> bool:
        return bool(self.flags & 1)


_HEX = frozenset("0123456789abcdef")


def _hex(text: str, length: int) -> bool:
    return len(text) == length and set(text) <= _HEX


def parse_traceparent(value: HeaderValue, tracestate: HeaderValue = None) -> Traceparent | None:
    """``value`` as a W3C traceparent (``00-<trace id>-<span id>-<flags>``), or None when it is
    absent or invalid (an invalid context is ignored, as the W3C recommendation says, never an
    error). A later version's value is read by its first four fields, as the spec allows."""
    if value is None:
        return None
    text = value.decode("latin-1") if isinstance(value, bytes) else value
    parts = text.strip().split("-")
    if len(parts) < 4:
        return None
    version, trace_id, span_id, flags = parts[:4]
    if not _hex(version, 2) or version == "ff" or (version == "00" and len(parts) != 4):
        return None
    if not (_hex(trace_id, 32) and _hex(span_id, 16) and _hex(flags, 2)):
        return None
    if trace_id == "0" * 32 or span_id == "0" * 16:
        return None
    state = tracestate.decode("latin-1") if isinstance(tracestate, bytes) else tracestate
    return Traceparent(trace_id, span_id, int(flags, 16), state or None)


def format_traceparent(trace_id: str, span_id: str, flags: int) -> str:
    return f"00-{trace_id}-{span_id}-{flags:02x}"


HeaderValue = str | bytes | None
KafkaHeaders = list[tuple[str, HeaderValue]]
"""Kafka message headers as confluent-kafka takes and gives them."""


def header(headers: KafkaHeaders | Mapping[str, HeaderValue] | None, name: str) -> HeaderValue:
    """The first header called ``name`` (case-insensitive), or None."""
    if not headers:
        return None
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    for key, value in pairs:
        if key.lower() == name:
            return value
    return None


def message_context(
    field: str | None, field_state: str | None, headers: KafkaHeaders | Mapping[str, HeaderValue] | None
) -> Traceparent | None:
    """The context a request of a Kafka message belongs to: its own ``traceparent`` field (set by
    the gateway on each request, coalesced or not) if valid, else the message's ``traceparent``
    header (a direct producer's), else None (the request is served untraced)."""
    own = parse_traceparent(field, field_state)
    if own is not None:
        return own
    return parse_traceparent(header(headers, TRACEPARENT), header(headers, TRACESTATE))


def kafka_headers(traceparent: str, tracestate: str | None = None) -> KafkaHeaders:
    """The W3C headers of a Kafka message that belongs to one trace."""
    headers: KafkaHeaders = [(TRACEPARENT, traceparent.encode())]
    if tracestate:
        headers.append((TRACESTATE, tracestate.encode()))
    return headers


def http_context(headers: Iterable[tuple[bytes, bytes]]) -> Traceparent | None:
    """The caller's context from ASGI request headers (lowercase names), or None."""
    parent: bytes | None = None
    state: bytes | None = None
    for name, value in headers:
        if name == b"traceparent" and parent is None:
            parent = value
        elif name == b"tracestate" and state is None:
            state = value
    return parse_traceparent(parent, state)


def installed(exporter: str) -> bool:
    """OpenTelemetry's SDK (and the OTLP/HTTP exporter, if it is the one named) can be imported."""
    modules = ["opentelemetry.sdk.trace"]
    if exporter == "otlp":
        modules.append("opentelemetry.exporter.otlp.proto.http.trace_exporter")
    try:
        return all(importlib.util.find_spec(module) is not None for module in modules)
    except ModuleNotFoundError:  # a parent package is missing
        return False


def start_tracing(settings: TracingSettings, process: str) -> Tracing | None:
    """The process's tracer (``process``: gateway, worker or drift), or None when tracing is off.
    Call once from the process's start-up; :meth:`Tracing.shutdown` exports what is left."""
    if not settings.enabled:
        return None
    if not installed(settings.exporter):
        raise SettingsError(MISSING_EXTRA)
    from runtime.tracing_otel import Tracing

    return Tracing(settings, settings.service_name or f"rtml-{process}")
