"""One ``predict_from_csv`` run: read rows in chunks, keep a bounded window of chunks in flight,
write their outcomes in input order. Memory is bounded by the window, not by the file."""

from __future__ import annotations

import csv
import os
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from rtml_client import csvio
from rtml_client.errors import InvalidInput
from rtml_client.progress import Progress
from rtml_client.results import CsvReport, ModelInfo

if TYPE_CHECKING:
    from rtml_client.batch import BatchPredictor

MAX_REPORTED_FAILURES = 100

PathOrLines = str | os.PathLike[str] | Iterable[str]
PathOrStream = str | os.PathLike[str] | IO[str]
Outcomes = Future[list[csvio.RowOutcome]]


@dataclass
class CsvJob:
    """What to predict and how; the counters are filled in as rows are written."""

    predictor: BatchPredictor
    model: str
    version: str | int | None
    use_cache: bool
    chunk_size: int
    workers: int
    rows: int = 0
    failed: int = 0
    failures: list[dict[str, Any]] = field(default_factory=list)

    def predict(self, rows: list[list[float]]) -> list[csvio.RowOutcome]:
        return self.predictor.predict_rows(self.model, rows, self.use_cache, self.version)

    def record(self, line: int, outcome: csvio.RowOutcome) -> None:
        self.rows += 1
        if outcome.error is not None:
            self.failed += 1
            if len(self.failures) < MAX_REPORTED_FAILURES:
                self.failures.append({"line": line, "error": outcome.error})


def run_csv(
    job: CsvJob,
    info: ModelInfo,
    source: PathOrLines,
    target: PathOrStream,
    feature_columns: Sequence[str] | None,
    progress: bool | None,
    delimiter: str,
) -> CsvReport:
    started = time.perf_counter()
    with ExitStack() as stack:
        lines = csvio.CountingLines(_open_lines(stack, source))
        reader = csv.reader(lines, delimiter=delimiter)
        header = next(reader, None)
        if header is None:
            raise InvalidInput("the CSV input is empty: expected a header line")
        columns = csvio.map_columns(header, info.feature_names, info.n_features, feature_columns)
        writer = csv.writer(_open_output(stack, target), delimiter=delimiter, lineterminator="\n")
        writer.writerow(csvio.output_header(header, info.classes))
        bar = Progress(progress, _size(source))
        n_classes, width = len(info.classes or []), columns.width

        def write(chunk: csvio.Chunk, outcomes: Outcomes) -> None:
            rows = zip(chunk.lines, chunk.fields, chunk.outcomes(outcomes.result()), strict=True)
            for line, fields, outcome in rows:
                writer.writerow(csvio.output_row(fields, outcome, n_classes, width))
                job.record(line, outcome)
            bar.update(job.rows, job.failed, lines.chars)

        _stream(job, _chunks(reader, columns, job.chunk_size), write)
        bar.update(job.rows, job.failed, lines.chars, final=True)
    return _report(job, columns, target, time.perf_counter() - started)


def _stream(
    job: CsvJob, chunks: Iterator[csvio.Chunk], write: Callable[[csvio.Chunk, Outcomes], None]
) -> None:
    """Submit chunks to ``job.workers`` threads, never more than ``2 * workers + 1`` pending;
    write finished chunks from the oldest, so the output keeps the input's order."""
    window: deque[tuple[csvio.Chunk, Outcomes]] = deque()
    with ThreadPoolExecutor(job.workers) as pool:
        try:
            for chunk in chunks:
                window.append((chunk, pool.submit(job.predict, chunk.sendable())))
                while len(window) > 2 * job.workers or (window and window[0][1].done()):
                    write(*window.popleft())
            while window:
                write(*window.popleft())
        finally:
            for _chunk, pending in window:
                pending.cancel()


def _chunks(reader: Any, columns: csvio.ColumnMap, size: int) -> Iterator[csvio.Chunk]:
    """``reader`` is a ``csv.reader`` (its ``line_num`` numbers the rows for error reports)."""
    chunk = csvio.Chunk()
    for fields in reader:
        if not fields:  # blank line
            continue
        chunk.lines.append(reader.line_num)
        chunk.fields.append(fields)
        chunk.parsed.append(csvio.parse_row(fields, columns))
        if len(chunk.fields) == size:
            yield chunk
            chunk = csvio.Chunk()
    if chunk.fields:
        yield chunk


def _report(job: CsvJob, columns: csvio.ColumnMap, target: PathOrStream, elapsed: float) -> CsvReport:
    return CsvReport(
        rows=job.rows,
        succeeded=job.rows - job.failed,
        failed=job.failed,
        failures=job.failures,
        column_mapping=columns.mode,
        output_path=str(target) if isinstance(target, str | os.PathLike) else None,
        elapsed_s=elapsed,
        rows_per_s=job.rows / elapsed if elapsed > 0 else 0.0,
    )


def _open_lines(stack: ExitStack, source: PathOrLines) -> Iterable[str]:
    if isinstance(source, str | os.PathLike):
        return stack.enter_context(Path(source).open(newline="", encoding="utf-8"))
    return source


def _open_output(stack: ExitStack, target: PathOrStream) -> IO[str]:
    if isinstance(target, str | os.PathLike):
        return stack.enter_context(Path(target).open("w", newline="", encoding="utf-8"))
    return target


def _size(source: PathOrLines) -> int | None:
    return os.path.getsize(source) if isinstance(source, str | os.PathLike) else None
