"""The lifecycle state machine and routing (runtime/model_policy.py): pure functions, no Kafka."""

from __future__ import annotations

from collections import Counter

import pytest
from pydantic import ValidationError

from runtime import model_policy as mp
from runtime.errors import InvalidInput, ModelNotFound, PolicyConflict, VersionNotFound
from schemas.control import ModelPolicy

VERSIONS = ["1", "2", "3"]


def first(model: str = "m") -> ModelPolicy:
    return mp.registered(None, model, ["1"], "1", promote=False)


def test_first_version_is_promoted_and_later_ones_wait_for_promote() -> None:
    policy = first()
    assert policy.default == "1" and policy.revision == 1
    policy = mp.registered(policy, "m", ["1", "2"], "2", promote=False)
    assert policy.default == "1" and policy.revision == 2 and "not serving until promoted" in policy.change
    policy = mp.registered(policy, "m", ["1", "2", "3"], "3", promote=True)
    assert policy.default == "3" and policy.previous == ["1"]


def test_a_registry_from_before_the_control_plane_keeps_serving_its_highest_version() -> None:
    assert mp.default_version(None, ["1", "2", "10"]) == "10"
    policy = mp.registered(None, "m", ["1", "2", "3"], "3", promote=False)
    assert policy.default == "2"  # v3 is new: the highest of the earlier versions keeps serving


def test_promote_then_rollback_returns_to_the_previous_default() -> None:
    policy = mp.promote(first(), "m", VERSIONS, "2")
    policy = mp.promote(policy, "m", VERSIONS, "3")
    assert (policy.default, policy.previous) == ("3", ["1", "2"])
    policy = mp.rollback(policy, "m", VERSIONS)
    assert (policy.default, policy.previous) == ("2", ["1"])
    policy = mp.rollback(policy, "m", VERSIONS)
    assert (policy.default, policy.previous) == ("1", [])
    with pytest.raises(PolicyConflict, match="no earlier default"):
        mp.rollback(policy, "m", VERSIONS)


def test_bad_changes_name_what_exists() -> None:
    policy = first()
    with pytest.raises(VersionNotFound, match="registered versions: 1, 2, 3"):
        mp.promote(policy, "m", VERSIONS, "9")
    with pytest.raises(ModelNotFound, match="not registered"):
        mp.promote(None, "nope", [], "1")
    with pytest.raises(InvalidInput, match="sum to 100"):
        mp.set_traffic(policy, "m", VERSIONS, split={"1": 60, "2": 30})
    with pytest.raises(VersionNotFound, match="registered versions"):
        mp.set_traffic(policy, "m", VERSIONS, split={"1": 50, "7": 50})
    with pytest.raises(PolicyConflict, match="is the default"):
        mp.retire(policy, "m", VERSIONS, "1")
    with pytest.raises(PolicyConflict, match="already the default"):
        mp.promote(policy, "m", VERSIONS, "1")
    with pytest.raises(InvalidInput):
        mp.parse_weights("1:90")


def test_a_model_with_no_default_refuses_traffic_changes() -> None:
    empty = ModelPolicy(model="m", revision=1, updated_at_ms=0)
    with pytest.raises(PolicyConflict, match="no default"):
        mp.set_traffic(empty, "m", VERSIONS, split={"1": 100})


def test_retired_versions_serve_nothing_even_when_named() -> None:
    policy = mp.retire(mp.promote(first(), "m", VERSIONS, "2"), "m", VERSIONS, "1")
    assert policy.retired == ["1"] and policy.previous == []
    with pytest.raises(VersionNotFound, match="available versions: 2, 3"):
        mp.route(policy, VERSIONS, "m", "1", None)
    with pytest.raises(PolicyConflict, match="retired"):
        mp.promote(policy, "m", VERSIONS, "1")
    with pytest.raises(PolicyConflict, match="retired"):
        mp.set_traffic(policy, "m", VERSIONS, shadow={"1": 10})
    assert mp.serving_versions(policy, VERSIONS) == ["2", "3"]


def test_a_version_in_the_split_cannot_be_retired() -> None:
    policy = mp.set_traffic(first(), "m", VERSIONS, split={"1": 50, "2": 50})
    with pytest.raises(PolicyConflict, match="split or shadow"):
        mp.retire(policy, "m", VERSIONS, "2")


def test_split_routes_by_weight_and_sticks_per_routing_key() -> None:
    policy = mp.set_traffic(first(), "m", VERSIONS, split={"1": 90, "2": 10})
    counts = Counter(mp.route(policy, VERSIONS, "m", None, None).version for _ in range(20_000))
    assert 0.08 < counts["2"] / 20_000 < 0.12
    for key in ("alice", "bob", "carol", "42"):
        chosen = {mp.route(policy, VERSIONS, "m", None, key).version for _ in range(20)}
        assert len(chosen) == 1
    assert mp.route(policy, VERSIONS, "m", "3", "alice") == mp.Routed("3", "pinned")
    assert mp.route(policy, VERSIONS, "m", None, "x").route == "split"


def test_shadow_mirrors_its_share_and_never_the_version_that_answered() -> None:
    policy = mp.set_traffic(first(), "m", VERSIONS, shadow={"3": 100, "2": 0})
    assert policy.shadow == {"3": 100}
    assert mp.shadows(policy, "1", None) == ["3"]
    assert mp.shadows(policy, "3", None) == []
    half = mp.set_traffic(policy, "m", VERSIONS, shadow={"2": 50})
    mirrored = sum(bool(mp.shadows(half, "1", None)) for _ in range(10_000))
    assert 4_500 < mirrored < 5_500


def test_promoting_a_version_outside_the_split_ends_the_split() -> None:
    policy = mp.set_traffic(first(), "m", VERSIONS, split={"1": 50, "2": 50}, shadow={"3": 10})
    promoted = mp.promote(policy, "m", VERSIONS, "3")
    assert promoted.split == {} and promoted.shadow == {}
    kept = mp.promote(policy, "m", VERSIONS, "2")
    assert kept.split == {"1": 50, "2": 50}


def test_rollback_ends_a_split() -> None:
    policy = mp.set_traffic(mp.promote(first(), "m", VERSIONS, "2"), "m", VERSIONS, split={"2": 50, "3": 50})
    assert mp.rollback(policy, "m", VERSIONS).split == {}


def test_the_policy_record_refuses_inconsistent_states() -> None:
    with pytest.raises(ValidationError, match="sum to 90"):
        ModelPolicy(model="m", revision=1, default="1", split={"1": 90}, updated_at_ms=0)
    with pytest.raises(ValidationError, match="retired"):
        ModelPolicy(model="m", revision=1, default="1", retired=["1"], updated_at_ms=0)
    with pytest.raises(ValidationError, match="still receive traffic"):
        ModelPolicy(model="m", revision=1, default="1", retired=["2"], shadow={"2": 5}, updated_at_ms=0)


def test_history_is_bounded() -> None:
    policy = first()
    versions = [str(v) for v in range(1, 40)]
    for version in versions[1:]:
        policy = mp.promote(policy, "m", versions, version)
    assert len(policy.previous) == mp.MAX_PREVIOUS and policy.default == "39"
