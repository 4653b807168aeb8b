"""Asynchronous client for the rtml gateway: the same methods as :class:`~rtml_client.MLClient`, awaited."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Awaitable, Callable, Collection, Sequence
from types import TracebackType
from typing import Any

import httpx

from rtml_client import bench, protocol
from rtml_client.protocol import DEFAULT_TIMEOUT_S, DEFAULT_URL, Call, Features
from rtml_client.results import BatchResult, BenchmarkResult, Health, ModelInfo, PredictionResult, Readiness
from rtml_client.retry import RetryPolicy


class AsyncMLClient:
    """Asynchronous client for the rtml HTTP API, over one pooled ``httpx.AsyncClient``. Use it
    as an async context manager, or await :meth:`close`.

    Failed calls raise :class:`~rtml_client.errors.RtmlClientError` subclasses carrying the
    server's message. 429, 503 and connection failures are retried ``retries`` times with
    exponential backoff and jitter, honouring ``Retry-After``; other errors are raised at once.

    >>> async with AsyncMLClient("http://localhost:8080") as client:  # doctest: +SKIP
    ...     (await client.predict("iris_classifier", [5.1, 3.5, 1.4, 0.2]))["prediction"]
    0
    """

    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        api_key: str | None = None,
        timeout: float = DEFAULT_TIMEOUT_S,
        retries: int = 3,
        *,
        retry_policy: RetryPolicy | None = None,
        max_connections: int = 32,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        """``api_key`` is sent as ``Authorization: Bearer``; ``timeout`` (seconds) bounds each
        attempt; ``retry_policy`` overrides ``retries`` with a full policy; ``transport`` replaces
        the network (``httpx.MockTransport`` in tests)."""
        self.base_url = base_url.rstrip("/")
        self.retry_policy = retry_policy or RetryPolicy(retries=retries)
        self._sleep = sleep
        options = protocol.client_kwargs(base_url, api_key, timeout, max_connections)
        self._http = httpx.AsyncClient(transport=transport, **options)

    async def __aenter__(self) -> AsyncMLClient:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        await self._http.aclose()

    async def _send(self, call: Call, answers: Collection[int] = ()) -> httpx.Response:
        """Send with retries; a 2xx (or a status in ``answers``) is returned, errors raised typed."""
        for attempt in itertools.count():
            try:
                response = await self._http.request(call.method, call.path, json=call.json)
            except httpx.TransportError as exc:
                delay = protocol.retry_after_transport(self.retry_policy, attempt, exc, self.base_url)
            else:
                if response.is_success or response.status_code in answers:
                    return response
                delay = protocol.retry_after_response(self.retry_policy, attempt, response)
            await self._sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _timed(self, call: Call) -> tuple[Any, float]:
        started = time.perf_counter()
        body = protocol.decode(await self._send(call))
        return body, (time.perf_counter() - started) * 1000

    async def predict(
        self,
        model_name: str,
        features: Features,
        use_cache: bool = True,
        model_version: str | int | None = None,
        *,
        request_id: str | None = None,
        timeout_ms: int | None = None,
        routing_key: str | None = None,
    ) -> PredictionResult:
        """One prediction. Without ``model_version`` the model's traffic policy picks the version
        (``routing_key`` keeps a caller on one A/B arm); ``timeout_ms`` is the
        gateway's deadline for this request (its default: 5000)."""
        call = protocol.predict_call(
            model_name, features, use_cache, model_version, request_id, timeout_ms, routing_key
        )
        return protocol.prediction(*await self._timed(call))

    async def batch_predict(
        self,
        model_name: str,
        features_list: Sequence[Features] | Any,
        use_cache: bool = True,
        model_version: str | int | None = None,
        *,
        timeout_ms: int | None = None,
    ) -> BatchResult:
        """Many rows in one request (one Kafka message, one ONNX Runtime call on the worker).
        For more rows than the gateway takes at once, send chunks (as ``BatchPredictor`` does)."""
        call = protocol.batch_call(model_name, features_list, use_cache, model_version, timeout_ms)
        return protocol.batch(*await self._timed(call))

    async def get_model_info(self, name: str) -> ModelInfo:
        return ModelInfo(protocol.decode(await self._send(Call("GET", f"{protocol.MODELS}/{name}"))))

    async def list_models(self) -> list[ModelInfo]:
        body = protocol.decode(await self._send(Call("GET", protocol.MODELS)))
        return [ModelInfo(entry) for entry in body["models"]]

    async def health_check(self) -> Health:
        """Liveness; the result is truthy when the gateway says ``status: ok``."""
        return Health(protocol.decode(await self._send(Call("GET", "/health"))))

    async def ready(self) -> Readiness:
        """Readiness; a 503 is an answer here (falsy result with ``reasons``), not an error."""
        return Readiness(protocol.decode_readiness(await self._send(Call("GET", "/ready"), answers={503})))

    async def get_metrics(self) -> str:
        """The gateway's Prometheus exposition text."""
        return (await self._send(Call("GET", "/metrics"))).text

    async def benchmark(
        self,
        model_name: str,
        features: Features,
        n_requests: int = 1000,
        concurrency: int = 1,
        use_cache: bool = True,
    ) -> BenchmarkResult:
        """Send ``n_requests`` predictions from ``concurrency`` tasks; latency statistics (ms)
        of the successful ones and their throughput. Failed requests are counted in
        ``n_errors``/``errors_by_code``; if every request failed, the first error is raised."""
        row = protocol.as_row(features)

        async def one() -> float:
            return (await self.predict(model_name, row, use_cache=use_cache)).latency_ms

        return await bench.run_async(one, n_requests, concurrency)
