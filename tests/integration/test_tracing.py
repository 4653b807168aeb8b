"""Tracing on the real stack: gateway and worker processes export their spans over OTLP/HTTP to an
in-memory collector run here (127.0.0.1), the exporter the processes really use; the trace ids are
checked against the prediction log on the real broker.

One HTTP request is one trace: the gateway's server span, its producer span (child), the worker's
consumer span (child of that), and the PredictionRecord carries the trace id and the worker
span's id. A caller's traceparent is kept; a direct Kafka message's traceparent header is
honoured; requests coalesced into one message keep a trace each; with tracing off no record has
a trace id.
"""

from __future__ import annotations

import asyncio
import gzip
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import orjson
import pytest
from confluent_kafka import Producer
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span as ProtoSpan

from runtime.tracing import KafkaHeaders
from schemas.messages import PredictionRecord, PredictRequestBatch
from tests.kafka_tools import read_topic
from tests.stack_fixtures import RunningStack, StackFactory

SERVER, PRODUCER, CONSUMER = (
    ProtoSpan.SPAN_KIND_SERVER,
    ProtoSpan.SPAN_KIND_PRODUCER,
    ProtoSpan.SPAN_KIND_CONSUMER,
)
IRIS_ROW = [5.1, 3.5, 1.4, 0.2]


@dataclass(frozen=True)
class Received:
    service: str
    name: str
    kind: int
    trace_id: str
    span_id: str
    parent_id: str
    attributes: dict[str, Any]
    error: bool


@dataclass
class Collector:
    """The spans every process exported, decoded from OTLP/HTTP protobuf export requests."""

    url: str = ""
    spans: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, body: bytes) -> None:
        request = ExportTraceServiceRequest.FromString(body)
        with self.lock:
            for resource_spans in request.resource_spans:
                resource = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
                for scope_spans in resource_spans.scope_spans:
                    self.spans.extend(_received(resource["service.name"], s) for s in scope_spans.spans)

    def wait(self, until: Callable[[list[Received]], bool], timeout_s: float = 20.0) -> list[Received]:
        deadline = time.monotonic() + timeout_s
        while True:
            with self.lock:
                spans = list(self.spans)
            if until(spans) or time.monotonic() > deadline:
                return spans
            time.sleep(0.1)

    def trace(self, trace_id: str, count: int) -> dict[int, list[Received]]:
        """The spans of ``trace_id`` by kind, once ``count`` have arrived (or the timeout)."""
        spans = self.wait(lambda all_: sum(s.trace_id == trace_id for s in all_) >= count)
        by_kind: dict[int, list[Received]] = {}
        for span in spans:
            if span.trace_id == trace_id:
                by_kind.setdefault(span.kind, []).append(span)
        return by_kind


def _received(service: str, span: ProtoSpan) -> Received:
    attributes: dict[str, Any] = {}
    for attribute in span.attributes:
        value = attribute.value
        attributes[attribute.key] = getattr(value, value.WhichOneof("value") or "string_value")
    return Received(
        service,
        span.name,
        span.kind,
        span.trace_id.hex(),
        span.span_id.hex(),
        span.parent_span_id.hex(),
        attributes,
        span.status.code == span.status.STATUS_CODE_ERROR,
    )


@pytest.fixture(scope="module")
def collector() -> Iterator[Collector]:
    received = Collector()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if self.headers.get("Content-Encoding") == "gzip":
                body = gzip.decompress(body)
            if self.path != "/v1/traces":
                self.send_error(404)
                return
            received.add(body)
            answer = ExportTraceServiceResponse().SerializeToString()
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    received.url = f"http://127.0.0.1:{server.server_address[1]}/v1/traces"
    thread = threading.Thread(target=server.serve_forever, name="otlp-collector", daemon=True)
    thread.start()
    yield received
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def traced(stack_factory: StackFactory, collector: Collector) -> RunningStack:
    return stack_factory(
        workers=1,
        models=["iris_classifier", "fraud_detector"],
        extra_env={
            "RTML_TRACING__ENABLED": "true",
            "RTML_TRACING__ENDPOINT": collector.url,
            "RTML_TRACING__EXPORT_DELAY_MS": "100",
            # Under load (8+ in flight) a message waits 20 ms for company: concurrent requests coalesce.
            "RTML_GATEWAY__COALESCE_DELAY_US": "20000",
        },
    )


def predict(
    stack: RunningStack, body: dict[str, Any], headers: dict[str, str] | None = None
) -> httpx.Response:
    response = httpx.post(f"{stack.base_url}/api/v1/predict", json=body, headers=headers, timeout=10)
    assert response.status_code == 200, response.text
    return response


