"""The detector without Kafka: aggregation, windows, alert state machine, false-positive rate."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.drift_traffic import Phase, Replay, records, timeline
from bench.synthetic_model import FEATURES, synthetic_model
from drift.aggregate import Collector, aggregate, decode
from drift.alerting import AlertState, step
from drift.config import Catalog, Plan
from drift.detector import DetectorState, Partial
from drift.evaluate import Observation, evaluate
from drift.totals import Totals, sum_totals
from rtml_client import stats
from runtime.errors import BadRecord, DriftConfigError
from runtime.settings import DriftModelSettings, DriftSettings, DriftThreshold
from schemas.drift import DriftAlert
from schemas.model_metadata import ModelMetadata

FAST = settings(max_examples=60, deadline=None)
TEST_WINDOWS = DriftSettings(window_s=10, step_s=1, allowed_lateness_s=0)
META, TRAFFIC = synthetic_model("drift_synth")
REG_META, REG_TRAFFIC = synthetic_model("drift_reg", task="regression")


def catalog(drift: DriftSettings = TEST_WINDOWS, *metas: ModelMetadata) -> Catalog:
    return Catalog.build({m.name: {m.version: m} for m in (metas or (META, REG_META))}, drift)


def plan_of(meta: ModelMetadata = META, drift: DriftSettings = TEST_WINDOWS) -> Plan:
    plan = catalog(drift).lookup(meta.name, meta.version)
    assert not isinstance(plan, str)
    return plan


def replay(phases: list[Phase], rate: int = 100, per_batch: int = 1, seed: int = 1) -> Replay:
    rng = np.random.default_rng(seed)
    return Replay(catalog()).run(timeline(TRAFFIC, phases, rate, 0, rng), per_batch=per_batch)


# -- aggregation -----------------------------------------------------------------------------


@FAST
@given(st.integers(1, 400), st.integers(0, 2**31), st.lists(st.integers(0, 30_000), min_size=1, max_size=400))
def test_step_totals_add_up_to_the_whole_and_match_the_pure_maths(
    n: int, seed: int, times: list[int]
) -> None:
    plan = plan_of()
    rng = np.random.default_rng(seed)
    rows, labels, conf = TRAFFIC.draw(n, rng)
    rows[rng.random(rows.shape) < 0.05] = math.nan
    t = np.resize(np.asarray(times, dtype=np.int64), n)
    matrix = np.column_stack([rows, conf])
    parts = aggregate(plan, matrix, t, np.asarray(labels, dtype=np.int64))
    assert all(step % plan.step_ms == 0 for step in parts)
    whole = sum_totals(plan.layout, parts.values())
    assert whole.count == n and whole.classes.sum() == n
    for j, subject in enumerate(plan.layout.numeric):
        column = matrix[:, j]
        expected = stats.histogram(column, subject.baseline.bin_edges)
        assert plan.layout.bins_of(j, whole.bins).tolist() == expected.tolist()
        count, total, total_sq = stats.totals(column, shift=subject.baseline.mean)
        assert (whole.present[j], whole.missing[j]) == (count, n - count)
        assert whole.sums[j] == pytest.approx(total, rel=1e-9, abs=1e-6)
        assert whole.sums_sq[j] == pytest.approx(total_sq, rel=1e-9, abs=1e-6)


def test_totals_and_partials_round_trip() -> None:
    plan = plan_of()
    rows, labels, conf = TRAFFIC.draw(50, np.random.default_rng(0))
    collector = Collector(catalog())
    for value in records(META, rows, labels, conf, range(1000, 1050)):
        collector.add(value)
    ((key, totals),) = collector.finish().items()
    assert key == ("drift_synth", "1", 1000) and totals.count == 50
    partial = Partial("drift_synth", "1", 1000, 1049, totals)
    again = Partial.decode(partial.encode())
    assert again.totals.to_dict() == totals.to_dict() and again.totals.fits(plan.layout)


@pytest.mark.parametrize(
    "value",
    [b"", b"nope", b"[1]", b'{"model": 1, "version": "1", "features": [], "predicted_at_ms": 1}',
     b'{"model": "m", "version": "1", "features": {}, "predicted_at_ms": 1}',
     b'{"model": "m", "version": "1", "features": [], "predicted_at_ms": true}'],
)  # fmt: skip
def test_unusable_records_are_refused(value: bytes) -> None:
    with pytest.raises(BadRecord):
        decode(value)


def test_collector_counts_what_it_skips() -> None:
    collector = Collector(catalog())
    good = records(META, *TRAFFIC.draw(3, np.random.default_rng(0)), [1, 2, 3])
    collector.add(b'{"model": "x", "version": "1", "features": [], "predicted_at_ms": 5}')
    collector.add(b'{"model": "drift_synth", "version": "1", "features": [1], "predicted_at_ms": 5}')
    collector.add(
        b'{"model": "drift_synth", "version": "1", "features": [1, 2, 3, "a", 5], "predicted_at_ms": 5}'
    )
    for value in good:
        collector.add(value)
    collector.finish()
    assert collector.outcomes == {"unknown_model": 1, "bad_payload": 2, "accepted": 3}


def test_window_settings_must_be_whole_steps() -> None:
    with pytest.raises(ValueError, match=r"window_s \(10.0\) is not a whole number"):
        DriftSettings(window_s=10, step_s=3)  # refused when settings load (tests/unit/test_settings.py)
    with pytest.raises(DriftConfigError):  # and by the detector, for settings built unvalidated
        catalog(DriftSettings.model_construct(window_s=10, step_s=3))
    overridden = DriftSettings(
        models={"drift_synth": DriftModelSettings(window_s=60, step_s=5, min_samples=50)}
    )
    plan = plan_of(drift=overridden)
    assert (plan.window_ms, plan.step_ms, plan.min_samples, plan.steps_per_window) == (60_000, 5000, 50, 12)
    assert (
        catalog(DriftSettings(models={"drift_synth": DriftModelSettings(enabled=False)})).lookup(
            "drift_synth", "1"
        )
        == "disabled"
    )


# -- the alert state machine -----------------------------------------------------------------


def obs(magnitude: float, significant: bool = True) -> Observation:
    return Observation(
        "x", "feature", "psi", magnitude, magnitude, 1000, None, 0.0, 0.0 if significant else 1.0
    )


@FAST
@given(st.lists(st.sampled_from(["over", "clear", "between", "noise"]), max_size=60), st.integers(1, 4))
def test_alerts_fire_after_k_overs_and_resolve_after_k_clears(steps: list[str], k: int) -> None:
    plan = plan_of(drift=TEST_WINDOWS.model_copy(update={"debounce_steps": k}))
    threshold = DriftThreshold(warning=0.1, critical=0.2)
    values = {
        "over": obs(0.15),
        "clear": obs(0.01),
        "between": obs(0.09),
        "noise": obs(0.5, significant=False),
    }
    state, run, events = AlertState(), 0, []
    for i, kind in enumerate(steps):
        was_firing = state.firing
        state, transition = step(state, values[kind], plan, threshold, i)
        if transition is not None:
            events.append((transition.status, run + 1))
        # run: consecutive steps pushing towards the opposite state
        pushes = (kind == "over") if not was_firing else kind in ("clear", "noise")
        run = 0 if transition is not None or not pushes else run + 1
    assert all(length >= k for _status, length in events)
    statuses = [status for status, _ in events]
    assert statuses == ["firing", "resolved"] * (len(statuses) // 2) + ["firing"] * (len(statuses) % 2)


def test_escalation_keeps_the_alert_id() -> None:
    plan = plan_of(drift=TEST_WINDOWS.model_copy(update={"debounce_steps": 1}))
    threshold = DriftThreshold(warning=0.1, critical=0.2)
    state, fired = step(AlertState(), obs(0.15), plan, threshold, 1000)
    state, escalated = step(state, obs(0.3), plan, threshold, 2000)
    assert fired and escalated and fired.alert_id == escalated.alert_id
    assert (fired.severity, escalated.severity, escalated.threshold) == ("warning", "critical", 0.2)


def test_detector_state_round_trips() -> None:
    state = DetectorState(5, 4, [1, 2], {"a": AlertState(firing=True, alert_id="x", severity="warning")})
    assert DetectorState.decode(state.encode()) == state


# -- windows over event time -------------------------------------------------------------------


def test_undrifted_traffic_never_alerts() -> None:
    run = replay([Phase(300)])
    assert len(run.reports) >= 290 and all(r.sufficient for r in run.reports[10:])
    assert run.alerts == []


def test_a_one_std_shift_fires_within_the_window_and_resolves_after_return() -> None:
    run = replay([Phase(60), Phase(30, {"score": 1.0}), Phase(60)])
    firing = [a for a in run.alerts if a.status == "firing"]
    assert {a.subject for a in firing if a.subject_kind == "feature"} == {"score"}
    first = min(firing, key=lambda a: a.window_end_ms)
    assert first.subject == "score" and 60_000 < first.window_end_ms <= 70_000
    resolved = {a.alert_id for a in run.alerts if a.status == "resolved"}
    assert {a.alert_id for a in firing} == resolved
    assert all(a.window_end_ms <= 110_000 for a in run.alerts if a.status == "resolved")


def test_a_replay_in_big_batches_gives_the_same_alerts() -> None:
    phases = [Phase(30), Phase(20, {"amount": 1.0}), Phase(30)]

    def summary(alerts: list[DriftAlert]) -> list[tuple[str, str, int]]:
        return sorted((a.event_id, a.subject, a.window_end_ms) for a in alerts)

    assert summary(replay(phases).alerts) == summary(replay(phases, per_batch=17).alerts) != []


def test_late_steps_are_dropped_and_counted() -> None:
    run = replay([Phase(30)])
    plan = plan_of()
    old = Partial("drift_synth", "1", 0, None, Totals.empty(plan.layout))
    old.totals.count = 7
    outcome = run.detector.on_partial(old, run.steps, run.states)
    assert outcome.late_records == 7 and len(run.steps) <= plan.steps_per_window + 1


def test_regressor_outputs_are_compared_by_value_histogram() -> None:
    run = Replay(catalog()).run(timeline(REG_TRAFFIC, [Phase(20)], 100, 0, np.random.default_rng(2)))
    subjects = {(o.subject, o.kind, o.statistic) for o in run.reports[-1].observations}
    assert {("prediction", "output", "psi"), ("prediction", "output", "mean_shift")} <= subjects
    assert run.alerts == []


def test_small_windows_give_no_verdict() -> None:
    plan = plan_of()
    report = evaluate(plan, Totals.empty(plan.layout), 10_000)
    assert not report.sufficient and report.observations == ()
    assert set(FEATURES) <= {s.name for s in plan.layout.numeric}


def test_emitted_alerts_match_the_exported_json_schema() -> None:
    import jsonschema

    run = replay([Phase(20), Phase(15, {"flag": 3.0})])
    assert run.alerts
    schema = DriftAlert.model_json_schema()
    for alert in run.alerts:
        jsonschema.validate(alert.model_dump(mode="json"), schema)
        assert alert.baseline.onnx_sha256 == META.onnx_sha256 and alert.sample_count >= 500


def test_the_watermark_waits_for_partitions_that_are_behind() -> None:
    from drift.ingest import Watermarks

    marks = Watermarks()
    marks.assign([0, 1, 2])
    marks.seen(0, 5000)
    assert marks.low() is None, "partition 1 and 2 have not said where they are"
    marks.reached_end(2)  # empty partition
    marks.seen(1, 3000)
    assert marks.low() == 3000
    marks.reached_end(1)
    assert marks.low() == 5000
    marks.reached_end(0)
    assert marks.low() == 5000, "everything read: the newest event time"
    marks.seen(1, 9000)
    assert marks.low() == 9000
    marks.revoke([1])
    assert marks.low() == 5000
