"""Where the time of one request goes: sequential (concurrency 1) latency, stage by stage.

``python -m bench.breakdown [--requests 400]`` starts local Kafka/Redis (unless running or
given by KAFKA_BOOTSTRAP_SERVERS/REDIS_URL) and the stack (two workers serving
iris_classifier, one gateway), then times, one request after another:

1. ``kafka hop``: produce -> consume on a scratch topic (one hop, no rtml code);
2. ``kafka round trip via worker``: a request produced straight to the request topic with a
   reply address, until its reply is consumed (two hops + the worker; ``worker_ms`` from the
   reply says how much of it the worker spent);
3. ``gateway reply path``: the same round trip through the gateway's own PolledProducer and
   ReplyRouter on uvloop, without HTTP;
4. ``HTTP GET /health``: the HTTP floor of the gateway;
5. ``HTTP predict`` with ``use_cache: false``, as a cache miss, and as a cache hit.

The differences between the rows locate the cost (bench/RESULTS.md reads them). Results go
to stdout and ``bench/out/breakdown-<UTC stamp>.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson
from confluent_kafka import TopicPartition

from bench.paths import REPO_ROOT
from bench.services import Infra, RtmlStack, ensure_models, start_stack
from gateway.replies import ReplyRouter
from runtime.kafka import (
    REPLY_CONSUMER,
    REQUEST_PRODUCER,
    KafkaProducer,
    PolledProducer,
    TopicSpec,
    ensure_topics,
    new_consumer,
)
from runtime.settings import KafkaSettings, Settings, load_settings

MODEL = "iris_classifier"
OUT_DIR = REPO_ROOT / "bench" / "out"
REPLY_TIMEOUT_S = 5.0
# The gateway's clients: its request producer, and a reply consumer read by manual assignment.
PRODUCER_CHOICES = {"message.timeout.ms": int(REPLY_TIMEOUT_S * 1000)}


def percentiles(samples_ms: Sequence[float]) -> dict[str, float]:
    ordered = sorted(samples_ms)

    def pick(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    return {"p50_ms": pick(0.5), "p90_ms": pick(0.9), "p99_ms": pick(0.99), "n": len(ordered)}


def timed(n: int, one: Callable[[int], None]) -> list[float]:
    samples = []
    for i in range(n):
        began = time.perf_counter()
        one(i)
        samples.append((time.perf_counter() - began) * 1000)
    return samples


def request_value(request_id: str, reply_to: str, i: int) -> bytes:
    now = int(time.time() * 1000)
    return orjson.dumps(
        {
            "request_id": request_id,
            "model": MODEL,
            "features": [[5.0 + i * 1e-4, 3.0, 1.5, 0.2]],
            "source": "http",
            "reply_to": reply_to,
            "deadline_ms": now + int(REPLY_TIMEOUT_S * 1000),
            "sent_at_ms": now,
            "use_cache": False,
        }
    )


def kafka_hop(kafka: KafkaSettings, n: int) -> list[float]:
    topic = f"bench.hop.{uuid.uuid4().hex[:8]}"
    ensure_topics(kafka, [TopicSpec(topic, 1, "none")])
    producer = KafkaProducer(kafka, REQUEST_PRODUCER, PRODUCER_CHOICES)
    consumer = new_consumer(kafka, REPLY_CONSUMER, {"group.id": topic})
    consumer.assign([TopicPartition(topic, 0, 0)])

    def one(_i: int) -> None:
        producer.produce(topic, b"x" * 200)
        producer.poll(0)
        if not consumer.consume(1, REPLY_TIMEOUT_S):
            raise TimeoutError("hop message not consumed")

    try:
        consumer.consume(1, 1.0)  # join the partition before timing
        return timed(n, one)
    finally:
        producer.flush(5)
        consumer.close()


def worker_round_trip(kafka: KafkaSettings, request_topic: str, reply_topic: str, n: int) -> dict[str, Any]:
    ensure_topics(kafka, [TopicSpec(reply_topic, 1, "correlation id")])
    producer = KafkaProducer(kafka, REQUEST_PRODUCER, PRODUCER_CHOICES)
    consumer = new_consumer(kafka, REPLY_CONSUMER, {"group.id": reply_topic})
    consumer.assign([TopicPartition(reply_topic, 0, 0)])
    worker_ms: list[float] = []

    def one(i: int) -> None:
        request_id = f"rt-{uuid.uuid4().hex[:12]}"
        producer.produce(request_topic, request_value(request_id, reply_topic, i), request_id.encode())
        producer.poll(0)
        replies = consumer.consume(1, REPLY_TIMEOUT_S)
        if not replies or replies[0].error() is not None:
            raise TimeoutError("no reply from the worker")
        (reply,) = orjson.loads(replies[0].value() or b"{}")["replies"]  # a PredictReplyBatch
        worker_ms.append(float(reply["worker_ms"]))

    try:
        samples = timed(n, one)
    finally:
        producer.flush(5)
        consumer.close()
    return {**percentiles(samples), "worker_ms": percentiles(worker_ms)}


def gateway_reply_path(kafka: KafkaSettings, request_topic: str, reply_topic: str, n: int) -> list[float]:
    ensure_topics(kafka, [TopicSpec(reply_topic, 1, "correlation id")])
    producer = PolledProducer(kafka, REQUEST_PRODUCER, PRODUCER_CHOICES)
    router = ReplyRouter(kafka, reply_topic, "breakdown")

    async def run() -> list[float]:
        await asyncio.to_thread(router.start, asyncio.get_running_loop())
        samples = []
        for i in range(n):
            request_id = f"gw-{uuid.uuid4().hex[:12]}"
            began = time.perf_counter()
            future = router.register(request_id.encode())
            producer.produce(request_topic, request_value(request_id, reply_topic, i), request_id.encode())
            await asyncio.wait_for(future, REPLY_TIMEOUT_S)
            router.discard(request_id.encode())
            samples.append((time.perf_counter() - began) * 1000)
        return samples

    import uvloop

    try:
        return uvloop.run(run())
    finally:
        router.stop()
        producer.close()


def http_stages(base_url: str, n: int) -> dict[str, dict[str, float]]:
    host, port = base_url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=REPLY_TIMEOUT_S)
    tag = uuid.uuid4().hex[:8]

    def get(_i: int) -> None:
        connection.request("GET", "/health")
        connection.getresponse().read()

    def predict(use_cache: bool, vary: bool) -> Callable[[int], None]:
        def one(i: int) -> None:
            first = 5.0 + (i * 1e-4 if vary else 0.0) + (1.0 if use_cache else 0.0)
            body = {"model_name": MODEL, "features": [first, 3.1, 1.6, 0.3], "use_cache": use_cache}
            connection.request(
                "POST", "/api/v1/predict", orjson.dumps(body), {"content-type": "application/json"}
            )
            response = connection.getresponse()
            payload = response.read()
            if response.status != 200:
                raise RuntimeError(f"predict answered {response.status}: {payload[:200]!r}")

        return one

    predict(True, False)(0)  # warm the cache entry the hit stage reads
    stages = {
        "HTTP GET /health": timed(n, get),
        "HTTP predict, use_cache false": timed(n, predict(False, True)),
        f"HTTP predict, cache miss ({tag})": timed(n, predict(True, True)),
        "HTTP predict, cache hit": timed(n, predict(True, False)),
    }
    connection.close()
    return {name.split(" (")[0]: percentiles(samples) for name, samples in stages.items()}


def measure(settings: Settings, stack: RtmlStack, bootstrap: str, n: int) -> dict[str, Any]:
    kafka = settings.kafka.model_copy(update={"bootstrap_servers": bootstrap})
    reply_prefix = stack.namespace.env()["RTML_KAFKA__REPLY_TOPIC_PREFIX"]  # workers refuse others
    request_topic = stack.namespace.request_topic(MODEL)
    results: dict[str, Any] = {"kafka hop": percentiles(kafka_hop(kafka, n))}
    results["kafka round trip via worker"] = worker_round_trip(
        kafka, request_topic, f"{reply_prefix}breakdown-{uuid.uuid4().hex[:8]}", n
    )
    results["gateway reply path"] = percentiles(
        gateway_reply_path(kafka, request_topic, f"{reply_prefix}breakdown-{uuid.uuid4().hex[:8]}", n)
    )
    results.update(http_stages(stack.base_url, n))
    return results


def render(results: dict[str, Any]) -> str:
    def row(label: str, figures: dict[str, float]) -> str:
        return f"{label:34} {figures['p50_ms']:8.2f} {figures['p90_ms']:8.2f} {figures['p99_ms']:8.2f}"

    lines = [f"{'stage':34} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8}"]
    for stage, figures in results.items():
        lines.append(row(stage, figures))
        if "worker_ms" in figures:
            lines.append(row("  of which in the worker", figures["worker_ms"]))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.breakdown", description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=400, help="sequential requests per stage")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    settings = load_settings()
    registry = ensure_models(settings, [MODEL])
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    services = Infra.up(settings)
    try:
        stack = start_stack(
            services.bootstrap,
            services.redis_url,
            registry.root,
            [MODEL],
            2,
            OUT_DIR / f"logs-breakdown-{stamp}",
            settings.kafka.request_partitions,
        )
        try:
            results = measure(settings, stack, services.bootstrap, args.requests)
        finally:
            stack.stop()
    finally:
        services.down(settings)
    print(render(results))
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    path = OUT_DIR / f"breakdown-{stamp}.json"
    path.write_text(json.dumps({"stamp": stamp, "requests": args.requests, "stages": results}, indent=2))
    print(f"\nwrote {path.relative_to(REPO_ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
