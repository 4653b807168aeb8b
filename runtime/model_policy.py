"""The model lifecycle as pure functions: each change of a :class:`ModelPolicy`, and routing.

Every operation takes the current policy (None before the model's first one) and the versions
the registry holds, and returns the next policy or raises an error naming what exists; nothing
here does I/O, so the command line, the admin endpoints and the tests share one implementation
(:mod:`runtime.control` reads and writes the records). The state machine (ARCHITECTURE.md)::

    registered --promote--> default --promote other--> previous --rollback--> default
        |                      |                          |
        +---- split / shadow --+                          +--retire--> retired (serves nothing)

Routing: :func:`route` picks the version of one request: a named version as asked (pinned),
else an arm of the split (sticky per routing key: the same key always lands on the same arm
while the weights stay), else the default. :func:`shadows` lists the versions a request is
mirrored to.
"""

from __future__ import annotations

import random
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from runtime.clock import now_ms
from runtime.errors import InvalidInput, ModelNotFound, PolicyConflict, VersionNotFound
from schemas.control import CanaryLimits, CanaryState, ModelPolicy, Route

MAX_PREVIOUS = 20
"""Rollback history kept per model: deep enough for any real incident, bounded for the record."""


@dataclass(frozen=True)
class Routed:
    version: str
    route: Route


def known_versions(policy: ModelPolicy | None, local: Sequence[str]) -> list[str]:
    """Versions registered anywhere: those in the local registry and those the control plane
    recorded (whose artifacts any process can fetch)."""
    recorded = set(policy.versions) if policy is not None else set()
    return sorted(set(local) | recorded, key=int)


def default_version(policy: ModelPolicy | None, registered: Sequence[str]) -> str | None:
    """The version that answers unrouted requests: the policy's, else (no policy yet, a registry
    from before the control plane) the highest registered version."""
    if policy is not None and policy.default is not None:
        return policy.default
    if policy is None and registered:
        return max(registered, key=int)
    return None


def serving_versions(policy: ModelPolicy | None, registered: Sequence[str]) -> list[str]:
    """Registered versions that are not retired: what a worker keeps loaded."""
    retired = set(policy.retired) if policy else set()
    return sorted((v for v in registered if v not in retired), key=int)


# -- changes ------------------------------------------------------------------------------


def registered(
    policy: ModelPolicy | None,
    model: str,
    versions: Sequence[str],
    version: str,
    *,
    promote: bool,
    by: str = "",
    sha256: str | None = None,
) -> ModelPolicy:
    """After ``version`` was added to the registry: it serves nothing until promoted, unless it is
    the model's first version (or ``promote``). A registry from before the control plane keeps
    serving what it served (its highest earlier version). ``sha256``: the artifact's checksum, so
    processes on other machines can fetch and verify it."""
    earlier = [v for v in versions if v != version]
    current = policy or _initial(model, default_version(None, earlier))
    if sha256 is not None:
        current = current.model_copy(update={"versions": {**current.versions, version: sha256}})
    if promote or current.default is None:
        return _promoted(current, version, f"registered v{version} and promoted it", by)
    return _next(current, by, f"registered v{version} (not serving until promoted)")


def published(
    policy: ModelPolicy | None,
    model: str,
    versions: Sequence[str],
    checksums: Mapping[str, str],
    by: str = "",
) -> ModelPolicy:
    """Record the artifacts of versions registered before (``rtml models publish``): what is served
    does not change; processes on other machines can now fetch them."""
    current = policy or _initial(model, default_version(None, versions))
    listed = ",".join(f"v{v}" for v in sorted(checksums, key=int))
    return _next(current, by, f"published {listed}", versions={**current.versions, **checksums})


def promote(
    policy: ModelPolicy | None, model: str, versions: Sequence[str], version: str, by: str = ""
) -> ModelPolicy:
    current = policy or _initial(model, default_version(None, versions))
    _require_registered(model, versions, version)
    if version in current.retired:
        raise PolicyConflict(
            f"model '{model}' v{version} is retired; serving versions: {_serving(current, versions)}"
        )
    if current.default == version:
        raise PolicyConflict(f"model '{model}' v{version} is already the default")
    return _promoted(current, version, f"promoted v{version} (was v{current.default})", by)


