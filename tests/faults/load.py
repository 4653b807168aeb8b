"""Bounded load for the fault-injection suite: HTTP through a client-side balancer over the live
gateways, and direct Kafka producers; every request and its outcome is recorded for the checks.

The HTTP side behaves like the load balancer in front of a real deployment: a connection refused
(nothing was sent) goes to the next gateway, and a gateway that refused is skipped for a second. A
request that was sent and whose connection then broke (a gateway killed with it in flight) has no
process left to answer it; it is recorded as ``lost_in_crash`` with its time, and the suite checks
that only requests in flight at a gateway kill end that way.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import httpx
import orjson
from confluent_kafka import Producer

MODEL = "iris_classifier"
DEADLINE_MS = 2000
# The rows the HTTP and direct load draw from (and the expected answers are computed for).
ROWS = [
    [round(random.Random(i).uniform(4.0, 8.0), 1), 3.0, round(1 + i % 60 / 10, 1), 1.2] for i in range(200)
]


@dataclass(frozen=True)
class HttpOutcome:
    sent_at: float
    elapsed_s: float
    gateway: int
    status: int  # 0: the connection broke after the request was sent
    row: int
    prediction: object = None
    error_code: str | None = None


@dataclass
class HttpLoad:
    """``threads`` senders sharing a request rate over the gateways in ``urls``."""

    urls: Sequence[str]
    rate: float
    threads: int = 8
    outcomes: list[HttpOutcome] = field(default_factory=list)
    connect_retries: int = 0
    refused: Counter[tuple[int, str]] = field(default_factory=Counter)
    """Connection attempts that sent nothing, by gateway and error (for the report)."""
    refused_at: list[float] = field(default_factory=list)
    on_all_refused: Callable[[], str] | None = None
    """Called the first few times every gateway refused a request: what it returns (the state of
    the gateways then) goes into ``all_refused`` for the report."""
    all_refused: list[str] = field(default_factory=list)
    crashes: list[str] = field(default_factory=list)
    """Exceptions that ended a sender thread: the suite fails on any (the load would shrink unseen)."""
    _stop: threading.Event = field(default_factory=threading.Event)
    _workers: list[threading.Thread] = field(default_factory=list)
    _down_until: dict[int, float] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> None:
        for index in range(self.threads):
            thread = threading.Thread(target=self._run, args=(index,), name=f"http-load-{index}", daemon=True)
            thread.start()
            self._workers.append(thread)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._workers:
            thread.join(timeout=DEADLINE_MS / 1000 + 10)

    def _run(self, index: int) -> None:
        interval = self.threads / self.rate
        rng = random.Random(index)
        next_at = time.monotonic() + rng.uniform(0, interval)
        # A client per gateway per thread, so a connection pool never outlives its gateway's crash
        # in another thread's hands.
        clients = [httpx.Client(timeout=DEADLINE_MS / 1000 + 10) for _ in self.urls]
        try:
            while not self._stop.is_set():
                delay = next_at - time.monotonic()
                if delay > 0:
                    self._stop.wait(delay)
                next_at = max(next_at + interval, time.monotonic() - interval)
                self._send_one(clients, rng, index)
        except Exception as exc:  # recorded for the checks, which fail on it
            with self._lock:
                self.crashes.append(f"{threading.current_thread().name}: {exc!r}")
            raise
        finally:
            for client in clients:
                client.close()

    def _send_one(self, clients: list[httpx.Client], rng: random.Random, index: int) -> None:
        row = rng.randrange(len(ROWS))
        # One row in five may be answered from the cache (so a Redis kill changes something); the
        # rest must travel through Kafka and a worker, or a worker or broker kill would go unseen.
        body = {
            "model_name": MODEL,
            "features": ROWS[row],
            "timeout_ms": DEADLINE_MS,
            "use_cache": row % 5 == 0,
        }
        order = self._gateway_order(index)
        for gateway in order:
            sent_at = time.monotonic()
            try:
                response = clients[gateway].post(f"{self.urls[gateway]}/api/v1/predict", json=body)
            except httpx.ConnectError as exc:
                self._mark_down(gateway)  # nothing was sent: the balancer tries the next gateway
                with self._lock:
                    self.connect_retries += 1
                    self.refused[gateway, str(exc)[:80]] += 1
                    self.refused_at.append(sent_at)
                continue
            except httpx.TransportError as exc:
                self._mark_down(gateway)
                # The exception's class stands in for an error code: what broke (reset, read, ...).
                outcome = HttpOutcome(
                    sent_at, time.monotonic() - sent_at, gateway, 0, row, None, type(exc).__name__
                )
                self._record(outcome)
                return
            self._record(_outcome(response, sent_at, gateway, row))
            return
        if self.on_all_refused is not None and len(self.all_refused) < 3:
            self.all_refused.append(f"{time.monotonic():.1f}: {self.on_all_refused()}")
        self._stop.wait(0.05)  # every gateway refused: nothing was sent, nothing to account for

    def _gateway_order(self, index: int) -> list[int]:
        now = time.monotonic()
        count = len(self.urls)
        first = (index + len(self.outcomes)) % count
        order = [(first + k) % count for k in range(count)]
        return [g for g in order if self._down_until.get(g, 0) <= now] or order

    def _mark_down(self, gateway: int) -> None:
        self._down_until[gateway] = time.monotonic() + 1.0

    def _record(self, outcome: HttpOutcome) -> None:
        with self._lock:
            self.outcomes.append(outcome)


def _outcome(response: httpx.Response, sent_at: float, gateway: int, row: int) -> HttpOutcome:
    elapsed = time.monotonic() - sent_at
    try:
        body = response.json()
    except ValueError:
        body = None  # a non-JSON answer: the checks report it
    if response.status_code == 200 and isinstance(body, dict):
        return HttpOutcome(sent_at, elapsed, gateway, 200, row, prediction=body.get("prediction"))
    code = body.get("error", {}).get("code") if isinstance(body, dict) else None
    return HttpOutcome(sent_at, elapsed, gateway, response.status_code, row, error_code=code)


@dataclass
class DirectLoad:
    """One producer writing single-row requests straight to the model's request topic, as a fraud
    pipeline would. Only requests the broker acknowledged count as sent."""

    bootstrap: str
    topic: str
    rate: float
    prefix: str = field(default_factory=lambda: f"direct-{uuid.uuid4().hex[:8]}-")
    acknowledged: set[str] = field(default_factory=set)
    failed: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="direct-load", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=120)

    def _run(self) -> None:
        # Long delivery timeout: a message written while the broker is down waits for it to return.
        producer = Producer(
            {"bootstrap.servers": self.bootstrap, "enable.idempotence": True, "linger.ms": 5,
             "message.timeout.ms": 120_000, "reconnect.backoff.max.ms": 1000}
        )  # fmt: skip
        interval, sequence, next_at = 1 / self.rate, 0, time.monotonic()
        while not self._stop.is_set():
            delay = next_at - time.monotonic()
            if delay > 0:
                self._stop.wait(delay)
            next_at += interval
            request_id = f"{self.prefix}{sequence}"
            sequence += 1
            request = {
                "schema_version": 1,
                "request_id": request_id,
                "model": MODEL,
                "features": [ROWS[sequence % 200]],
            }
            try:
                producer.produce(self.topic, orjson.dumps(request), on_delivery=self._delivered(request_id))
            except BufferError:
                self.failed += 1  # not accepted by the client: never sent
            producer.poll(0)
        producer.flush(130)

    def _delivered(self, request_id: str) -> object:
        def on_delivery(error: object, _message: object) -> None:
            if error is None:
                self.acknowledged.add(request_id)
            else:
                self.failed += 1

        return on_delivery
