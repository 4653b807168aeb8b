"""Lifecycle operations with their side effects: check the artifact, compute the next policy
(:mod:`runtime.model_policy`), publish it (:mod:`runtime.control`). Shared by ``rtml models ...``
and the gateway's ``/api/v1/admin/models/...`` endpoints, so both refuse and accept the same."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from runtime import model_policy
from runtime.artifacts import ArtifactStore
from runtime.control import ControlWriter
from runtime.errors import ChecksumMismatch, InvalidModel, ModelNotFound
from runtime.registry import ModelRegistry
from schemas.control import CanaryLimits, EventAction, ModelPolicy

CurrentPolicy = Callable[[str], ModelPolicy | None]


class ModelAdmin:
    def __init__(
        self,
        registry: ModelRegistry,
        writer: ControlWriter,
        current: CurrentPolicy,
        by: str,
        artifacts: ArtifactStore | None = None,
    ) -> None:
        self._artifacts = artifacts
        self._registry = registry
        self._writer = writer
        self._current = current
        self._by = by

    def registered(self, model: str, version: str, promote: bool = False) -> ModelPolicy:
        """After an import: ship the artifact (for processes on other machines), then record the
        version; it serves nothing until promoted (a model's first version is promoted)."""
        sha = self._artifacts.publish(self._registry, model, version) if self._artifacts else None
        versions = self._versions(model)
        current = self._current(model)
        policy = model_policy.registered(
            current, model, versions, version, promote=promote, by=self._by, sha256=sha
        )
        return self._publish(policy, "promoted" if policy.default == version else "registered", version)

    def publish(self, model: str, versions: list[str] | None = None) -> ModelPolicy:
        """Ship versions registered before (or by hand) to the artifact topic and record them."""
        if self._artifacts is None:
            raise ModelNotFound("no artifact store configured")
        local = self._registry.versions(model)
        checksums = {v: self._artifacts.publish(self._registry, model, v) for v in versions or local}
        policy = model_policy.published(self._current(model), model, local, checksums, self._by)
        return self._publish(policy, "registered")

    def promote(self, model: str, version: str) -> ModelPolicy:
        versions = self._versions(model)
        policy = model_policy.promote(self._current(model), model, versions, version, self._by)
        self._verify(model, version)
        return self._publish(policy, "promoted", version)

    def rollback(self, model: str) -> ModelPolicy:
        policy = model_policy.rollback(self._current(model), model, self._versions(model), self._by)
        return self._publish(policy, "rolled_back", policy.default)

    def retire(self, model: str, version: str) -> ModelPolicy:
        policy = model_policy.retire(self._current(model), model, self._versions(model), version, self._by)
        return self._publish(policy, "retired", version)

    def traffic(
        self,
        model: str,
        split: Mapping[str, int] | None = None,
        shadow: Mapping[str, int] | None = None,
    ) -> ModelPolicy:
        versions = self._versions(model)
        policy = model_policy.set_traffic(
            self._current(model), model, versions, split=split, shadow=shadow, by=self._by
        )
        for version in {*(split or {}), *(shadow or {})}:
            self._verify(model, version)
        return self._publish(policy, "traffic")

    def clear_traffic(self, model: str) -> ModelPolicy:
        policy = model_policy.clear_traffic(self._current(model), model, self._versions(model), self._by)
        return self._publish(policy, "traffic")

    def canary(
        self,
        model: str,
        version: str,
        steps: Sequence[int],
        step_s: float,
        limits: CanaryLimits | None = None,
    ) -> ModelPolicy:
        versions = self._versions(model)
        current = self._current(model)
        policy = model_policy.start_canary(current, model, versions, version, steps, step_s, limits, self._by)
        self._verify(model, version)
        return self._publish(policy, "canary", version)

    def advance_canary(self, model: str, reason: str) -> ModelPolicy:
        policy = model_policy.advance_canary(self._require(model), reason, self._by)
        action: EventAction = "promoted" if policy.canary and policy.canary.status == "promoted" else "canary"
        return self._publish(policy, action, policy.canary.version if policy.canary else None)

    def end_canary(self, model: str, reason: str) -> ModelPolicy:
        policy = model_policy.end_canary(self._require(model), "rolled_back", reason, self._by)
        return self._publish(policy, "canary", policy.canary.version if policy.canary else None)

    def current(self, model: str) -> ModelPolicy | None:
        return self._current(model)

    def _require(self, model: str) -> ModelPolicy:
        policy = self._current(model)
        if policy is None:
            raise ModelNotFound(f"model '{model}' has no policy")
        return policy

    def _versions(self, model: str) -> list[str]:
        """Registered here or recorded by the control plane (fetchable from the artifact topic)."""
        try:
            local = self._registry.versions(model)
        except ModelNotFound:
            local = []
        known = model_policy.known_versions(self._current(model), local)
        if not known:
            self._registry.versions(model)  # raises ModelNotFound naming the registered models
        return known

    def _verify(self, model: str, version: str) -> None:
        """A version whose artifact is corrupt or truncated never takes traffic."""
        if version not in self._local(model):
            return  # only recorded remotely: every process verifies the fetched bytes against its sha
        try:
            self._registry.verify(model, version)
        except (ChecksumMismatch, InvalidModel) as exc:
            raise InvalidModel(f"model '{model}' v{version} cannot take traffic: {exc.message}") from None

    def _local(self, model: str) -> list[str]:
        try:
            return self._registry.versions(model)
        except ModelNotFound:
            return []

    def _publish(self, policy: ModelPolicy, action: EventAction, version: str | None = None) -> ModelPolicy:
        self._writer.publish(policy, action, version)
        return policy