def rollback(policy: ModelPolicy | None, model: str, versions: Sequence[str], by: str = "") -> ModelPolicy:
    current = policy or _initial(model, default_version(None, versions))
    if current.running_canary is not None:  # the candidate never became default: stop it
        return end_canary(current, "rolled_back", "rolled back by an operator", by)
    candidates = [v for v in current.previous if v in versions and v not in current.retired]
    if not candidates:
        raise PolicyConflict(
            f"model '{model}' has no earlier default to roll back to (default v{current.default}); "
            f"promote a version instead: {_serving(current, versions)}"
        )
    target = candidates[-1]
    # Rolling back means "all traffic back to the last good version": a split ends with it.
    return _next(
        current,
        by,
        f"rolled back from v{current.default} to v{target}",
        default=target,
        previous=current.previous[: current.previous.index(target)],
        split={},
    )


def retire(
    policy: ModelPolicy | None, model: str, versions: Sequence[str], version: str, by: str = ""
) -> ModelPolicy:
    current = policy or _initial(model, default_version(None, versions))
    _require_registered(model, versions, version)
    if version == current.default:
        raise PolicyConflict(
            f"model '{model}' v{version} is the default: promote another version first "
            f"(serving versions: {_serving(current, versions)})"
        )
    canary = current.running_canary
    if version in current.split or version in current.shadow or (canary and canary.version == version):
        raise PolicyConflict(
            f"model '{model}' v{version} receives split or shadow traffic: change the traffic first"
        )
    if version in current.retired:
        raise PolicyConflict(f"model '{model}' v{version} is already retired")
    return _next(
        current,
        by,
        f"retired v{version}",
        retired=sorted([*current.retired, version], key=int),
        previous=[v for v in current.previous if v != version],
    )


def set_traffic(
    policy: ModelPolicy | None,
    model: str,
    versions: Sequence[str],
    *,
    split: Mapping[str, int] | None = None,
    shadow: Mapping[str, int] | None = None,
    by: str = "",
) -> ModelPolicy:
    """Replace the split and/or the shadow set (None leaves that one as it is; {} clears it)."""
    current = policy or _initial(model, default_version(None, versions))
    if current.default is None:
        raise PolicyConflict(f"model '{model}' has no default version; promote one first")
    updates: dict[str, object] = {}
    words: list[str] = []
    if split and current.running_canary is not None:
        raise PolicyConflict(
            f"model '{model}' has a canary of v{current.running_canary.version} running: "
            "roll it back or let it finish before splitting traffic"
        )
    if split is not None:
        updates["split"] = _checked_weights(current, versions, "split", split)
        if split and sum(split.values()) != 100:
            raise InvalidInput(
                f"split weights must sum to 100; {_render(split)} sums to {sum(split.values())}"
            )
        words.append(f"split {_render(split) or 'cleared'}")
    if shadow is not None:
        updates["shadow"] = _checked_weights(current, versions, "shadow", shadow)
        words.append(f"shadow {_render(shadow) or 'cleared'}")
    if not words:
        raise InvalidInput("nothing to change: give a split, a shadow, or clear them")
    return _next(current, by, "; ".join(words), **updates)


def clear_traffic(
    policy: ModelPolicy | None, model: str, versions: Sequence[str], by: str = ""
) -> ModelPolicy:
    return set_traffic(policy, model, versions, split={}, shadow={}, by=by)


