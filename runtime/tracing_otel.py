"""The OpenTelemetry side of :mod:`runtime.tracing`: imported only when ``tracing.enabled``.

One :class:`Tracing` per process: its own ``TracerProvider`` (not the global one, which belongs to
whoever embeds rtml), a parent-based trace-id-ratio sampler, and a batching processor that
exports over OTLP/HTTP (protobuf) off the hot path: a span costs the request thread its creation
and ``end()``, never a network call, and a full export queue drops spans instead of waiting.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AbstractContextManager

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace import NonRecordingSpan, Span, SpanContext, SpanKind, Status, StatusCode, TraceFlags
from opentelemetry.trace.span import TraceState

from runtime.settings import TracingSettings
from runtime.tracing import TraceIds, Traceparent, format_traceparent

Attributes = Mapping[str, str | bool | int | float]

__all__ = ["Span", "SpanKind", "Tracing"]


def _processor(settings: TracingSettings) -> SpanProcessor | None:
    if settings.exporter == "none":
        return None
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    exporter = OTLPSpanExporter(
        endpoint=settings.endpoint, headers=settings.header_values(), timeout=settings.timeout_s
    )
    return BatchSpanProcessor(
        exporter,
        max_queue_size=settings.max_queue_size,
        schedule_delay_millis=settings.export_delay_ms,
        max_export_batch_size=min(512, settings.max_queue_size),
    )


def remote_context(parent: Traceparent) -> Context:
    """A context whose current span is the caller's (remote) span."""
    state = TraceState.from_header([parent.tracestate]) if parent.tracestate else None
    span_context = SpanContext(
        int(parent.trace_id, 16),
        int(parent.span_id, 16),
        is_remote=True,
        trace_flags=TraceFlags(parent.flags & TraceFlags.SAMPLED),
        trace_state=state,
    )
    return trace.set_span_in_context(NonRecordingSpan(span_context), Context())


class Tracing:
    def __init__(
        self, settings: TracingSettings, service_name: str, processor: SpanProcessor | None = None
    ) -> None:
        """``processor``: where finished spans go (tests hand an in-memory one); default from
        ``settings`` (OTLP/HTTP, or nowhere with ``exporter: none``)."""
        self.service_name = service_name
        self.provider = TracerProvider(
            sampler=ParentBased(TraceIdRatioBased(settings.sample_ratio)),
            resource=Resource.create({"service.name": service_name}),
            shutdown_on_exit=False,
        )
        chosen = processor if processor is not None else _processor(settings)
        if chosen is not None:
            self.provider.add_span_processor(chosen)
        self._tracer = self.provider.get_tracer("rtml")

    def server_span(self, name: str, caller: Traceparent | None, attributes: Attributes) -> Span:
        """A SERVER span: the caller's child if it sent a context, else the root of a new trace."""
        context = remote_context(caller) if caller is not None else Context()
        return self._tracer.start_span(name, context, SpanKind.SERVER, attributes)

    def producer_span(self, name: str, attributes: Attributes) -> Span:
        """A PRODUCER span, child of the current span (the request being served)."""
        return self._tracer.start_span(name, None, SpanKind.PRODUCER, attributes)

    def consumer_span(
        self, name: str, parent: Traceparent, attributes: Attributes, start_ns: int | None = None
    ) -> Span:
        """A CONSUMER span, child of the context a Kafka message or request carried."""
        return self._tracer.start_span(
            name, remote_context(parent), SpanKind.CONSUMER, attributes, start_time=start_ns
        )

    @staticmethod
    def current(span: Span) -> AbstractContextManager[Span]:
        """Make ``span`` the current one inside a ``with`` (an exception escaping it is recorded)."""
        return trace.use_span(span, end_on_exit=False)

    @staticmethod
    def traceparent(span: Span) -> tuple[str, str | None]:
        """``span`` as W3C ``traceparent`` and ``tracestate`` (None when empty)."""
        context = span.get_span_context()
        parent = format_traceparent(
            f"{context.trace_id:032x}", f"{context.span_id:016x}", int(context.trace_flags)
        )
        return parent, context.trace_state.to_header() or None

    @staticmethod
    def ids(span: Span) -> TraceIds:
        context = span.get_span_context()
        return f"{context.trace_id:032x}", f"{context.span_id:016x}"

    @staticmethod
    def current_ids() -> TraceIds | None:
        """Ids of the current span, or None outside any."""
        context = trace.get_current_span().get_span_context()
        if not context.is_valid:
            return None
        return f"{context.trace_id:032x}", f"{context.span_id:016x}"

    @staticmethod
    def annotate(attributes: Attributes) -> None:
        """Add ``attributes`` to the current span (nothing outside any)."""
        trace.get_current_span().set_attributes(attributes)

    @staticmethod
    def fail(span: Span, description: str) -> None:
        span.set_status(Status(StatusCode.ERROR, description))

    def shutdown(self) -> None:
        """Export what is queued (bounded by the exporter's timeout) and stop."""
        self.provider.shutdown()
