"""``rtml-client``: predictions, CSV batches, benchmarks and model listings against a gateway.

    rtml-client predict MODEL --features 5.1 3.5 1.4 0.2      one prediction
    rtml-client predict MODEL --csv in.csv --out out.csv       a CSV of any size, streamed
    rtml-client bench MODEL [-n 1000] [-c 4]                   latency percentiles and throughput
    rtml-client models list | show NAME                        what the gateway serves

Human-readable output by default, ``--json`` for scripts. The server's ``rtml`` command offers
the same ``predict`` and ``bench`` subcommands through :func:`add_commands` and :func:`run`.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
from collections.abc import Callable, Sequence
from typing import Any

from rtml_client.batch import BatchPredictor
from rtml_client.client import MLClient
from rtml_client.errors import (
    ConnectionFailed,
    ModelNotFound,
    RtmlClientError,
    ServerError,
    Timeout,
    Unavailable,
)
from rtml_client.protocol import DEFAULT_TIMEOUT_S, DEFAULT_URL
from rtml_client.results import BenchmarkResult, CsvReport, ModelInfo, PredictionResult

DESCRIPTION = """Predictions, CSV batches, benchmarks and model listings against an rtml gateway.

  rtml-client predict MODEL --features 5.1 3.5 1.4 0.2   one prediction
  rtml-client predict MODEL --csv in.csv --out out.csv    a CSV of any size, streamed in chunks
  rtml-client bench MODEL [-n 1000] [-c 4]                latency percentiles and throughput
  rtml-client models list | show NAME                     what the gateway serves

