"""PredictionService in-process: the real service and ReplyRouter, with in-memory edges
(gateway_fakes) for the request producer, the reply consumer and the cache. A fake worker
answers requests with the workers' own reply encoder, so what the gateway publishes and what
it decodes are checked against each other and against the schemas."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import orjson
import pytest
from confluent_kafka import KafkaError

from gateway import hit_rate
from gateway import replies as replies_module
from gateway.model_table import ModelTable
from gateway.replies import ReplyRouter
from gateway.service import PredictionService
from runtime.cache_keys import cache_key, encode_value, version_tag
from runtime.clock import now_ms
from runtime.errors import (
    DeadlineExceeded,
    InvalidInput,
    ModelNotFound,
    RequestIdInUse,
    RtmlError,
    Unavailable,
)
from runtime.settings import Settings, load_settings
from schemas.messages import PredictionRecord, PredictRequest, PredictRequestBatch
from tests.model_fixtures import DemoModels
from tests.unit.gateway_fakes import FakeCache, FakeProducer, FakeReplyConsumer, Produced, acknowledge
from workers.codec import Reply, encode_error_reply, encode_reply, encode_reply_batch

MODEL = "iris_classifier"
ROW = [5.1, 3.5, 1.4, 0.2]
REPLY_TOPIC = "rtml.replies.unit-gw"


@dataclass
class Gateway:
    settings: Settings
    service: PredictionService
    router: ReplyRouter
    producer: FakeProducer
    consumer: FakeReplyConsumer
    cache: FakeCache

    @property
    def request_topic(self) -> str:
        return self.settings.kafka.request_topic(MODEL)

    def worker(self, answer: Callable[[PredictRequest], Reply]) -> None:
        """Acknowledge every request message and answer each request in it with ``answer(request)``,
        all in one reply message, as a worker does."""

        def on_produce(message: Produced) -> None:
            acknowledge(message)
            if message.topic == self.request_topic:
                batch = PredictRequestBatch.model_validate_json(message.value)
                assert all(request.reply_to == self.router.topic for request in batch.requests)
                self.consumer.deliver(None, encode_reply_batch([answer(r) for r in batch.requests]))

        self.producer.on_produce = on_produce

    def requests_sent(self) -> list[PredictRequest]:
        return [
            request
            for message in self.producer.to(self.request_topic)
            for request in PredictRequestBatch.model_validate_json(message.value).requests
        ]


@pytest.fixture(scope="module")
def models(demo_models: DemoModels) -> ModelTable:
    # Only iris: the session registry holds whichever demo models other tests asked for.
    return ModelTable({MODEL: demo_models.registry(MODEL).snapshot()[MODEL]})


@pytest.fixture
async def gateway(models: ModelTable, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Gateway]:
    settings = load_settings()
    consumer = FakeReplyConsumer(REPLY_TOPIC)
    monkeypatch.setattr(replies_module, "new_consumer", lambda *args, **kwargs: consumer)
    router = ReplyRouter(settings.kafka, REPLY_TOPIC, "unit-gw")
    producer, cache = FakeProducer(), FakeCache()
    service = PredictionService(settings, models, producer, router, cache)  # type: ignore[arg-type]
    loop = asyncio.get_running_loop()
    service.bind_loop(loop)
    await asyncio.to_thread(router.start, loop, 5.0)
    yield Gateway(settings, service, router, producer, consumer, cache)
    await asyncio.to_thread(router.stop)


def iris_reply(request: PredictRequest) -> Reply:
    n = len(request.features)
    return encode_reply(request, "1", [0] * n, [[0.9, 0.05, 0.05]] * n, [False] * n, 1.5)


async def test_a_request_goes_out_once_and_its_reply_comes_back(gateway: Gateway) -> None:
    gateway.worker(iris_reply)
    before = now_ms()
    answer = await gateway.service.predict(MODEL, None, [ROW], timeout_ms=2000, request_id="r-1")
    assert (answer.request_id, answer.version, answer.predictions, answer.from_cache) == (
        "r-1",
        "1",
        [0],
        False,
    )
    assert answer.probabilities == [[0.9, 0.05, 0.05]] and answer.task == "classification"
    (sent,) = gateway.producer.produced
    (request,) = gateway.requests_sent()
    assert sent.key is None
    assert (sent.topic, request.model, request.version, request.features) == (
        gateway.request_topic,
        MODEL,
        "1",
        [ROW],
    )
    # The gateway looked the row up (a miss): the worker need not look again.
    assert request.source == "http" and not request.use_cache
    assert request.sent_at_ms is not None and before <= request.sent_at_ms <= now_ms()
    assert request.deadline_ms == request.sent_at_ms + 2000
    assert gateway.router.in_flight == 0 and gateway.cache.reads  # looked in the cache first


async def test_many_rows_skip_the_cache_and_come_back_in_order(gateway: Gateway) -> None:
    def labels_by_row(request: PredictRequest) -> Reply:
        n = len(request.features)
        return encode_reply(request, "1", list(range(n)), [None] * n, [False] * n, 1.0)

    gateway.worker(labels_by_row)
    rows = [ROW, [6.2, 2.9, 4.3, 1.3], [7.3, 2.9, 6.3, 1.8]]
    answer = await gateway.service.predict(MODEL, "1", rows, field="instances")
    assert answer.predictions == [0, 1, 2] and answer.probabilities is None
    assert gateway.cache.reads == []


async def test_concurrent_requests_each_get_their_own_reply(gateway: Gateway) -> None:
    def echo_id(request: PredictRequest) -> Reply:
        return encode_reply(request, "1", [request.request_id], [None], [False], 1.0)

    gateway.worker(echo_id)
    ids = [f"c{i}" for i in range(20)]
    answers = await asyncio.gather(
        *(gateway.service.predict(MODEL, None, [ROW], use_cache=False, request_id=i) for i in ids)
    )
    assert [a.predictions for a in answers] == [[i] for i in ids]
    assert gateway.router.in_flight == 0
    # Made in one loop iteration, they left in one Kafka message.
    assert len(gateway.producer.to(gateway.request_topic)) == 1
    assert sorted(r.request_id for r in gateway.requests_sent()) == sorted(ids)


async def test_a_cache_hit_is_answered_and_logged_without_a_request(gateway: Gateway) -> None:
    metadata = gateway.service.models.resolve(MODEL, "1")
    key = cache_key(gateway.cache.prefix, MODEL, version_tag("1", metadata.onnx_sha256), ROW)
    gateway.cache.stored[key] = encode_value(2, [0.1, 0.2, 0.7])
    answer = await gateway.service.predict(MODEL, None, [ROW], request_id="hit")
    assert (answer.predictions, answer.probabilities, answer.from_cache) == ([2], [[0.1, 0.2, 0.7]], True)
    assert gateway.producer.to(gateway.request_topic) == []
    (logged,) = gateway.producer.to(gateway.settings.kafka.predictions_topic)
    record = PredictionRecord.model_validate_json(logged.value)
    assert (record.request_id, record.served_by, record.from_cache, record.probability) == (
        "hit",
        "gateway",
        True,
        0.7,
    )
    assert record.features == ROW and logged.key == b"hit"


async def test_a_degraded_cache_or_use_cache_false_is_not_read(gateway: Gateway) -> None:
    gateway.worker(iris_reply)
    await gateway.service.predict(MODEL, None, [ROW], use_cache=False)
    gateway.cache.available = False
    await gateway.service.predict(MODEL, None, [ROW])
    assert gateway.cache.reads == [] and len(gateway.producer.to(gateway.request_topic)) == 2


async def test_a_worker_error_reply_becomes_the_same_error(gateway: Gateway) -> None:
    gateway.worker(lambda request: encode_error_reply(request, InvalidInput("feature 3 is out of range")))
    with pytest.raises(InvalidInput, match="feature 3 is out of range"):
        await gateway.service.predict(MODEL, None, [ROW])
    assert gateway.router.in_flight == 0


async def test_no_reply_within_the_deadline_is_a_timeout(gateway: Gateway) -> None:
    gateway.producer.on_produce = acknowledge  # delivered, but no worker answers
    with pytest.raises(DeadlineExceeded, match=f"no worker answered model '{MODEL}' within 50 ms"):
        await gateway.service.predict(MODEL, None, [ROW], timeout_ms=50)
    assert gateway.router.in_flight == 0


async def test_a_request_kafka_never_acknowledged_is_unavailable_not_a_timeout(gateway: Gateway) -> None:
    with pytest.raises(Unavailable, match="Kafka did not accept the request within 50 ms"):
        await gateway.service.predict(MODEL, None, [ROW], timeout_ms=50)


async def test_a_failed_delivery_fails_the_request_at_once(gateway: Gateway) -> None:
    def fail(message: Produced) -> None:
        acknowledge(message, KafkaError(KafkaError._MSG_TIMED_OUT, "message timed out"))

    gateway.producer.on_produce = fail
    started = asyncio.get_running_loop().time()
    with pytest.raises(Unavailable, match="could not publish to Kafka: message timed out"):
        await gateway.service.predict(MODEL, None, [ROW], timeout_ms=5000)
    assert asyncio.get_running_loop().time() - started < 2.0
    assert gateway.router.in_flight == 0


async def test_kafka_down_or_a_full_queue_answers_unavailable_without_waiting(gateway: Gateway) -> None:
    gateway.producer.health.up, gateway.producer.health.last_error = False, "all brokers down"
    with pytest.raises(Unavailable, match="Kafka is unreachable \\(all brokers down\\)"):
        await gateway.service.predict(MODEL, None, [ROW], use_cache=False)
    assert gateway.producer.produced == []
    gateway.producer.health.up = True
    gateway.producer.refuse = BufferError("queue full")
    with pytest.raises(Unavailable, match="queue is full"):
        await gateway.service.predict(MODEL, None, [ROW], use_cache=False)
    assert gateway.router.in_flight == 0


async def test_a_request_id_already_in_flight_is_refused(gateway: Gateway) -> None:
    gateway.producer.on_produce = acknowledge
    first = asyncio.create_task(
        gateway.service.predict(MODEL, None, [ROW], request_id="same", timeout_ms=500)
    )
    await asyncio.sleep(0.01)
    with pytest.raises(RequestIdInUse, match="request_id 'same' is already in flight"):
        await gateway.service.predict(MODEL, None, [ROW], request_id="same", use_cache=False)
    with pytest.raises(DeadlineExceeded):
        await first


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (
            {"model": "nope", "version": None, "rows": [ROW]},
            ModelNotFound,
            "available models: iris_classifier",
        ),
        ({"model": MODEL, "version": "9", "rows": [ROW]}, ModelNotFound, "available versions: 1"),
        ({"model": MODEL, "version": None, "rows": [ROW[:3]]}, InvalidInput, "expects 4"),
        ({"model": MODEL, "version": None, "rows": [ROW], "timeout_ms": 0}, InvalidInput, "timeout_ms is 0"),
    ],
)
async def test_bad_requests_are_refused_before_anything_is_sent(
    gateway: Gateway, call: dict[str, object], error: type[RtmlError], match: str
) -> None:
    with pytest.raises(error, match=match):
        await gateway.service.predict(**call)  # type: ignore[arg-type]
    assert gateway.producer.produced == [] and gateway.cache.reads == []


async def test_a_dead_reply_consumer_fails_the_waiting_request(gateway: Gateway) -> None:
    gateway.producer.on_produce = acknowledge
    waiting = asyncio.create_task(gateway.service.predict(MODEL, None, [ROW], timeout_ms=5000))
    while gateway.router.in_flight == 0:
        await asyncio.sleep(0.005)
    gateway.consumer.die()
    with pytest.raises(Unavailable, match="reply consumer stopped"):
        await asyncio.wait_for(waiting, 2.0)
    assert orjson.loads(gateway.producer.produced[0].value)["requests"][0]["model"] == MODEL


async def test_a_busy_gateway_leaves_the_lookup_to_the_worker_while_rows_rarely_hit(
    gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    """gateway/hit_rate.py: under load with a hit ratio below MIN_HIT_RATIO the worker reads the
    cache (use_cache true on the wire, no gateway read); hits the replies report bring the
    gateway's own lookups back; lightly loaded it always looks up."""
    worker_hits = False

    def reply(request: PredictRequest) -> Reply:
        return encode_reply(request, "1", [0], [[0.9, 0.05, 0.05]], [worker_hits], 1.0)

    gateway.worker(reply)
    monkeypatch.setattr(gateway.service, "_busy", lambda: True)
    gateway.service._hits.ratio = 0.0  # as after a long run of random rows
    answer = await gateway.service.predict(MODEL, None, [ROW])
    assert gateway.cache.reads == [] and answer.from_cache is False
    assert [r.use_cache for r in gateway.requests_sent()] == [True]  # the worker reads it

    worker_hits = True  # the rows start repeating: the worker answers them from the cache
    answered = 0
    while gateway.service._hits.ratio < hit_rate.MIN_HIT_RATIO:
        assert (await gateway.service.predict(MODEL, None, [ROW])).from_cache
        answered += 1
        assert answered < 60, "the workers' hits did not raise the ratio"
    assert gateway.cache.reads == []
    await gateway.service.predict(MODEL, None, [ROW])
    assert len(gateway.cache.reads) == 1  # looking up again

    gateway.service._hits.ratio = 0.0
    monkeypatch.setattr(gateway.service, "_busy", lambda: False)
    await gateway.service.predict(MODEL, None, [ROW])
    assert len(gateway.cache.reads) == 2  # lightly loaded: always


def test_the_hit_ratio_falls_below_the_threshold_after_a_few_hundred_misses() -> None:
    rate = hit_rate.HitRate()
    assert rate.worth_looking_up(busy=True)  # a new gateway looks up
    misses = 0
    while rate.worth_looking_up(busy=True):
        rate.observe(False)
        misses += 1
    assert 300 < misses < 600
    assert rate.worth_looking_up(busy=False)
