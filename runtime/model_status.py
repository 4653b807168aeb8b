"""``rtml models status`` and ``GET /api/v1/admin/models/{name}/status``: one document built here."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from runtime.fleet import traffic_share
from runtime.model_policy import default_version
from schemas.control import ModelPolicy
from schemas.model_metadata import ModelMetadata


def version_state(version: str, policy: ModelPolicy | None, default: str | None) -> str:
    if version == default:
        return "default"
    if policy is not None and version in policy.retired:
        return "retired"
    if policy is not None and policy.running_canary is not None and policy.running_canary.version == version:
        return "canary"
    if policy is not None and (version in policy.split or version in policy.shadow):
        return "receiving traffic"
    return "registered"


def build_status(
    model: str,
    versions: Mapping[str, ModelMetadata],
    policy: ModelPolicy | None,
    members: list[dict[str, Any]],
) -> dict[str, Any]:
    default = default_version(policy, list(versions))
    return {
        "model": model,
        "default_version": default,
        "revision": policy.revision if policy else 0,
        "last_change": policy.change if policy else "no policy recorded: the highest version serves",
        "updated_at_ms": policy.updated_at_ms if policy else None,
        "updated_by": policy.updated_by if policy else None,
        "policy": {
            "split": policy.split if policy else {},
            "shadow": policy.shadow if policy else {},
            "previous": policy.previous if policy else [],
            "retired": policy.retired if policy else [],
            "canary": policy.canary.model_dump() if policy and policy.canary else None,
        },
        "versions": {
            version: {
                "state": version_state(version, policy, default),
                "onnx_sha256": metadata.onnx_sha256,
                "created_at": metadata.created_at.isoformat(),
                "loaded_by": [m["member"] for m in members if version in (m.get("loaded") or [])],
            }
            for version, metadata in sorted(versions.items(), key=lambda item: int(item[0]))
        },
        "workers": [m for m in members if m.get("kind") == "worker"],
        "gateways": [m["member"] for m in members if m.get("kind") == "gateway"],
        "traffic": traffic_share(members),
    }


def render_status(status: Mapping[str, Any]) -> str:
    """The human form of ``rtml models status NAME``."""
    policy = status["policy"]
    lines = [
        f"model {status['model']}: default v{status['default_version']} (revision {status['revision']})",
        f"  last change: {status['last_change']}"
        + (f" by {status['updated_by']}" if status["updated_by"] else ""),
        f"  split: {_weights(policy['split']) or 'none'}   shadow: {_weights(policy['shadow']) or 'none'}",
        f"  rollback to: {('v' + policy['previous'][-1]) if policy['previous'] else 'nothing'}",
        *_canary_lines(policy["canary"]),
        "  versions:",
    ]
    share = status["traffic"]["share_percent"]
    for version, info in status["versions"].items():
        loaded = ", ".join(info["loaded_by"]) or "no worker"
        lines.append(
            f"    v{version:<4} {info['state']:<18} {share.get(version, 0.0):>5.1f}% of the last minute"
            f"   loaded by: {loaded}"
        )
    lines.append(f"  workers: {len(status['workers'])}   gateways: {len(status['gateways'])}")
    return "\n".join(lines)


def _canary_lines(canary: Mapping[str, Any] | None) -> list[str]:
    if not canary:
        return []
    steps = canary["steps"]
    share = steps[min(canary["step"], len(steps) - 1)]
    where = (
        f"at {share}% (step {canary['step'] + 1} of {len(steps)})" if canary["status"] == "running" else ""
    )
    return [f"  canary: v{canary['version']} {canary['status']} {where}".rstrip() + f": {canary['reason']}"]


def _weights(weights: Mapping[str, int]) -> str:
    return ",".join(f"{v}={s}" for v, s in sorted(weights.items(), key=lambda item: int(item[0])))
