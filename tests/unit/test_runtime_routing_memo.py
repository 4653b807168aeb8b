"""The worker resolves unrouted requests once per policy (workers/inference.py ``_Loaded.unrouted``),
and only when no split or canary makes the answer depend on the request's routing key."""

from __future__ import annotations

from typing import Any, cast

from runtime import model_policy as mp
from workers.inference import ModelRuntime, _Loaded

VERSIONS = ["1", "2"]
RUNTIMES = cast(dict[str, ModelRuntime], {"1": object(), "2": object()})


def _loaded(policy: Any) -> _Loaded:
    return _Loaded(dict(RUNTIMES), VERSIONS, policy)


def test_without_split_or_canary_the_default_is_resolved_once() -> None:
    assert _loaded(None).unrouted == (RUNTIMES["2"], mp.Routed("2", "default"))
    promoted = mp.registered(None, "m", ["1"], "1", promote=True)
    assert _loaded(promoted).unrouted == (RUNTIMES["1"], mp.Routed("1", "default"))


def test_a_canary_or_a_split_leaves_every_request_to_the_router() -> None:
    base = mp.registered(None, "m", ["1"], "1", promote=False)
    canary = mp.start_canary(base, "m", VERSIONS, "2", [50], 30)
    assert _loaded(canary).unrouted is None
    split = mp.set_traffic(base, "m", VERSIONS, split={"1": 50, "2": 50})
    assert _loaded(split).unrouted is None


def test_a_default_that_is_not_loaded_is_not_memoised() -> None:
    assert _Loaded({"1": RUNTIMES["1"]}, VERSIONS, None).unrouted is None
