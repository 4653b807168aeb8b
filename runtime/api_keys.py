"""API keys with scopes, shared by every gateway through Redis.

A key is ``rtml_`` + 32 random bytes (URL-safe base64), shown once by ``rtml keys create``. Only
its SHA-256 is stored: the keys are high-entropy random strings, so a fast hash is enough (no
dictionary to guess from) and lets a gateway check one per request in a microsecond. Redis:

- ``<keys_prefix>by-name``: hash, name -> JSON :class:`KeyRecord` (hash, scopes, rate, created)
- revoking deletes the name; every gateway reloads the whole table every
  :data:`RELOAD_S` seconds, so a revocation is effective everywhere within that.

Scopes: ``predict`` (prediction endpoints), ``read`` (models, drift, metrics), ``admin`` (the
lifecycle and cache endpoints). No key, hash or secret is ever logged.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from collections.abc import Mapping
from typing import Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field

from runtime.errors import InvalidInput

Scope = Literal["predict", "read", "admin"]
SCOPES: tuple[Scope, ...] = ("predict", "read", "admin")
RELOAD_S = 2.0
KEY_PREFIX = "rtml_"
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class KeyRecord(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    sha256: str
    scopes: list[Scope]
    rate: float | None = Field(default=None, gt=0)
    """Requests per second this key may make (shared by every gateway); None: no limit."""
    created_at: float


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def parse_scopes(text: str) -> list[Scope]:
    scopes = [s.strip() for s in text.split(",") if s.strip()]
    unknown = [s for s in scopes if s not in SCOPES]
    if unknown or not scopes:
        raise InvalidInput(f"scopes {unknown or text!r} unknown; choose from {', '.join(SCOPES)}")
    return [s for s in SCOPES if s in scopes]  # type: ignore[misc]  # checked above


def new_key(name: str, scopes: list[Scope], rate: float | None) -> tuple[str, KeyRecord]:
    if not NAME_RE.match(name):
        raise InvalidInput(f"key name {name[:70]!r} must be 1-64 letters, digits, '_', '.', '-'")
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    return key, KeyRecord(name=name, sha256=hash_key(key), scopes=scopes, rate=rate, created_at=time.time())


def table_key(prefix: str) -> str:
    return f"{prefix}by-name"


def encode(record: KeyRecord) -> bytes:
    return record.model_dump_json().encode()


def decode_table(raw: Mapping[bytes, bytes]) -> dict[str, KeyRecord]:
    """sha256 -> record; unreadable entries are skipped (they authorise nothing)."""
    table: dict[str, KeyRecord] = {}
    for value in raw.values():
        try:
            record = KeyRecord.model_validate(orjson.loads(value))
        except (orjson.JSONDecodeError, ValueError):
            continue
        table[record.sha256] = record
    return table