def logged(stack: RunningStack, request_ids: set[str]) -> dict[str, PredictionRecord]:
    """The log record (row 0) of each of ``request_ids``."""
    records = read_topic(
        stack.bootstrap,
        stack.namespace.predictions_topic,
        lambda rs: request_ids <= {r["request_id"] for r in rs},
    )
    found = {
        r["request_id"]: PredictionRecord.model_validate(r) for r in records if r["request_id"] in request_ids
    }
    assert set(found) == request_ids, f"not on the log: {request_ids - set(found)}"
    return found


def produce_direct(stack: RunningStack, model: str, value: bytes, headers: KafkaHeaders) -> None:
    producer = Producer({"bootstrap.servers": stack.bootstrap})
    producer.produce(stack.request_topic(model), value, headers=headers)
    assert producer.flush(15) == 0


def direct_request(request_id: str) -> bytes:
    return orjson.dumps(
        {"schema_version": 1, "request_id": request_id, "model": "fraud_detector", "features": [[0.5] * 30]}
    )


def test_one_http_request_is_one_trace_across_gateway_kafka_and_worker(
    traced: RunningStack, collector: Collector
) -> None:
    request_id = f"tr-{uuid.uuid4().hex[:8]}"
    predict(
        traced,
        {"model_name": "iris_classifier", "features": IRIS_ROW, "use_cache": False, "request_id": request_id},
    )
    record = logged(traced, {request_id})[request_id]
    assert record.trace_id is not None and record.span_id is not None
    spans = collector.trace(record.trace_id, 3)
    (server,), (send,), (process,) = spans.get(SERVER, []), spans.get(PRODUCER, []), spans.get(CONSUMER, [])
    assert (server.service, server.name, server.parent_id) == ("rtml-gateway", "POST /api/v1/predict", "")
    assert server.attributes["http.response.status_code"] == 200
    assert server.attributes["rtml.request_id"] == request_id
    assert (send.service, send.parent_id) == ("rtml-gateway", server.span_id)
    assert send.name == f"send {traced.request_topic('iris_classifier')}"
    assert (process.service, process.parent_id) == ("rtml-worker", send.span_id)
    assert process.attributes["rtml.request_id"] == request_id
    assert record.span_id == process.span_id  # the record names the span that made it
    assert not (server.error or send.error or process.error)


def test_a_callers_traceparent_is_kept(traced: RunningStack, collector: Collector) -> None:
    trace_id, parent = secrets.token_hex(16), secrets.token_hex(8)
    request_id = f"tp-{uuid.uuid4().hex[:8]}"
    predict(
        traced,
        {
            "model_name": "iris_classifier",
            "features": [6.0, 3.0, 4.0, 1.2],
            "use_cache": False,
            "request_id": request_id,
        },
        headers={"traceparent": f"00-{trace_id}-{parent}-01", "tracestate": "caller=1"},
    )
    record = logged(traced, {request_id})[request_id]
    assert record.trace_id == trace_id
    spans = collector.trace(trace_id, 3)
    (server,) = spans[SERVER]
    assert server.parent_id == parent
    assert spans[CONSUMER][0].parent_id == spans[PRODUCER][0].span_id


def test_an_open_inference_protocol_request_is_traced_too(traced: RunningStack, collector: Collector) -> None:
    request_id = f"v2-{uuid.uuid4().hex[:8]}"
    body = {
        "id": request_id,
        "inputs": [
            {"name": "float_input", "shape": [1, 4], "datatype": "FP32", "data": [6.1, 2.8, 4.7, 1.2]}
        ],
    }
    response = httpx.post(f"{traced.base_url}/v2/models/iris_classifier/infer", json=body, timeout=10)
    assert response.status_code == 200, response.text
    record = logged(traced, {request_id})[request_id]
    assert record.trace_id is not None
    spans = collector.trace(record.trace_id, 3)
    (server,), (send,), (process,) = spans[SERVER], spans[PRODUCER], spans[CONSUMER]
    assert server.name == "POST /v2/models/{name}/infer" and server.attributes["url.path"].endswith("/infer")
    assert (send.parent_id, process.parent_id, process.span_id) == (
        server.span_id,
        send.span_id,
        record.span_id,
    )


def test_a_cache_hit_is_logged_in_its_requests_trace(traced: RunningStack, collector: Collector) -> None:
    row = [round(4.5 + secrets.randbelow(3000) / 1000, 3), 3.1, 1.5, 0.2]
    first = f"miss-{uuid.uuid4().hex[:8]}"
    predict(traced, {"model_name": "iris_classifier", "features": row, "request_id": first})
    logged(traced, {first})  # the worker has predicted it (and writes the cache right after)
    hit_id = ""
    for attempt in range(20):
        hit_id = f"hit-{attempt}-{uuid.uuid4().hex[:6]}"
        if predict(traced, {"model_name": "iris_classifier", "features": row, "request_id": hit_id}).json()[
            "from_cache"
        ]:
            break
        time.sleep(0.1)
    record = logged(traced, {hit_id})[hit_id]
    assert record.served_by == "gateway" and record.from_cache and record.trace_id is not None
    (server,) = collector.trace(record.trace_id, 1)[SERVER]
    assert record.span_id == server.span_id