Human-readable output on a terminal, --json for scripts."""

EXIT_CODES = """exit codes: 0 success; 1 some rows or requests failed (the rest was written);
2 usage error or input refused (400/413/422); 3 model not found; 4 gateway unavailable,
unreachable or timed out (503/504); 5 other server error"""

Command = Callable[[argparse.Namespace], int]


def add_commands(commands: Any) -> None:
    """Add ``predict`` and ``bench`` to an ``add_subparsers()`` object; dispatch with :func:`run`."""
    predict = commands.add_parser("predict", help="predict one row or a CSV file through a gateway")
    _predict_arguments(predict)
    bench = commands.add_parser("bench", help="benchmark a model through a gateway")
    _bench_arguments(bench)


def run(args: argparse.Namespace) -> int:
    """Run a command parsed by a parser extended with :func:`add_commands`; returns the exit code."""
    command: Command = args.client_command
    logging.getLogger("httpx").setLevel(logging.WARNING)  # not one log line per request
    try:
        return command(args)
    except RtmlClientError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exit_code(exc)


def exit_code(exc: RtmlClientError) -> int:
    if isinstance(exc, ModelNotFound):
        return 3
    if isinstance(exc, Unavailable | Timeout | ConnectionFailed):
        return 4
    if isinstance(exc, ServerError):
        return 5
    return 2


def _connection_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--url",
        default=os.environ.get("RTML_URL", DEFAULT_URL),
        help=f"gateway base URL (env RTML_URL; default {DEFAULT_URL})",
    )
    parser.add_argument("--api-key", default=os.environ.get("RTML_API_KEY"), help="env RTML_API_KEY")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, help="seconds per attempt")
    parser.add_argument("--retries", type=int, default=3, help="retries on 429/503/connection errors")
    parser.add_argument("--json", action="store_true", help="machine-readable JSON on stdout")
    parser.epilog = EXIT_CODES


def _predict_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="model name")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--features", nargs="+", metavar="X", help="one row: '5.1 3.5 1.4 0.2' or '5.1,3.5,...'"
    )
    source.add_argument("--csv", metavar="IN", help="input CSV with a header (columns named as the features)")
    parser.add_argument("--out", metavar="OUT", help="output CSV (with --csv; '-' for stdout)")
    parser.add_argument("--model-version", help="model version (default: the latest)")
    parser.add_argument("--no-cache", action="store_true", help="bypass the prediction cache")
    parser.add_argument("--chunk-size", type=int, default=256, help="rows per request (with --csv)")
    parser.add_argument("--workers", type=int, default=4, help="requests in flight (with --csv)")
    parser.add_argument("--no-progress", action="store_true", help="no progress line (with --csv)")
    _connection_arguments(parser)
    parser.set_defaults(client_command=_predict)


def _bench_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="model name")
    parser.add_argument("--features", nargs="+", metavar="X", help="the row to send (default: zeros)")
    parser.add_argument("-n", "--requests", type=int, default=1000, help="number of requests (default 1000)")
    parser.add_argument("-c", "--concurrency", type=int, default=1, help="requests in flight (default 1)")
    parser.add_argument("--no-cache", action="store_true", help="bypass the prediction cache")
    _connection_arguments(parser)
    parser.set_defaults(client_command=_bench)


def _models_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["list", "show"])
    parser.add_argument("name", nargs="?", help="model name (show)")
    _connection_arguments(parser)
    parser.set_defaults(client_command=_models)


def parse_features(tokens: Sequence[str]) -> list[float]:
    """``['5.1', '3.5']``, ``['5.1,3.5']`` or ``['[5.1, 3.5]']`` -> ``[5.1, 3.5]``."""
    values = [v for v in re.split(r"[,\s\[\]]+", " ".join(tokens)) if v]
    try:
        return [float(value) for value in values]
    except ValueError as exc:
        raise SystemExit(f"error: --features: {exc}") from None


def _client(args: argparse.Namespace) -> MLClient:
    return MLClient(args.url, args.api_key, args.timeout, args.retries)


def _predict(args: argparse.Namespace) -> int:
    if args.csv:
        return _predict_csv(args)
    if args.out:
        raise SystemExit("error: --out goes with --csv")
    with _client(args) as client:
        result = client.predict(
            args.model, parse_features(args.features), not args.no_cache, args.model_version
        )
    _emit(args, result, _describe_prediction)
    return 0


def _predict_csv(args: argparse.Namespace) -> int:
    if not args.out:
        raise SystemExit("error: --csv needs --out (a file, or '-' for stdout)")
    progress = False if args.json or args.no_progress else None
    client = _client(args)
    with BatchPredictor(chunk_size=args.chunk_size, max_workers=args.workers, client=client) as batch, client:
        report = batch.predict_from_csv(
            args.model,
            args.csv,
            sys.stdout if args.out == "-" else args.out,
            use_cache=not args.no_cache,
            model_version=args.model_version,
            progress=progress,
        )
    _emit(args, report, _describe_csv, stream=sys.stderr if args.out == "-" and not args.json else sys.stdout)
    return 1 if report.failed else 0


def _bench(args: argparse.Namespace) -> int:
    with _client(args) as client:
        features = parse_features(args.features) if args.features else None
        if features is None:
            features = [0.0] * client.get_model_info(args.model).n_features
        stats = client.benchmark(args.model, features, args.requests, args.concurrency, not args.no_cache)
    stats["model_name"] = args.model
    _emit(args, stats, _describe_bench)
    return 1 if stats.n_errors else 0


def _models(args: argparse.Namespace) -> int:
    with _client(args) as client:
        if args.action == "list":
            models: Any = client.list_models()
            _emit(args, models, format_model_table)
        elif not args.name:
            raise SystemExit("error: models show NAME")
        else:
            _emit(args, client.get_model_info(args.name), lambda info: json.dumps(info, indent=2))
    return 0


def _emit(args: argparse.Namespace, value: Any, describe: Callable[[Any], str], stream: Any = None) -> None:
    text = json.dumps(value, indent=2 if sys.stdout.isatty() else None) if args.json else describe(value)
    print(text, file=stream or sys.stdout)


def _describe_prediction(result: PredictionResult) -> str:
    lines = [f"{result.model_name} v{result.model_version}: prediction {result.prediction}"]
    if result.probability is not None:
        lines[0] += f" (probability {result.probability:.3f})"
    if result.probabilities:
        lines.append("probabilities: " + "  ".join(f"{p:.3f}" for p in result.probabilities))
    cached = "yes" if result.from_cache else "no"
    gateway_ms = result.server_latency_ms or 0.0
    lines.append(f"latency {result.latency_ms:.1f} ms (gateway {gateway_ms:.1f} ms), cached: {cached}")
    return "\n".join(lines)


def _describe_csv(report: CsvReport) -> str:
    lines = [
        f"{report.rows:,} rows: {report.succeeded:,} succeeded, {report.failed:,} failed in "
        f"{report.elapsed_s:.1f} s ({report['rows_per_s']:,.0f} rows/s; columns by {report.column_mapping})"
    ]
    if report.output_path:
        lines.append(f"wrote {report.output_path}")
    lines += [f"  line {failure['line']}: {failure['error']}" for failure in report.failures[:10]]
    if report.failed > 10:
        lines.append(f"  ... {report.failed - 10:,} more (see the 'error' column)")
    return "\n".join(lines)


def _describe_bench(stats: BenchmarkResult) -> str:
    return "\n".join(
        [
            f"{stats['model_name']}: {stats.n_requests} requests, concurrency {stats.concurrency}, "
            f"{stats.n_errors} errors {stats['errors_by_code'] or ''}".rstrip(),
            f"latency ms   mean {stats.mean_latency_ms:.2f}  p50 {stats.p50_latency_ms:.2f}  "
            f"p95 {stats.p95_latency_ms:.2f}  p99 {stats.p99_latency_ms:.2f}  max {stats.max_latency_ms:.2f}",
            f"throughput   {stats.throughput_rps:,.1f} requests/s",
        ]
    )


def format_model_table(models: Sequence[ModelInfo]) -> str:
    """The ``models list`` table (also used by ``rtml models list``)."""
    rows = [("NAME", "LATEST", "VERSIONS", "TASK", "FEATURES")]
    rows += [
        (
            m.name,
            str(m.get("latest_version", "")),
            ", ".join(m.versions),
            str(m.get("task", "")),
            str(m.get("n_features", "")),
        )
        for m in models
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows
    )


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(
        prog="rtml-client",
        description=DESCRIPTION,
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = root.add_subparsers(dest="command", required=True)
    add_commands(commands)
    _models_arguments(commands.add_parser("models", help="models the gateway serves"))
    return root


def main(argv: Sequence[str] | None = None) -> int:
    return run(parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
