"""Tables, ratios to the baseline, PASS/MISS against the targets, and the output files."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

SCENARIO_TITLES = {
    "e_predict": "(e) baseline predict",
    "e_batch": "(e) baseline batch_predict",
    "a_miss": "(a) predict, cache misses",
    "b_hit": "(b) predict, cache hits",
    "c_batch": "(c) batch_predict",
}
# Which baseline case each rtml scenario is read against (same concurrency).
BASELINE_OF = {"a_miss": "e_predict", "b_hit": "e_predict", "c_batch": "e_batch"}


@dataclass(frozen=True)
class Target:
    name: str
    op: str
    """"<=" or ">=" or "=="."""
    limit: float
    unit: str

    def check(self, measured: float | None) -> dict[str, Any]:
        if measured is None:
            return {**self._base(), "measured": None, "status": "SKIP", "gap": "not measured"}
        ok = {
            "<=": measured <= self.limit,
            ">=": measured >= self.limit,
            "==": measured == self.limit,
        }[self.op]
        return {
            **self._base(),
            "measured": measured,
            "status": "PASS" if ok else "MISS",
            "gap": self._gap(measured),
        }

    def _base(self) -> dict[str, Any]:
        return {"target": self.name, "op": self.op, "limit": self.limit, "unit": self.unit}

    def _gap(self, measured: float) -> str:
        diff = measured - self.limit
        if self.op == "==":
            return f"{diff:+g} {self.unit}".strip()
        ratio = f" ({measured / self.limit:.2f}x the limit)" if self.limit else ""
        return f"{diff:+,.2f} {self.unit}{ratio}"


def _ratio(value: float | None, reference: float | None) -> float | None:
    if value is None or not reference:
        return None
    return value / reference


def http_table(cases: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each case summary plus ratios to the baseline case of the same concurrency."""
    by_key = {(c["scenario"], c["concurrency"]): c for c in cases}
    rows = []
    for case in cases:
        base = by_key.get((BASELINE_OF.get(case["scenario"], ""), case["concurrency"]))
        rows.append(
            {
                **{k: v for k, v in case.items() if k != "runs"},
                "rps_vs_baseline": _ratio(case["rps"], base["rps"]) if base else None,
                "p50_vs_baseline": _ratio(case["p50_ms"], base["p50_ms"]) if base else None,
                "p99_vs_baseline": _ratio(case["p99_ms"], base["p99_ms"]) if base else None,
            }
        )
    return rows


def baseline_rows_per_s(cases: list[dict[str, Any]], scenario: str, rows: int) -> float | None:
    """Best predictions/s the baseline reached in ``scenario`` (req/s x rows per request)."""
    rates = [c["rps"] * rows for c in cases if c["scenario"] == scenario]
    return max(rates) if rates else None


def direct_table(
    direct: list[dict[str, Any]], cases: list[dict[str, Any]], batch_rows: int
) -> list[dict[str, Any]]:
    """Kafka results with a ratio to the baseline's best HTTP predictions/s (iris model):
    1 row/message against /predict, more rows against batch_predict."""
    rows = []
    for result in direct:
        single = result["rows_per_message"] == 1
        reference = (
            baseline_rows_per_s(cases, "e_predict", 1)
            if single
            else baseline_rows_per_s(cases, "e_batch", batch_rows)
        )
        rows.append({**result, "vs_baseline": _ratio(result["predictions_per_s"], reference)})
    return rows


def _case(cases: list[dict[str, Any]], scenario: str, concurrency: int) -> dict[str, Any] | None:
    return next((c for c in cases if c["scenario"] == scenario and c["concurrency"] == concurrency), None)


def _get(case: dict[str, Any] | None, key: str) -> float | None:
    return None if case is None else case.get(key)


