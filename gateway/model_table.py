"""What the gateway can serve: model names, versions and input specs, for routing and 404/422 answers."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from runtime.errors import ModelNotFound, VersionNotFound
from schemas.model_metadata import ModelMetadata


@dataclass(frozen=True)
class ModelEntry:
    name: str
    versions: Mapping[str, ModelMetadata]
    latest: str


class ModelTable:
    """Immutable snapshot; a later hot-swap replaces the whole table atomically."""

    def __init__(self, snapshot: Mapping[str, Mapping[str, ModelMetadata]]) -> None:
        self._entries = {
            name: ModelEntry(name, dict(versions), max(versions, key=int))
            for name, versions in snapshot.items()
            if versions
        }

    def __len__(self) -> int:
        return len(self._entries)

    def names(self) -> list[str]:
        return sorted(self._entries)

    def entry(self, name: str) -> ModelEntry:
        entry = self._entries.get(name)
        if entry is None:
            known = ", ".join(self.names()) or "none"
            raise ModelNotFound(f"model '{name}' not found; available models: {known}")
        return entry

    def resolve(self, name: str, version: str | None) -> ModelMetadata:
        entry = self.entry(name)
        if version is None:
            return entry.versions[entry.latest]
        metadata = entry.versions.get(version)
        if metadata is None:
            known = ", ".join(sorted(entry.versions, key=int))
            raise VersionNotFound(f"model '{name}' has no version '{version}'; available versions: {known}")
        return metadata