def start_canary(
    policy: ModelPolicy | None,
    model: str,
    versions: Sequence[str],
    version: str,
    steps: Sequence[int],
    step_s: float,
    limits: CanaryLimits | None = None,
    by: str = "",
) -> ModelPolicy:
    """Ramp ``version`` through ``steps`` percent of the traffic, ``step_s`` seconds a step; it is
    promoted after the last step unless a limit is crossed (judged by :mod:`runtime.canary`)."""
    current = policy or _initial(model, default_version(None, versions))
    if current.default is None:
        raise PolicyConflict(f"model '{model}' has no default version to compare a canary with; promote one")
    _require_registered(model, versions, version)
    if version == current.default:
        raise PolicyConflict(f"model '{model}' v{version} is already the default")
    if version in current.retired:
        raise PolicyConflict(f"model '{model}' v{version} is retired")
    if (running := current.running_canary) is not None:
        raise PolicyConflict(f"model '{model}' already has a canary of v{running.version} running")
    if current.split:
        raise PolicyConflict(f"model '{model}' has a split ({_render(current.split)}): clear it first")
    if not steps or any(not 1 <= s <= 100 for s in steps) or list(steps) != sorted(set(steps)):
        raise InvalidInput(
            f"canary steps must be increasing percents in 1..100, e.g. 5,25,50,100; got {list(steps)}"
        )
    if step_s <= 0:
        raise InvalidInput(f"--step-s must be positive, got {step_s}")
    canary = CanaryState(
        version=version,
        baseline=current.default,
        steps=list(steps),
        step_s=step_s,
        step_started_at_ms=now_ms(),
        limits=limits or CanaryLimits(),
        reason="starting",
    )
    change = f"canary of v{version} started: {','.join(map(str, steps))}% for {step_s:g} s each"
    return _next(current, by, change, canary=canary.model_dump())


def advance_canary(policy: ModelPolicy, reason: str, by: str = "") -> ModelPolicy:
    """The next step of the running canary, or its promotion after the last one."""
    canary = policy.running_canary
    if canary is None:
        raise PolicyConflict(f"model '{policy.model}' has no running canary")
    if canary.step + 1 >= len(canary.steps):
        ended = canary.model_copy(update={"status": "promoted", "reason": reason})
        change = f"canary of v{canary.version} promoted: {reason}"
        promoted = _promoted(policy.model_copy(update={"canary": None}), canary.version, change, by)
        return promoted.model_copy(update={"canary": ended})
    stepped = canary.model_copy(
        update={"step": canary.step + 1, "step_started_at_ms": now_ms(), "reason": reason}
    )
    change = f"canary of v{canary.version} at {stepped.share}%: {reason}"
    return _next(policy, by, change, canary=stepped.model_dump())


def end_canary(policy: ModelPolicy, status: str, reason: str, by: str = "") -> ModelPolicy:
    """Stop the running canary without promoting it (the default never changed)."""
    canary = policy.running_canary
    if canary is None:
        raise PolicyConflict(f"model '{policy.model}' has no running canary")
    ended = canary.model_copy(update={"status": status, "reason": reason})
    return _next(policy, by, f"canary of v{canary.version} rolled back: {reason}", canary=ended.model_dump())


# -- routing ------------------------------------------------------------------------------


def route(
    policy: ModelPolicy | None,
    registered_versions: Sequence[str],
    model: str,
    version: str | None,
    routing_key: str | None,
) -> Routed:
    """The version for one request; raises VersionNotFound for a named version that is unknown
    or retired, ModelNotFound when nothing can serve."""
    if version is not None:
        if version not in registered_versions or (policy is not None and version in policy.retired):
            raise VersionNotFound(
                f"model '{model}' has no version '{version}'; available versions: "
                f"{', '.join(serving_versions(policy, registered_versions)) or 'none'}"
            )
        return Routed(version, "pinned")
    if policy is not None and policy.split:
        return Routed(_pick(policy.split, _bucket(routing_key)), "split")
    canary = policy.running_canary if policy is not None else None
    if canary is not None and _bucket(routing_key) < canary.share:
        return Routed(canary.version, "canary")
    default = default_version(policy, registered_versions)
    if default is None:
        raise ModelNotFound(f"model '{model}' has no default version: promote one")
    return Routed(default, "default")


