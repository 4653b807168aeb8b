"""What the gateway can serve: models, versions, input specs and traffic policies, for routing and
404/422 answers. Replaced whole on every control-plane change (:meth:`ModelTable.update`, called
from the control thread), so a request reads one consistent state."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from runtime.errors import ModelNotFound, VersionNotFound
from runtime.model_policy import Routed, default_version, route, serving_versions
from schemas.control import ModelPolicy
from schemas.model_metadata import ModelMetadata


@dataclass(frozen=True)
class ModelEntry:
    name: str
    versions: Mapping[str, ModelMetadata]
    """Every registered version, retired ones included."""
    latest: str
    """The highest registered version."""
    policy: ModelPolicy | None
    default: str | None
    serving: list[str]
    """Registered and not retired."""


class ModelTable:
    def __init__(
        self,
        snapshot: Mapping[str, Mapping[str, ModelMetadata]],
        policies: Mapping[str, ModelPolicy] | None = None,
    ) -> None:
        self._entries: dict[str, ModelEntry] = {}
        self.update(snapshot, policies or {})

    def update(
        self, snapshot: Mapping[str, Mapping[str, ModelMetadata]], policies: Mapping[str, ModelPolicy]
    ) -> None:
        entries = {}
        for name, versions in snapshot.items():
            if not versions:
                continue
            policy = policies.get(name)
            registered = list(versions)
            entries[name] = ModelEntry(
                name,
                dict(versions),
                max(versions, key=int),
                policy,
                default_version(policy, registered),
                serving_versions(policy, registered),
            )
        self._entries = entries  # one assignment: readers see the old table or the new one

    def __len__(self) -> int:
        return len(self._entries)

    def names(self) -> list[str]:
        return sorted(self._entries)

    def serving(self) -> set[tuple[str, str]]:
        """Every (model, version) registered and not retired."""
        return {(name, version) for name, entry in self._entries.items() for version in entry.serving}

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def entry(self, name: str) -> ModelEntry:
        entry = self._entries.get(name)
        if entry is None:
            known = ", ".join(self.names()) or "none"
            raise ModelNotFound(f"model '{name}' not found; available models: {known}")
        return entry

    def resolve(self, name: str, version: str | None) -> ModelMetadata:
        """A registered version (retired ones too: admin operations name them), or the default."""
        entry = self.entry(name)
        if version is None:
            if entry.default is None:
                raise ModelNotFound(f"model '{name}' has no default version: promote one")
            return entry.versions[entry.default]
        metadata = entry.versions.get(version)
        if metadata is None:
            known = ", ".join(sorted(entry.versions, key=int))
            raise VersionNotFound(f"model '{name}' has no version '{version}'; available versions: {known}")
        return metadata

    def route(self, name: str, version: str | None, routing_key: str | None) -> tuple[ModelMetadata, Routed]:
        """The version that serves one request, and why (a retired version serves nothing)."""
        entry = self.entry(name)
        routed = route(entry.policy, list(entry.versions), name, version, routing_key)
        return entry.versions[routed.version], routed