def evaluate_targets(
    cases: list[dict[str, Any]], direct: list[dict[str, Any]], memory: dict[str, Any]
) -> list[dict[str, Any]]:
    a1, a64, b1 = _case(cases, "a_miss", 1), _case(cases, "a_miss", 64), _case(cases, "b_hit", 1)
    iris = {d["rows_per_message"]: d["predictions_per_s"] for d in direct if d["model"] == "iris_classifier"}
    final = memory.get("rtml_after_all_load", {})
    workers = [v["rss_mb"] for k, v in final.items() if k.startswith("worker") and v["rss_mb"] is not None]
    checks = [
        (Target("(a) p50 at concurrency 1", "<=", 3.0, "ms"), _get(a1, "p50_ms")),
        (Target("(a) req/s at concurrency 64", ">=", 3000, "req/s"), _get(a64, "rps")),
        (Target("(a) p99 at concurrency 64", "<=", 25.0, "ms"), _get(a64, "p99_ms")),
        (Target("(a) errors at concurrency 64", "==", 0, "errors"), _get(a64, "errors_total")),
        (Target("(b) p50 of cache hits at concurrency 1", "<=", 0.5, "ms"), _get(b1, "p50_ms")),
        (Target("(d) iris_classifier predictions/s, 1 row/msg", ">=", 30000, "pred/s"), iris.get(1)),
    ]
    checks += [
        (Target(f"(d) iris_classifier predictions/s, {rows} rows/msg", ">=", 30000, "pred/s"), rate)
        for rows, rate in sorted(iris.items())
        if rows != 1
    ]
    checks += [
        (Target("gateway RSS after load", "<=", 100, "MB"), (final.get("gateway") or {}).get("rss_mb")),
        (
            Target("worker RSS after load (largest worker)", "<=", 200, "MB"),
            max(workers) if workers else None,
        ),
    ]
    return [target.check(measured) for target, measured in checks]


# ---------------------------------------------------------------- rendering


def _fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return str(value)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def _table(headers: list[str], rows: list[list[str]], markdown: bool) -> str:
    if markdown:
        lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        return "\n".join(lines)
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += [
        "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in rows
    ]
    return "\n".join(lines)


def render(summary: dict[str, Any], markdown: bool) -> str:
    http_headers = [
        "scenario", "conc", "req/s", "p50 ms", "p99 ms", "p99.9 ms", "errors",
        "mean batch", "cache hits", "req/s vs base", "p50 vs base", "p99 vs base", "others' CPU",
    ]  # fmt: skip
    http_rows = [
        [
            SCENARIO_TITLES.get(c["scenario"], c["scenario"]), str(c["concurrency"]), _fmt(c["rps"], 0),
            _fmt(c["p50_ms"]), _fmt(c["p99_ms"]), _fmt(c["p999_ms"]), _fmt(c["errors_total"]),
            _fmt(c["mean_batch_rows"], 1),
            _pct(c["cache_hit_ratio"]),
            _fmt(c["rps_vs_baseline"]), _fmt(c["p50_vs_baseline"]), _fmt(c["p99_vs_baseline"]),
            _pct(c.get("other_cpu_share")),
        ]
        for c in summary["http"]
    ]  # fmt: skip
    direct_headers = [
        "(d) Kafka direct", "rows/msg", "messages", "predictions", "seen", "span s",
        "predictions/s", "end-to-end/s", "mean batch", "dead letters", "vs base", "others' CPU",
    ]  # fmt: skip
    direct_rows = [
        [
            d["model"], str(d["rows_per_message"]), _fmt(d["messages"]), _fmt(d["predictions_expected"]),
            _fmt(d["predictions_seen"]), _fmt(d["span_s"]), _fmt(d["predictions_per_s"], 0),
            _fmt(d["end_to_end_per_s"], 0), _fmt(d["mean_batch_rows"], 1), _fmt(d["dead_letters"]),
            _fmt(d["vs_baseline"]), _pct(d.get("other_cpu_share")),
        ]
        for d in summary["direct"]
    ]  # fmt: skip
    parts = [_table(http_headers, http_rows, markdown), "", _table(direct_headers, direct_rows, markdown)]
    parts += [
        "",
        _memory_table(summary["memory"], markdown),
        "",
        _targets_table(summary["targets"], markdown),
    ]
    return "\n".join(parts)