def shadows(policy: ModelPolicy | None, served: str, routing_key: str | None) -> list[str]:
    """Versions this request is mirrored to (never the one that answered it)."""
    if policy is None or not policy.shadow:
        return []
    bucket = _bucket(routing_key)
    return [v for v, share in sorted(policy.shadow.items()) if v != served and bucket < share]


def parse_weights(text: str) -> dict[str, int]:
    """``"1=90,2=10"`` -> {"1": 90, "2": 10}; raises InvalidInput naming the bad part."""
    weights: dict[str, int] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        version, sep, share = part.partition("=")
        if not sep or not version.strip().isdigit() or not share.strip().isdigit():
            raise InvalidInput(f"'{part}' is not VERSION=PERCENT (e.g. 1=90,2=10)")
        weights[version.strip()] = int(share)
    if not weights:
        raise InvalidInput(f"'{text}' names no VERSION=PERCENT")
    return weights


# -- helpers ------------------------------------------------------------------------------


def _bucket(routing_key: str | None) -> int:
    """0..99: a hash of the routing key (sticky), else random (per request)."""
    if routing_key is None:
        return random.randrange(100)
    return zlib.crc32(routing_key.encode()) % 100


def _pick(weights: Mapping[str, int], bucket: int) -> str:
    total = 0
    for version, share in sorted(weights.items(), key=lambda item: int(item[0])):
        total += share
        if bucket < total:
            return version
    return max(weights, key=int)


def _initial(model: str, default: str | None) -> ModelPolicy:
    """The implicit policy of a model without a record (revision 0: nothing written yet)."""
    return ModelPolicy(model=model, revision=0, default=default, updated_at_ms=now_ms(), change="initial")


def _next(current: ModelPolicy, by: str, change: str, **updates: object) -> ModelPolicy:
    values = current.model_dump()
    values.update(updates)
    values.update(revision=current.revision + 1, updated_at_ms=now_ms(), updated_by=by, change=change)
    return ModelPolicy.model_validate(values)


def _promoted(current: ModelPolicy, version: str, change: str, by: str) -> ModelPolicy:
    previous = [v for v in current.previous if v != version]
    if current.default is not None and current.default != version:
        previous.append(current.default)
    # A split whose arms no longer include the new default would silently keep the old one serving.
    split = dict(current.split) if version in current.split else {}
    shadow = {v: s for v, s in current.shadow.items() if v != version}
    canary = current.canary
    if canary is not None and canary.status == "running":
        ended = "promoted" if canary.version == version else "rolled_back"
        canary = canary.model_copy(update={"status": ended, "reason": f"ended by: {change}"})
    return _next(
        current,
        by,
        change,
        default=version,
        previous=previous[-MAX_PREVIOUS:],
        split=split,
        shadow=shadow,
        canary=canary.model_dump() if canary is not None else None,
    )


def _require_registered(model: str, versions: Sequence[str], version: str) -> None:
    if not versions:
        raise ModelNotFound(f"model '{model}' is not registered")
    if version not in versions:
        raise VersionNotFound(
            f"model '{model}' has no version '{version}'; registered versions: "
            f"{', '.join(sorted(versions, key=int))}"
        )


def _checked_weights(
    current: ModelPolicy, versions: Sequence[str], what: str, weights: Mapping[str, int]
) -> dict[str, int]:
    for version, share in weights.items():
        _require_registered(current.model, versions, version)
        if version in current.retired:
            raise PolicyConflict(
                f"model '{current.model}' v{version} is retired: it cannot receive {what} traffic"
            )
        if not 0 <= share <= 100:
            raise InvalidInput(f"{what} share of v{version} is {share}; expected 0..100")
    return {v: s for v, s in weights.items() if s > 0 or what == "split"}


def _serving(current: ModelPolicy, versions: Sequence[str]) -> str:
    return ", ".join(serving_versions(current, versions)) or "none"


def _render(weights: Mapping[str, int]) -> str:
    return ",".join(f"{v}={s}" for v, s in sorted(weights.items(), key=lambda item: int(item[0])))
