"""Prediction-cache keys and values, shared by the gateway and the workers.

A key covers the model, the concrete version *and its artifact* (the first 16 hex digits of the
ONNX file's SHA-256) and a canonical encoding of the features: the row as little-endian float64
with -0.0 folded into 0.0, hashed with BLAKE2b. ``[5, 3.5]`` and ``[5.0, 3.5]`` therefore share a
key, while a different version, or the same version number replaced by another artifact, never
does: ``<prefix><model>:<version>.<sha16>:<row digest>``.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from hashlib import blake2b
from typing import Any

import orjson

from schemas.messages import Label

ARTIFACT_DIGITS = 16


def version_tag(version: str, onnx_sha256: str) -> str:
    """The key part naming one artifact of one version (what callers pass as ``version`` below)."""
    return f"{version}.{onnx_sha256[:ARTIFACT_DIGITS]}"


def invalidation_pattern(prefix: str, model: str, version: str | None = None) -> str:
    """A Redis SCAN MATCH pattern for every key of ``model`` (or of one of its versions, whatever
    its artifact). Glob characters in the names are escaped."""
    escaped = _glob_escape(prefix) + _glob_escape(model) + ":"
    return escaped + (f"{_glob_escape(version)}.*" if version is not None else "*")


def _glob_escape(text: str) -> str:
    return "".join(f"\\{c}" if c in "*?[]\\^" else c for c in text)


def rounded(row: Sequence[float], decimals: int | None) -> Sequence[float]:
    """``row`` rounded for a model with a key precision (Python's correctly rounded ``round``, in
    the gateway and the workers alike, so both sides compute the same key)."""
    return row if decimals is None else [round(float(value), decimals) for value in row]


def row_digest(row: Sequence[float]) -> str:
    # struct, not numpy, so the gateway's hot path (and memory) needs no numpy; the bytes equal
    # np.asarray(row, "<f8").tobytes(), which cache_keys() uses for whole batches.
    canonical = struct.pack(f"<{len(row)}d", *[value + 0.0 for value in row])  # + 0.0: -0.0 -> 0.0
    return blake2b(canonical, digest_size=16).hexdigest()


def cache_key(
    prefix: str, model: str, version: str, row: Sequence[float], decimals: int | None = None
) -> str:
    return f"{prefix}{model}:{version}:{row_digest(rounded(row, decimals))}"


def cache_keys(
    prefix: str, model: str, version: str, rows: Sequence[Sequence[float]] | Any, decimals: int | None = None
) -> list[str]:
    """Keys of many rows of equal width (a list of rows or a 2-D array), one array conversion."""
    import numpy as np  # workers only; already loaded there

    if decimals is not None:
        rows = [rounded(row, decimals) for row in np.asarray(rows, dtype=np.float64).tolist()]
    canonical = np.asarray(rows, dtype="<f8") + 0.0
    head = f"{prefix}{model}:{version}:"
    return [head + blake2b(row.tobytes(), digest_size=16).hexdigest() for row in canonical]


def encode_value(prediction: Label, probabilities: Sequence[float] | None) -> bytes:
    return orjson.dumps([prediction, probabilities])


def decode_value(raw: bytes) -> tuple[Label, list[float] | None] | None:
    """A cached answer, or None when the value is not one :func:`encode_value` wrote (a corrupt,
    foreign or truncated value is a miss, never an error: anyone who can write to Redis must not
    be able to fail requests or crash workers)."""
    try:
        value = orjson.loads(raw)
    except (orjson.JSONDecodeError, TypeError):
        return None
    if not isinstance(value, list) or len(value) != 2:
        return None
    prediction, probabilities = value
    if isinstance(prediction, bool) or not isinstance(prediction, int | str | float):
        return None
    if probabilities is not None and not (
        isinstance(probabilities, list)
        and all(isinstance(p, int | float) and not isinstance(p, bool) for p in probabilities)
    ):
        return None
    return prediction, probabilities