def _memory_table(memory: dict[str, dict[str, dict[str, float | None]]], markdown: bool) -> str:
    rows = [
        [moment, process, _fmt(values["rss_mb"], 1), _fmt(values["peak_rss_mb"], 1)]
        for moment, processes in memory.items()
        for process, values in processes.items()
    ]
    return _table(["measured", "process", "RSS MB", "peak RSS MB"], rows, markdown)


def _targets_table(targets: list[dict[str, Any]], markdown: bool) -> str:
    rows = [
        [t["target"], f"{t['op']} {t['limit']:,g} {t['unit']}", _fmt(t["measured"]), t["status"], t["gap"]]
        for t in targets
    ]
    return _table(["target", "limit", "measured", "result", "gap"], rows, markdown)


def write_outputs(summary: dict[str, Any], out_dir: Path, stamp: str) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / f"results-{stamp}.json"
    json_path.write_bytes(orjson.dumps(summary, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS))
    md_path = out_dir / f"results-{stamp}.md"
    md_path.write_text(markdown_summary(summary))
    return json_path, md_path


LEGEND = """\
Legend: errors = non-2xx responses + socket errors (connect/read/write/timeout), summed over the
repeats; other figures are medians over the repeats. "vs base" = rtml / baseline at the same
concurrency (predict for (a) and (b), batch_predict for (c)); for (d), predictions/s over the
baseline's best HTTP predictions/s (/predict for 1 row/msg, batch_predict rows/s otherwise).
Mean batch = rows per ONNX Runtime call in the workers (rtml_worker_batch_rows _sum/_count
delta); cache hits = gateway cache hit share (rtml_gateway_cache_total delta). (d) rate =
records counted / (last - first record timestamp) on the predictions topic; end-to-end/s =
records / (first produce -> last record). Others' CPU = CPU used by processes other than the
bench, its children and local Kafka/Redis during the measured run, as a share of all CPUs
(/proc/stat minus /proc/PID/stat): a high share means the figure was disturbed."""


def markdown_summary(summary: dict[str, Any]) -> str:
    machine, cpu = summary["machine"], summary["cpu"]
    phases = ", ".join(f"{name} {seconds:.0f} s" for name, seconds in summary["phases_s"].items())
    header = [
        f"# rtml bench {summary['started_at']}",
        "",
        f"- Command: `{summary['command']}`",
        f"- Machine: {machine['nproc']} CPUs ({machine['cpu_model']}), kernel {machine['kernel']}, "
        f"Python {machine['python']}, {summary['wrk'].split(' Copyright')[0]}",
        f"- Load average (1/5/15 min): at start {_loads(machine['loadavg_at_start'])}, "
        f"at end {_loads(summary['loadavg_at_end'])}; quiet check: {summary['quiet_check']}; "
        f"other Kafka brokers at end: {summary['other_kafka_brokers_at_end'] or 'none'}",
        f"- Duration: {summary['duration_s']:.0f} s ({phases})",
        f"- CPU while it ran: machine busy {cpu['machine_busy_cpu_s']:.0f} CPU-s, bench and its "
        f"processes (incl. local Kafka/Redis) {cpu['bench_cpu_s']:.0f} CPU-s, other processes "
        f"{cpu['other_cpu_s']:.0f} CPU-s = {cpu['other_share_of_machine']:.0%} of "
        f"{machine['nproc']} CPUs x {cpu['wall_s']:.0f} s",
        "",
    ]
    return "\n".join(header) + "\n" + render(summary, markdown=True) + "\n\n" + LEGEND + "\n"


def _loads(values: list[float]) -> str:
    return "/".join(f"{v:.2f}" for v in values)