def test_a_direct_messages_traceparent_header_is_honoured(traced: RunningStack, collector: Collector) -> None:
    trace_id, parent = secrets.token_hex(16), secrets.token_hex(8)
    request_id = f"direct-{uuid.uuid4().hex[:8]}"
    headers: KafkaHeaders = [("traceparent", f"00-{trace_id}-{parent}-01".encode())]
    produce_direct(traced, "fraud_detector", direct_request(request_id), headers)
    plain_id = f"plain-{uuid.uuid4().hex[:8]}"
    produce_direct(traced, "fraud_detector", direct_request(plain_id), [])
    records = logged(traced, {request_id, plain_id})
    assert records[request_id].trace_id == trace_id
    (process,) = collector.trace(trace_id, 1)[CONSUMER]
    assert (process.service, process.parent_id, process.span_id) == (
        "rtml-worker",
        parent,
        records[request_id].span_id,
    )
    assert process.attributes["rtml.source"] == "kafka"
    assert records[plain_id].trace_id is None and records[plain_id].span_id is None  # no context: untraced


def test_coalesced_requests_keep_one_trace_each(traced: RunningStack, collector: Collector) -> None:
    tag = uuid.uuid4().hex[:8]
    ids = [f"co-{tag}-{i}" for i in range(40)]

    async def send_all() -> None:
        async with httpx.AsyncClient(
            base_url=traced.base_url, timeout=20, limits=httpx.Limits(max_connections=40)
        ) as client:
            answers = await asyncio.gather(
                *(
                    client.post(
                        "/api/v1/predict",
                        json={
                            "model_name": "iris_classifier",
                            "features": [5.0 + i / 100, 3.0, 1.5, 0.2],
                            "use_cache": False,
                            "request_id": rid,
                        },
                    )
                    for i, rid in enumerate(ids)
                )
            )
        assert [a.status_code for a in answers] == [200] * len(ids)

    asyncio.run(send_all())
    records = logged(traced, set(ids))
    assert len({r.trace_id for r in records.values()}) == len(ids)  # a trace per request
    # At least one message carried several of them (each with its own traceparent field).
    messages = read_topic(
        traced.bootstrap,
        traced.request_topic("iris_classifier"),
        lambda ms: any(tag.encode() in m["raw"] and m["raw"].count(b'"request_id"') > 1 for m in ms),
        decode=False,
    )
    shared = [
        PredictRequestBatch.model_validate_json(m["raw"]).requests
        for m in messages
        if tag.encode() in m["raw"] and m["raw"].count(b'"request_id"') > 1
    ]
    assert shared, "no message carried several requests: coalescing was not exercised"
    for requests in shared:
        assert len({r.traceparent for r in requests}) == len(requests)
    spans = collector.wait(
        lambda all_: (
            {s.trace_id for s in all_ if s.kind == CONSUMER} >= {r.trace_id for r in records.values()}
        )
    )
    by_id = {s.span_id: s for s in spans}
    for record in records.values():
        process = by_id[record.span_id]  # type: ignore[index]
        send = by_id[process.parent_id]
        server = by_id[send.parent_id]
        assert (process.kind, send.kind, server.kind) == (CONSUMER, PRODUCER, SERVER)
        assert {process.trace_id, send.trace_id, server.trace_id} == {record.trace_id}
        assert server.attributes["rtml.request_id"] == record.request_id


def test_with_tracing_off_no_record_has_a_trace_id(stack: RunningStack) -> None:
    """The shared stack runs with tracing off: neither HTTP requests (a caller's traceparent
    included) nor direct messages with a traceparent header get trace ids."""
    request_id = f"off-{uuid.uuid4().hex[:8]}"
    predict(
        stack,
        {"model_name": "iris_classifier", "features": IRIS_ROW, "use_cache": False, "request_id": request_id},
        headers={"traceparent": f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-01"},
    )
    direct_id = f"off-direct-{uuid.uuid4().hex[:8]}"
    headers: KafkaHeaders = [
        ("traceparent", f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-01".encode())
    ]
    produce_direct(stack, "fraud_detector", direct_request(direct_id), headers)
    records = logged(stack, {request_id, direct_id})
    for record in records.values():
        assert (record.trace_id, record.span_id) == (None, None)
    raw = read_topic(
        stack.bootstrap,
        stack.namespace.predictions_topic,
        lambda rs: request_id in {r["request_id"] for r in rs},
    )
    assert all("trace_id" not in r for r in raw if r["request_id"] in records)  # byte for byte as before
