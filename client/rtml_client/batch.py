"""Many predictions: in-memory lists in chunks, and CSV files of any size streamed in chunks."""

from __future__ import annotations

import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from types import TracebackType
from typing import Any

import httpx

from rtml_client import csvio
from rtml_client.client import MLClient
from rtml_client.csv_run import CsvJob, PathOrLines, PathOrStream, run_csv
from rtml_client.errors import ConnectionFailed, InvalidInput, PayloadTooLarge, RtmlClientError
from rtml_client.protocol import DEFAULT_TIMEOUT_S, DEFAULT_URL, Features
from rtml_client.results import BatchResult, CsvReport

DEFAULT_CHUNK_SIZE = 256  # the workers' default rows per ONNX Runtime call


class BatchPredictor:
    """Predict many rows through the gateway, ``chunk_size`` rows a request, up to ``max_workers``
    requests in flight. Takes an existing :class:`MLClient` (``client=``) or builds its own."""

    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        api_key: str | None = None,
        timeout: float = DEFAULT_TIMEOUT_S,
        retries: int = 3,
        *,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        max_workers: int = 4,
        client: MLClient | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if chunk_size < 1 or max_workers < 1:
            raise ValueError("chunk_size and max_workers must be >= 1")
        self._owns_client = client is None
        self.client = client or MLClient(
            base_url, api_key, timeout, retries, max_connections=max(max_workers, 4), transport=transport
        )
        self.chunk_size = chunk_size
        self.max_workers = max_workers

    def __enter__(self) -> BatchPredictor:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        if self._owns_client:
            self.client.close()

    def predict_batch(
        self,
        model_name: str,
        features_list: Sequence[Features] | Any,
        parallel: bool = True,
        chunk_size: int | None = None,
        use_cache: bool = True,
        model_version: str | int | None = None,
    ) -> BatchResult:
        """All rows' predictions in input order, as one :class:`BatchResult` (``chunks`` says how
        many requests were sent). Any failed chunk raises its error."""
        size = chunk_size or self.chunk_size
        rows = list(features_list)
        chunks = [rows[i : i + size] for i in range(0, len(rows), size)]
        started = time.perf_counter()

        def send(chunk: list[Any]) -> BatchResult:
            return self.client.batch_predict(model_name, chunk, use_cache, model_version)

        if parallel and len(chunks) > 1:
            with ThreadPoolExecutor(min(self.max_workers, len(chunks))) as pool:
                results = list(pool.map(send, chunks))
        else:
            results = [send(chunk) for chunk in chunks]
        return _merge(model_name, results, (time.perf_counter() - started) * 1000)

    def predict_from_csv(
        self,
        model_name: str,
        csv_path: PathOrLines,
        output_path: PathOrStream,
        *,
        chunk_size: int | None = None,
        parallel: bool = True,
        feature_columns: Sequence[str] | None = None,
        use_cache: bool = True,
        model_version: str | int | None = None,
        progress: bool | None = None,
        delimiter: str = ",",
    ) -> CsvReport:
        """Stream ``csv_path`` (a path, an open text file or any iterable of lines; first line a
        header) through the model and write ``output_path``: every input column, then
        ``prediction``, ``probability``, ``probability_<class>`` per class and ``error`` (empty when
        the row succeeded). Rows that cannot be parsed or are refused get their message in
        ``error`` and the run goes on; at most ``2 * max_workers + 1`` chunks are held at any time,
        so memory stays flat whatever the file size. Columns map by the model's feature names (or
        ``feature_columns``, or by position when the file has exactly as many columns as
        features). ``progress`` (default: when stderr is a terminal) draws a progress line.
        Raises :class:`ConnectionFailed` if the gateway cannot be reached at all (the output then
        holds every row finished before)."""
        info = self.client.get_model_info(model_name)
        job = CsvJob(
            predictor=self,
            model=model_name,
            version=model_version,
            use_cache=use_cache,
            chunk_size=chunk_size or self.chunk_size,
            workers=self.max_workers if parallel else 1,
        )
        return run_csv(job, info, csv_path, output_path, feature_columns, progress, delimiter)

    def predict_rows(
        self, model_name: str, rows: list[list[float]], use_cache: bool, model_version: str | int | None
    ) -> list[csvio.RowOutcome]:
        """One outcome per row. A refused chunk (422/413) is split in halves until the refused
        rows are isolated; other errors fail the whole chunk, except connection failures, which
        are raised."""
        if not rows:
            return []
        try:
            result = self.client.batch_predict(model_name, rows, use_cache, model_version)
        except (InvalidInput, PayloadTooLarge) as exc:
            if len(rows) == 1:
                return [csvio.RowOutcome(error=f"{exc.code}: {exc.message}")]
            middle = len(rows) // 2
            head = self.predict_rows(model_name, rows[:middle], use_cache, model_version)
            return head + self.predict_rows(model_name, rows[middle:], use_cache, model_version)
        except ConnectionFailed:
            raise
        except RtmlClientError as exc:
            return [csvio.RowOutcome(error=f"{exc.code}: {exc.message}")] * len(rows)
        probabilities: list[list[float] | None] = [None] * len(rows)
        if result.probabilities:
            probabilities = list(result.probabilities)
        return [
            csvio.RowOutcome(prediction, probs)
            for prediction, probs in zip(result.predictions, probabilities, strict=True)
        ]


def _merge(model_name: str, results: list[BatchResult], latency_ms: float) -> BatchResult:
    predictions = [p for result in results for p in result.predictions]
    probabilities = [row for result in results for row in result.probabilities or []]
    return BatchResult(
        predictions=predictions,
        probabilities=probabilities if len(probabilities) == len(predictions) else None,
        model_name=model_name,
        model_version=results[0].model_version if results else None,
        model_versions=sorted({result.model_version for result in results}),
        count=len(predictions),
        from_cache=bool(results) and all(result.from_cache for result in results),
        total_latency_ms=latency_ms,
        chunks=len(results),
    )
