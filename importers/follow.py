"""``rtml models follow models:/NAME@ALIAS``: keep an rtml model in step with an MLflow alias.

Each poll resolves the alias to an MLflow model version. If an rtml version was already imported
from that MLflow version (its metadata records the MLflow name and version), that version is
promoted when it is not the default (the alias moved back: a rollback); otherwise the MLflow
version is imported (converted, parity-checked, registered, its artifact shipped) and promoted.
A poll that fails (MLflow unreachable, a conversion that fails parity) changes nothing and is
reported; the next poll tries again.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass

from importers.api import ImportOptions, import_model
from importers.extras import require
from runtime.errors import ModelNotFound, RtmlError, SourceNotFound
from runtime.model_admin import ModelAdmin
from runtime.model_policy import default_version
from runtime.registry import ModelRegistry
from schemas.control import ModelPolicy

log = logging.getLogger(__name__)

ALIAS_URI = re.compile(r"^models:/(?P<name>[^/@]+)@(?P<alias>[\w.-]+)$")


@dataclass(frozen=True)
class FollowResult:
    action: str
    """"unchanged", "promoted" (an earlier import) or "imported" (and promoted)."""
    version: str
    mlflow_version: str

    def describe(self, name: str, uri: str) -> str:
        if self.action == "unchanged":
            return f"{name} v{self.version} already serves {uri} (MLflow version {self.mlflow_version})"
        moved = f"{uri} moved to MLflow version {self.mlflow_version}"
        if self.action == "promoted":
            return f"{moved}: promoted {name} v{self.version}"
        return f"{moved}: imported as {name} v{self.version}, promoted"


def parse_alias_uri(uri: str) -> tuple[str, str]:
    match = ALIAS_URI.match(uri)
    if match is None:
        raise SourceNotFound(f"{uri!r} is not models:/NAME@ALIAS (follow needs an alias)")
    return match["name"], match["alias"]


def follow_once(
    uri: str,
    name: str,
    registry: ModelRegistry,
    admin: ModelAdmin,
    policy: ModelPolicy | None,
    options: ImportOptions | None = None,
) -> FollowResult:
    mlflow_name, alias = parse_alias_uri(uri)
    mlflow = require("mlflow", "following an MLflow alias")
    exceptions = require("mlflow.exceptions", "following an MLflow alias")
    try:
        entry = mlflow.MlflowClient().get_model_version_by_alias(mlflow_name, alias)
    except exceptions.MlflowException as exc:
        raise SourceNotFound(f"MLflow model {mlflow_name!r} @{alias} not found: {exc.message}") from exc
    wanted = str(entry.version)
    existing = _imported_from(registry, name, mlflow_name, wanted)
    if existing is not None:
        try:
            local = registry.versions(name)
        except ModelNotFound:
            local = []
        if default_version(policy, local) == existing:
            return FollowResult("unchanged", existing, wanted)
        admin.promote(name, existing)
        return FollowResult("promoted", existing, wanted)
    result = import_model(f"models:/{mlflow_name}/{wanted}", name, registry, options or ImportOptions())
    version = result.metadata.version
    admin.registered(name, version, promote=True)
    return FollowResult("imported", version, wanted)


def follow(
    uri: str,
    name: str,
    registry: ModelRegistry,
    admin: ModelAdmin,
    policy_of: Callable[[str], ModelPolicy | None],
    interval_s: float,
    stop: threading.Event,
    max_polls: int | None = None,
) -> None:
    """Poll until ``stop`` (or ``max_polls``); every outcome and failure is logged."""
    polls = 0
    while not stop.is_set() and (max_polls is None or polls < max_polls):
        polls += 1
        try:
            result = follow_once(uri, name, registry, admin, policy_of(name))
        except RtmlError as exc:
            log.error("follow poll failed; nothing changed", extra={"uri": uri, "error": exc.message[:500]})
        else:
            log.info(result.describe(name, uri), extra={"uri": uri, "action": result.action})
        stop.wait(interval_s)


def _imported_from(registry: ModelRegistry, name: str, mlflow_name: str, mlflow_version: str) -> str | None:
    """The rtml version imported from that MLflow model version, if any (the latest such)."""
    try:
        versions = registry.versions(name)
    except ModelNotFound:
        return None
    for version in reversed(versions):
        source = registry.metadata(name, version).source
        mlflow = source.mlflow if source is not None else None
        if mlflow is not None and mlflow.model_name == mlflow_name and mlflow.version == mlflow_version:
            return version
    return None
