"""Canary ramps (runtime/model_policy.py, runtime/canary.py): the state machine and the judge."""

from __future__ import annotations

from collections import Counter

import pytest

from runtime import model_policy as mp
from runtime.canary import VersionStats, distribution_shift, fleet_stats, judge
from runtime.errors import InvalidInput, PolicyConflict
from schemas.control import CanaryLimits, ModelPolicy

VERSIONS = ["1", "2", "3"]
LIMITS = CanaryLimits(min_requests=10)


def running(steps: list[int] | None = None) -> ModelPolicy:
    base = mp.registered(None, "m", ["1"], "1", promote=False)
    return mp.start_canary(base, "m", VERSIONS, "2", steps or [10, 50, 100], 30, LIMITS)


def test_a_canary_routes_its_share_and_ends_in_promotion_after_the_last_step() -> None:
    policy = running()
    assert policy.running_canary is not None and policy.running_canary.share == 10
    routes = Counter(mp.route(policy, VERSIONS, "m", None, None) for _ in range(10_000))
    canary_share = routes[mp.Routed("2", "canary")] / 10_000
    assert 0.08 < canary_share < 0.12 and routes[mp.Routed("1", "default")] > 8_000
    policy = mp.advance_canary(policy, "fine")
    assert policy.running_canary is not None and policy.running_canary.share == 50
    policy = mp.advance_canary(mp.advance_canary(policy, "fine"), "all good")
    assert policy.default == "2" and policy.previous == ["1"] and policy.running_canary is None
    assert policy.canary is not None and policy.canary.status == "promoted" and "all good" in policy.change


def test_a_rolled_back_canary_leaves_the_default_alone_and_says_why() -> None:
    policy = mp.end_canary(running(), "rolled_back", "error rate 100.0% over 40 requests exceeds 1.0%")
    assert policy.default == "1" and policy.running_canary is None
    assert policy.canary is not None and policy.canary.status == "rolled_back"
    assert "error rate 100.0%" in policy.change
    assert mp.route(policy, VERSIONS, "m", None, None) == mp.Routed("1", "default")


def test_operator_rollback_and_promote_end_a_running_canary() -> None:
    stopped = mp.rollback(running(), "m", VERSIONS)
    assert stopped.default == "1" and stopped.canary is not None and stopped.canary.status == "rolled_back"
    promoted = mp.promote(running(), "m", VERSIONS, "2")
    assert promoted.default == "2" and promoted.canary is not None and promoted.canary.status == "promoted"


def test_canaries_refuse_what_cannot_work() -> None:
    base = mp.registered(None, "m", ["1"], "1", promote=False)
    with pytest.raises(PolicyConflict, match="no default"):
        mp.start_canary(ModelPolicy(model="m", revision=1, updated_at_ms=0), "m", VERSIONS, "2", [50], 1)
    with pytest.raises(PolicyConflict, match="already the default"):
        mp.start_canary(base, "m", VERSIONS, "1", [50], 1)
    with pytest.raises(InvalidInput, match="increasing percents"):
        mp.start_canary(base, "m", VERSIONS, "2", [50, 20], 1)
    with pytest.raises(PolicyConflict, match="already has a canary"):
        mp.start_canary(running(), "m", VERSIONS, "3", [50], 1)
    with pytest.raises(PolicyConflict, match="canary of v2 running"):
        mp.set_traffic(running(), "m", VERSIONS, split={"1": 50, "2": 50})
    with pytest.raises(PolicyConflict, match="split or shadow"):
        mp.retire(running(), "m", VERSIONS, "2")


def stats(rows: int = 0, errors: int = 0, p99: int = 5, labels: dict[str, int] | None = None) -> VersionStats:
    return VersionStats(rows, errors, {p99: max(rows, 1)}, labels or {})


def test_the_judge_rolls_back_on_errors_latency_and_distribution() -> None:
    canary = running().running_canary
    assert canary is not None
    at = canary.step_started_at_ms + 1
    failing = judge(canary, {"2": stats(errors=40), "1": stats(rows=400)}, at)
    assert failing.action == "rollback" and "error rate 100.0% over 40 requests" in failing.reason
    slow = judge(canary, {"2": stats(rows=150, p99=500), "1": stats(rows=400, p99=10)}, at)
    assert slow.action == "rollback" and "p99 latency 500 ms" in slow.reason
    # Fewer than 100 rows: a p99 is the slowest request, noise rather than evidence.
    few = judge(canary, {"2": stats(rows=40, p99=500), "1": stats(rows=400, p99=10)}, at)
    assert few.action != "rollback"
    shifted = judge(
        canary,
        {"2": stats(rows=40, labels={"0": 40}), "1": stats(rows=400, labels={"1": 200, "2": 200})},
        at,
    )
    assert shifted.action == "rollback" and "distribution differs" in shifted.reason


def test_the_judge_holds_until_the_step_is_over_with_enough_evidence_then_advances() -> None:
    canary = running().running_canary
    assert canary is not None
    healthy = {
        "2": stats(rows=40, labels={"0": 20, "1": 20}),
        "1": stats(rows=400, labels={"0": 200, "1": 200}),
    }
    assert judge(canary, healthy, canary.step_started_at_ms + 1000).action == "hold"
    later = canary.step_started_at_ms + 31_000
    assert judge(canary, {"2": stats(rows=3), "1": stats(rows=400)}, later).reason.startswith(
        "waiting for 10"
    )
    advance = judge(canary, healthy, later)
    assert advance.action == "advance" and "40 requests" in advance.reason


def test_fleet_stats_sum_processes_and_leave_shadow_rows_out() -> None:
    members = [
        {"rows": {"2": {"canary": 5, "shadow": 100}}, "errors": {"2": {"": 1}}, "latency": {"2": {"5": 5}}},
        {"rows": {"2": {"canary": 7}}, "labels": {"2": {"0": 7}}, "latency": {"2": {"50": 7}}},
    ]
    summed = fleet_stats(members)["2"]
    assert (summed.rows, summed.errors, summed.labels) == (12, 1, {"0": 7})
    assert summed.p99_ms() == 50
    assert distribution_shift({"a": 1}, {"a": 3}) == 0 and distribution_shift({"a": 1}, {"b": 1}) == 1
