"""Export the message and metadata schemas as JSON Schema for non-Python producers.

``rtml schemas export`` writes ``schemas/json/<name>.schema.json`` of the checkout (``--out DIR``
elsewhere; an installed package prints them, its own copy being package data); with ``--check``
it writes nothing and reports files that differ (CI runs this).
"""

from __future__ import annotations

import os
from pathlib import Path

import orjson
from pydantic import BaseModel

from schemas.control import ALL_CONTROL_MESSAGES
from schemas.drift import ALL_DRIFT_MESSAGES
from schemas.messages import ALL_MESSAGES
from schemas.model_metadata import ModelMetadata

EXPORT_DIR = Path(__file__).resolve().parent / "json"


def all_schemas() -> dict[str, type[BaseModel]]:
    return {**ALL_MESSAGES, **ALL_DRIFT_MESSAGES, **ALL_CONTROL_MESSAGES, "model_metadata": ModelMetadata}


def checkout_export_dir() -> Path | None:
    """``schemas/json`` when this package is a source checkout's (a pyproject.toml beside it) and
    writable; None for an installed package, whose directory is not ours to write."""
    in_checkout = (EXPORT_DIR.parent.parent / "pyproject.toml").is_file()
    return EXPORT_DIR if in_checkout and os.access(EXPORT_DIR.parent, os.W_OK) else None


def render_all() -> bytes:
    """Every schema in one JSON document keyed by file name, for ``--out -``."""
    schemas = {f"{name}.schema.json": orjson.loads(render(model)) for name, model in all_schemas().items()}
    return orjson.dumps(schemas, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"


def render(model: type[BaseModel]) -> bytes:
    schema = model.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return orjson.dumps(schema, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"


def export_json_schemas(check: bool = False, directory: Path = EXPORT_DIR) -> list[str]:
    """Write (or with ``check``, compare) every schema; returns the names that were stale."""
    stale = []
    for name, model in all_schemas().items():
        path = directory / f"{name}.schema.json"
        wanted = render(model)
        if path.is_file() and path.read_bytes() == wanted:
            continue
        stale.append(name)
        if not check:
            directory.mkdir(parents=True, exist_ok=True)
            path.write_bytes(wanted)
    return [] if not check else stale
