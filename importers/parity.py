"""The parity proof: the original model and its ONNX graph predict the same rows."""

from __future__ import annotations

import numpy as np

from importers.model import Outputs, Signature
from runtime.errors import ParityFailed
from schemas.model_metadata import ParityReport

DEFAULT_TOLERANCE = 1e-4
_LARGEST = float(np.finfo(np.float64).max)


def compare(
    expected: Outputs,
    actual: Outputs,
    signature: Signature,
    sample: str,
    tolerance: float = DEFAULT_TOLERANCE,
) -> ParityReport:
    """Labels must agree on every row; probabilities, values and distances within ``tolerance``."""
    agreement, ties = None, 0
    if signature.output_label is not None:
        same = _labels(expected.labels) == _labels(actual.labels)
        agreement = float(np.mean(same))
        ties = int(np.sum(~same & _tied(expected, actual, signature, tolerance)))
    gaps = [
        _gap(expected.probabilities, actual.probabilities, signature.output_probabilities),
        _gap(expected.values, actual.values, signature.output_value),
        _gap(expected.distances, actual.distances, signature.output_distances),
    ]
    found = [g for g in gaps if g is not None]
    max_diff = min(max(found), _LARGEST) if found else None  # inf (shape or NaN mismatch) fails too
    labels_ok = agreement is None or round((1 - agreement) * len(_rows(actual))) == ties
    passed = labels_ok and (max_diff is None or max_diff <= tolerance)
    return ParityReport(
        rows=len(_rows(actual)),
        sample=sample,  # type: ignore[arg-type]  # checked by pydantic
        compared=signature.outputs,
        label_agreement=agreement,
        tied_rows=ties,
        max_abs_diff=max_diff,
        tolerance=tolerance,
        passed=passed,
    )


def require(
    report: ParityReport, name: str, expected: Outputs, actual: Outputs, signature: Signature
) -> None:
    """Raise ParityFailed (naming the first bad row) unless ``report.passed``."""
    if report.passed:
        return
    problems = []
    if report.label_agreement is not None:
        differ = _labels(expected.labels) != _labels(actual.labels)
        bad = np.flatnonzero(differ & ~_tied(expected, actual, signature, report.tolerance))
        if bad.size:
            first = int(bad[0])
            onnx_label, original = _item(actual.labels, first), _item(expected.labels, first)
            problems.append(
                f"labels differ on {bad.size} of {report.rows} rows "
                f"(first: row {first}, ONNX {onnx_label!r} != original {original!r})"
            )
    if report.max_abs_diff is not None and report.max_abs_diff > report.tolerance:
        problems.append(
            f"outputs differ by up to {report.max_abs_diff:.3g} (> tolerance {report.tolerance:g}; "
            "see --tolerance)"
        )
    raise ParityFailed(
        f"model '{name}': ONNX conversion does not reproduce the original: " + "; ".join(problems), report
    )


def describe(report: ParityReport) -> str:
    """One line for the terminal."""
    agreement = "n/a" if report.label_agreement is None else f"{report.label_agreement:.2%}"
    diff = "n/a" if report.max_abs_diff is None else f"{report.max_abs_diff:.3g}"
    verdict = "passed" if report.passed else "FAILED"
    return (
        f"parity {verdict}: {report.rows} rows ({report.sample} sample), label agreement {agreement}, "
        f"max abs diff {diff} (tolerance {report.tolerance:g}) on {', '.join(report.compared)}"
    )


def _rows(outputs: Outputs) -> np.ndarray:
    rows = outputs.labels if outputs.labels is not None else outputs.values
    assert rows is not None
    return np.asarray(rows)


def _tied(expected: Outputs, actual: Outputs, signature: Signature, tolerance: float) -> np.ndarray:
    """Rows where the original gives the ONNX label and its own label probabilities within ``tolerance``."""
    rows = len(_rows(actual))
    if expected.probabilities is None or not signature.classes or actual.labels is None:
        return np.zeros(rows, dtype=bool)
    proba = np.asarray(expected.probabilities, dtype=np.float64)
    columns = {str(c): i for i, c in enumerate(signature.classes)}

    def column(labels: np.ndarray | None) -> np.ndarray:
        return np.array([columns.get(str(v), -1) for v in np.asarray(labels).reshape(-1)], dtype=np.int64)

    ours, theirs = column(actual.labels), column(expected.labels)
    known = (ours >= 0) & (theirs >= 0)
    index = np.arange(rows)
    gap = np.abs(proba[index, np.maximum(ours, 0)] - proba[index, np.maximum(theirs, 0)])
    return np.asarray(known & (gap <= tolerance))


def _labels(labels: np.ndarray | None) -> np.ndarray:
    assert labels is not None
    values = np.asarray(labels).reshape(-1)
    return values.astype(str) if values.dtype.kind in "OUS" else values.astype(np.float64)


def _item(labels: np.ndarray | None, index: int) -> object:
    assert labels is not None
    value = np.asarray(labels).reshape(-1)[index]
    return value.item() if hasattr(value, "item") else value


def _gap(expected: np.ndarray | None, actual: np.ndarray | None, output: str | None) -> float | None:
    if output is None:
        return None
    if expected is None or actual is None:
        raise ValueError(f"output {output!r} missing from a prediction")
    a = np.asarray(expected, dtype=np.float64).reshape(len(expected), -1)
    b = np.asarray(actual, dtype=np.float64).reshape(len(actual), -1)
    if a.shape != b.shape:
        return float("inf")
    both_nan = np.isnan(a) & np.isnan(b)
    diff = np.where(both_nan, 0.0, np.abs(a - b))
    return float(np.nan_to_num(diff, nan=np.inf).max()) if diff.size else 0.0
