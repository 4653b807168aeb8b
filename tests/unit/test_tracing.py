"""Tracing without sockets: the W3C context helpers (HTTP header, per-request field, Kafka header),
the spans the gateway service and the worker pipeline make (an in-memory exporter), and what
travels in the messages and records. The real stack: tests/integration/test_tracing.py."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import orjson
import pytest
from confluent_kafka import Message
from hypothesis import given
from hypothesis import strategies as st
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from gateway import replies as replies_module
from gateway.model_table import ModelTable
from gateway.replies import ReplyRouter
from gateway.service import PredictionService
from gateway.tracing import traced_route
from runtime.cache_keys import cache_key, encode_value, version_tag
from runtime.errors import SettingsError
from runtime.settings import TracingSettings, load_settings
from runtime.tracing import (
    KafkaHeaders,
    Traceparent,
    format_traceparent,
    header,
    http_context,
    kafka_headers,
    message_context,
    parse_traceparent,
    start_tracing,
)
from runtime.tracing_otel import Tracing
from schemas.messages import PredictionRecord, PredictRequest, PredictRequestBatch
from schemas.wire import encode_prediction_record, join_request_batch
from tests.model_fixtures import DemoModels
from tests.unit.gateway_fakes import FakeCache, FakeProducer, FakeReplyConsumer, Produced, acknowledge
from workers.codec import encode_reply, encode_reply_batch
from workers.inference import RuntimeTable
from workers.pipeline import Pipeline

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN = "00f067aa0ba902b7"
PARENT = f"00-{TRACE}-{SPAN}-01"
MODEL = "iris_classifier"
ROW = [5.1, 3.5, 1.4, 0.2]


# -- the W3C helpers ---------------------------------------------------------------------------


def test_a_valid_traceparent_is_parsed() -> None:
    assert parse_traceparent(PARENT) == Traceparent(TRACE, SPAN, 1)
    assert parse_traceparent(PARENT.encode(), b"vendor=x") == Traceparent(TRACE, SPAN, 1, "vendor=x")
    assert parse_traceparent(f"00-{TRACE}-{SPAN}-00").sampled is False  # type: ignore[union-attr]
    # A later version is read by its first four fields (W3C: forward compatible).
    assert parse_traceparent(f"01-{TRACE}-{SPAN}-01-more") == Traceparent(TRACE, SPAN, 1)


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        "garbage",
        f"ff-{TRACE}-{SPAN}-01",  # version ff is forbidden
        f"00-{'0' * 32}-{SPAN}-01",  # all-zero trace id
        f"00-{TRACE}-{'0' * 16}-01",  # all-zero span id
        f"00-{TRACE.upper()}-{SPAN}-01",  # uppercase hex
        f"00-{TRACE[:-1]}-{SPAN}-01",  # short trace id
        f"00-{TRACE}-{SPAN}-01-extra",  # version 00 has exactly four fields
        f"00-{TRACE}-{SPAN}-1",
    ],
)
def test_an_invalid_traceparent_is_ignored(value: str | None) -> None:
    assert parse_traceparent(value) is None


@given(
    st.text(alphabet="0123456789abcdef", min_size=32, max_size=32).filter(lambda t: t != "0" * 32),
    st.text(alphabet="0123456789abcdef", min_size=16, max_size=16).filter(lambda s: s != "0" * 16),
    st.integers(0, 255),
)
def test_format_and_parse_round_trip(trace_id: str, span_id: str, flags: int) -> None:
    assert parse_traceparent(format_traceparent(trace_id, span_id, flags)) == Traceparent(
        trace_id, span_id, flags
    )


def test_the_request_field_wins_over_the_message_header() -> None:
    other = f"00-{'1' * 32}-{'2' * 16}-01"
    headers = kafka_headers(other, "h=1")
    assert message_context(PARENT, "f=1", headers) == Traceparent(TRACE, SPAN, 1, "f=1")
    # No field (a direct producer's plain request), or an invalid one: the header.
    assert message_context(None, None, headers) == Traceparent("1" * 32, "2" * 16, 1, "h=1")
    assert message_context("not-a-context", None, headers) == Traceparent("1" * 32, "2" * 16, 1, "h=1")
    assert message_context(None, None, None) is None
    assert message_context(None, None, [("other", b"x")]) is None


def test_kafka_headers_are_found_by_name_case_insensitively() -> None:
    assert kafka_headers(PARENT) == [("traceparent", PARENT.encode())]
    assert header([("TraceParent", b"v"), ("traceparent", b"w")], "traceparent") == b"v"
    assert header({"traceparent": "v"}, "traceparent") == "v"
    assert header(None, "traceparent") is None


def test_the_http_context_comes_from_the_asgi_headers() -> None:
    headers = [(b"host", b"x"), (b"traceparent", PARENT.encode()), (b"tracestate", b"v=1")]
    assert http_context(headers) == Traceparent(TRACE, SPAN, 1, "v=1")
    assert http_context([(b"traceparent", b"junk")]) is None
    assert http_context([]) is None


@pytest.mark.parametrize(
    ("method", "path", "name"),
    [
        ("POST", "/api/v1/predict", "POST /api/v1/predict"),
        ("POST", "/api/v1/batch_predict", "POST /api/v1/batch_predict"),
        ("POST", "/v2/models/iris/infer", "POST /v2/models/{name}/infer"),
        ("POST", "/v2/models/iris/versions/2/infer", "POST /v2/models/{name}/versions/{version}/infer"),
        ("GET", "/api/v1/predict", None),
        ("POST", "/v2/models/iris/ready", None),
        ("GET", "/health", None),
        ("POST", "/v2/models/infer", None),
    ],
)
def test_only_prediction_routes_get_a_server_span(method: str, path: str, name: str | None) -> None:
    assert traced_route(method, path) == name


def test_tracing_is_off_by_default_and_then_nothing_is_started() -> None:
    settings = load_settings()
    assert settings.tracing.enabled is False
    assert start_tracing(settings.tracing, "gateway") is None


def test_tracing_settings_from_the_environment_mask_the_export_headers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RTML_TRACING__ENABLED", "true")
    monkeypatch.setenv("RTML_TRACING__ENDPOINT", "http://collector:4318/v1/traces")
    monkeypatch.setenv("RTML_TRACING__HEADERS", '{"authorization": "Bearer s3cret"}')
    monkeypatch.setenv("RTML_TRACING__SAMPLE_RATIO", "0.25")
    tracing = load_settings().tracing
    assert (tracing.enabled, tracing.endpoint, tracing.sample_ratio) == (
        True,
        "http://collector:4318/v1/traces",
        0.25,
    )
    assert "s3cret" not in repr(tracing) and tracing.header_values() == {"authorization": "Bearer s3cret"}
    with pytest.raises(SettingsError, match="sample_ratio"):
        load_settings(tracing={"sample_ratio": 2})


def test_tracing_on_without_the_extra_is_refused_at_start_up(monkeypatch: pytest.MonkeyPatch) -> None:
    from runtime import tracing as tracing_module

    monkeypatch.setattr(tracing_module, "installed", lambda exporter: False)
    with pytest.raises(SettingsError, match=r"pip install 'rtml\[tracing\]'"):
        load_settings(tracing={"enabled": True})
    assert load_settings(tracing={"enabled": False}).tracing.enabled is False


def test_a_record_carries_trace_ids_only_when_given() -> None:
    fields: dict[str, Any] = {
        "request_id": "r",
        "row": 0,
        "model": MODEL,
        "version": "1",
        "features": ROW,
        "prediction": 0,
        "probabilities": [1.0, 0.0, 0.0],
        "from_cache": False,
        "source": "kafka",
        "predicted_at_ms": 1,
        "sent_at_ms": None,
        "served_by": "worker",
    }
    plain = orjson.loads(encode_prediction_record(**fields))
    assert "trace_id" not in plain and PredictionRecord.model_validate(plain).trace_id is None
    traced = PredictionRecord.model_validate_json(encode_prediction_record(**fields, trace=(TRACE, SPAN)))
    assert (traced.trace_id, traced.span_id) == (TRACE, SPAN)


# -- spans, in memory --------------------------------------------------------------------------


@pytest.fixture
def exported() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def tracing(exported: InMemorySpanExporter) -> Iterator[Tracing]:
    tracer = Tracing(TracingSettings(enabled=True), "rtml-test", SimpleSpanProcessor(exported))
    yield tracer
    tracer.shutdown()


def hex_ids(span: ReadableSpan) -> tuple[str, str]:
    context = span.get_span_context()
    assert context is not None
    return f"{context.trace_id:032x}", f"{context.span_id:016x}"


def parent_id(span: ReadableSpan) -> str | None:
    return f"{span.parent.span_id:016x}" if span.parent is not None else None


def test_spans_chain_from_the_caller_through_the_message(tracing: Tracing, exported: Any) -> None:
    server = tracing.server_span("POST /api/v1/predict", parse_traceparent(PARENT), {})
    with tracing.current(server):
        producer = tracing.producer_span("send t", {})
        assert tracing.current_ids() == tracing.ids(server)
    traceparent, _state = tracing.traceparent(producer)
    consumer = tracing.consumer_span("process t", parse_traceparent(traceparent), {})  # type: ignore[arg-type]
    for span in (consumer, producer, server):
        span.end()
    spans = {span.name: span for span in exported.get_finished_spans()}
    assert {hex_ids(span)[0] for span in spans.values()} == {TRACE}
    assert parent_id(spans["POST /api/v1/predict"]) == SPAN
    assert parent_id(spans["send t"]) == hex_ids(spans["POST /api/v1/predict"])[1]
    assert parent_id(spans["process t"]) == hex_ids(spans["send t"])[1]
    assert [spans[n].kind for n in ("POST /api/v1/predict", "send t", "process t")] == [
        SpanKind.SERVER,
        SpanKind.PRODUCER,
        SpanKind.CONSUMER,
    ]
    assert tracing.current_ids() is None  # outside every span


def test_a_new_trace_without_a_caller_and_an_unsampled_caller_is_followed(
    tracing: Tracing, exported: Any
) -> None:
    root = tracing.server_span("POST /api/v1/predict", None, {})
    root.end()
    (span,) = exported.get_finished_spans()
    assert span.parent is None and hex_ids(span)[0] != TRACE
    unsampled = tracing.server_span("POST /api/v1/predict", parse_traceparent(f"00-{TRACE}-{SPAN}-00"), {})
    unsampled.end()
    assert len(exported.get_finished_spans()) == 1  # not recorded, yet its context still propagates
    assert tracing.traceparent(unsampled)[0].startswith(f"00-{TRACE}-")


# -- the gateway service ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def models(demo_models: DemoModels) -> ModelTable:
    return ModelTable({MODEL: demo_models.registry(MODEL).snapshot()[MODEL]})


@pytest.fixture
async def traced_service(
    models: ModelTable, tracing: Tracing, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[PredictionService, FakeProducer, FakeCache]]:
    settings = load_settings()
    consumer = FakeReplyConsumer("rtml.replies.unit-gw")
    monkeypatch.setattr(replies_module, "new_consumer", lambda *args, **kwargs: consumer)
    router = ReplyRouter(settings.kafka, "rtml.replies.unit-gw", "unit-gw")
    producer, cache = FakeProducer(), FakeCache()
    service = PredictionService(settings, models, producer, router, cache)  # type: ignore[arg-type]
    service.trace_with(tracing)
    loop = asyncio.get_running_loop()
    service.bind_loop(loop)

    def worker(message: Produced) -> None:
        acknowledge(message)
        if message.topic.startswith(settings.kafka.request_topic_prefix):
            batch = PredictRequestBatch.model_validate_json(message.value).requests
            replies = [encode_reply(r, "1", [0], [[0.9, 0.05, 0.05]], [False], 1.0) for r in batch]
            consumer.deliver(None, encode_reply_batch(replies))

    producer.on_produce = worker
    await asyncio.to_thread(router.start, loop, 5.0)
    yield service, producer, cache
    await asyncio.to_thread(router.stop)


async def test_the_published_request_carries_its_producer_span_context(
    traced_service: tuple[PredictionService, FakeProducer, FakeCache], tracing: Tracing, exported: Any
) -> None:
    service, producer, _cache = traced_service
    server = tracing.server_span("POST /api/v1/predict", parse_traceparent(PARENT), {})
    with tracing.current(server):
        await service.predict(MODEL, None, [ROW], use_cache=False, timeout_ms=2000, request_id="t-1")
    server.end()
    (message,) = producer.produced[:1]
    (request,) = PredictRequestBatch.model_validate_json(message.value).requests
    spans = {span.name: span for span in exported.get_finished_spans()}
    send = spans[f"send {load_settings().kafka.request_topic(MODEL)}"]  # ended by its delivery report
    assert request.traceparent == format_traceparent(*hex_ids(send), 1)
    assert message.headers == [("traceparent", request.traceparent.encode())]  # alone in its message
    assert parent_id(send) == hex_ids(spans["POST /api/v1/predict"])[1]
    assert spans["POST /api/v1/predict"].attributes is not None
    assert spans["POST /api/v1/predict"].attributes["rtml.request_id"] == "t-1"


async def test_coalesced_requests_each_keep_their_own_context(
    traced_service: tuple[PredictionService, FakeProducer, FakeCache], tracing: Tracing
) -> None:
    service, producer, _cache = traced_service
    servers = [tracing.server_span("POST /api/v1/predict", None, {}) for _ in range(3)]

    async def one(index: int) -> None:
        with tracing.current(servers[index]):
            await service.predict(
                MODEL, None, [ROW], use_cache=False, timeout_ms=2000, request_id=f"c-{index}"
            )

    await asyncio.gather(*(one(i) for i in range(3)))
    (message,) = [m for m in producer.produced if m.topic.startswith("rtml.requests.")]
    requests = PredictRequestBatch.model_validate_json(message.value).requests
    assert len(requests) == 3 and message.headers is None  # several traces: no message header
    by_id = {r.request_id: parse_traceparent(r.traceparent) for r in requests}
    for index, server in enumerate(servers):
        context = by_id[f"c-{index}"]
        assert context is not None and context.trace_id == tracing.ids(server)[0]
        server.end()


async def test_a_cache_hit_is_logged_with_the_server_span_ids(
    traced_service: tuple[PredictionService, FakeProducer, FakeCache], models: ModelTable, tracing: Tracing
) -> None:
    service, producer, cache = traced_service
    metadata, _ = models.route(MODEL, None, None)
    key = cache_key(cache.prefix, MODEL, version_tag(metadata.version, metadata.onnx_sha256), ROW)
    cache.stored[key] = encode_value(0, [0.9, 0.05, 0.05])
    server = tracing.server_span("POST /api/v1/predict", parse_traceparent(PARENT), {})
    with tracing.current(server):
        answer = await service.predict(MODEL, None, [ROW], timeout_ms=2000)
    server.end()
    assert answer.from_cache
    (logged,) = [m for m in producer.produced if m.topic == load_settings().kafka.predictions_topic]
    record = PredictionRecord.model_validate_json(logged.value)
    assert (record.trace_id, record.span_id) == tracing.ids(server)


# -- the worker pipeline ------------------------------------------------------------------------


class Recorder:
    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []

    def send(self, topic: str, value: bytes, key: bytes | None = None) -> None:
        if value.startswith(b'{"schema_version":1,"kind":"reply_batch"'):
            return
        self.sent.append((topic, orjson.loads(value)))

    def send_many(self, topic: str, values: list[bytes], key: bytes | None = None) -> None:
        for value in values:
            self.send(topic, value, key)

    def get_many(self, keys: list[str]) -> list[bytes | None]:
        return [None] * len(keys)

    def put_many(self, items: list[tuple[str, bytes]]) -> None:
        pass

    def poll(self) -> None:
        pass


def request(request_id: str, **extra: object) -> bytes:
    return orjson.dumps({"request_id": request_id, "model": MODEL, "features": [ROW], **extra})


def kafka_message(offset: int, value: bytes, headers: KafkaHeaders | None = None) -> Message:
    return Message(topic="req", partition=0, offset=offset, key=None, value=value, headers=headers)


def test_the_worker_spans_each_request_with_a_context_and_logs_its_ids(
    demo_models: DemoModels, tracing: Tracing, exported: Any
) -> None:
    runtimes = RuntimeTable(demo_models.registry(MODEL), MODEL)
    recorder = Recorder()
    settings = load_settings()
    pipeline = Pipeline(settings, runtimes, recorder, recorder, recorder, "w1", tracing)  # type: ignore[arg-type]
    other = f"00-{'1' * 32}-{'2' * 16}-01"
    pipeline.process(
        [
            kafka_message(0, request("by-header"), kafka_headers(PARENT)),  # a direct producer's header
            kafka_message(1, join_request_batch([request("in-batch", traceparent=other), request("plain")])),
            kafka_message(2, request("untraced")),
            kafka_message(3, request("narrow", features=[[1.0]]), kafka_headers(other)),  # dead-lettered
        ]
    )
    records = {r["request_id"]: r for topic, r in recorder.sent if topic == settings.kafka.predictions_topic}
    spans = {span.attributes["rtml.request_id"]: span for span in exported.get_finished_spans()}  # type: ignore[index]
    assert set(spans) == {"by-header", "in-batch", "narrow"}
    assert (records["by-header"]["trace_id"], parent_id(spans["by-header"])) == (TRACE, SPAN)
    assert records["by-header"]["span_id"] == hex_ids(spans["by-header"])[1]
    assert (records["in-batch"]["trace_id"], parent_id(spans["in-batch"])) == ("1" * 32, "2" * 16)
    for untraced in ("plain", "untraced"):
        assert PredictionRecord.model_validate(records[untraced]).trace_id is None
        assert "trace_id" not in records[untraced]
    assert spans["narrow"].status.status_code is StatusCode.ERROR
    assert spans["by-header"].kind is SpanKind.CONSUMER
    assert PredictRequest.model_validate_json(request("x", traceparent=PARENT)).traceparent == PARENT
