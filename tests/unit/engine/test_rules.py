"""Example-based tests of the pure stop-rule engine."""

from __future__ import annotations

import math

import pytest

from plateau.api import MetricRule, Reason, StopSpec
from plateau.engine.fold import Evaluation, track
from plateau.engine.rules import CohortView, GpuWindow, Observation, decide, percentile


def spec(**stop: object) -> StopSpec:
    return StopSpec.model_validate(stop)


def fold(rule: MetricRule, values: list[float], steps: list[int] | None = None):
    steps = steps or [100 * (i + 1) for i in range(len(values))]
    return track(None, rule, [Evaluation(s, v) for s, v in zip(steps, values)])


def test_patience_counts_evaluations_without_min_delta_improvement() -> None:
    rule = MetricRule(name="val_loss", patience=3, min_delta={"absolute": 0.01})
    m = fold(rule, [1.0, 0.5, 0.495, 0.492, 0.491])
    assert m.since_improvement == 3
    assert (m.best, m.best_step) == (0.491, 500)  # the true best, for restore-best
    assert m.reference == 0.5  # the value improvements are measured against
    d = decide(spec(metric=rule.model_dump(by_alias=True)), Observation(metric=m))
    assert d.stop and d.reason == Reason.PLATEAU
    assert d.message == "val_loss has not improved by 0.01 for 3 evaluations; best 0.491 at step 500"


def test_one_evaluation_short_of_patience_goes_on() -> None:
    rule = MetricRule(name="val_loss", patience=3)
    m = fold(rule, [1.0, 0.5, 0.6, 0.7])
    assert m.since_improvement == 2
    assert not decide(spec(metric={"name": "val_loss", "patience": 3}), Observation(metric=m)).stop


def test_relative_min_delta_scales_with_the_best_value() -> None:
    rule = MetricRule(name="loss", patience=1, min_delta={"relative": 0.1})
    # 95 is 5% better than 100: not an improvement at 10%; 85 is.
    assert fold(rule, [100.0, 95.0]).since_improvement == 1
    assert fold(rule, [100.0, 85.0]).since_improvement == 0


def test_progress_min_delta_scales_with_how_far_the_run_has_come() -> None:
    rule = MetricRule(name="loss", patience=2, min_delta={"progress": 0.05})
    # From 10 to 2: 8 of progress, so an improvement must beat 2 by 0.4.
    far = fold(rule, [10.0, 2.0, 1.7, 1.65])
    assert (far.first, far.reference, far.since_improvement) == (10.0, 2.0, 2)
    assert fold(rule, [10.0, 2.0, 1.5]).since_improvement == 0
    # A run still near its start counts any step: 0.05 x 0.02 of progress is 0.001.
    near = fold(rule, [10.0, 9.98, 9.975, 9.97])
    assert near.since_improvement == 0 and near.reference == 9.97
    d = decide(spec(metric={"name": "loss", "patience": 2, "minDelta": {"progress": 0.05}}), Observation(metric=far))
    assert d.stop and d.message == "loss has not improved by 5.00% of its progress (0.4) for 2 evaluations; best 1.65 at step 400"


def test_progress_min_delta_in_max_mode() -> None:
    rule = MetricRule(name="acc", mode="max", patience=1, min_delta={"progress": 0.5})
    assert fold(rule, [0.2, 0.6, 0.7]).since_improvement == 1  # 0.1 < 0.5 x 0.4
    assert fold(rule, [0.2, 0.6, 0.9]).since_improvement == 0


def test_max_mode_target_is_a_success_stop() -> None:
    stop = spec(metric={"name": "acc", "mode": "max", "target": 0.9})
    rule = stop.metric
    assert rule is not None
    going = decide(stop, Observation(metric=fold(rule, [0.5, 0.89])))
    done = decide(stop, Observation(metric=fold(rule, [0.5, 0.91, 0.7])))
    assert not going.stop
    assert done.stop and done.success and done.reason == Reason.TARGET_REACHED
    assert "reached the target 0.9" in done.message


def test_divergence_uses_the_last_value_and_the_mode() -> None:
    stop = spec(metric={"name": "val_loss", "divergence": 10.0})
    rule = stop.metric
    assert rule is not None
    assert decide(stop, Observation(metric=fold(rule, [1.0, 12.0]))).reason == Reason.DIVERGED
    assert not decide(stop, Observation(metric=fold(rule, [12.0, 1.0]))).stop


def test_nan_stops_with_check_finite_and_not_without() -> None:
    on = spec(metric={"name": "val_loss", "patience": 50})
    off = spec(metric={"name": "val_loss", "patience": 50, "checkFinite": False})
    assert on.metric is not None and off.metric is not None
    m = fold(on.metric, [1.0, math.nan])
    assert m.non_finite == 1 and m.best == 1.0
    d = decide(on, Observation(metric=m))
    assert d.stop and d.reason == Reason.NOT_FINITE
    assert not decide(off, Observation(metric=fold(off.metric, [1.0, math.nan]))).stop


def test_warmup_holds_every_metric_rule() -> None:
    stop = spec(metric={"name": "val_loss", "patience": 1, "warmup": 4, "divergence": 5.0})
    rule = stop.metric
    assert rule is not None
    during = fold(rule, [1.0, 9.0, 9.0, 9.0])
    assert not decide(stop, Observation(metric=during)).stop
    after = track(during, rule, [Evaluation(500, 9.0)])
    assert decide(stop, Observation(metric=after)).reason == Reason.DIVERGED


def test_smoothing_keeps_one_noisy_point_from_resetting_patience() -> None:
    noisy = [0.9, 0.9, 0.9, 0.9, 0.8, 0.9, 0.9]
    raw = fold(MetricRule(name="l", patience=3), noisy)
    smooth = fold(MetricRule(name="l", patience=3, smoothing=0.8, min_delta={"absolute": 0.02}), noisy)
    assert raw.since_improvement == 2  # the 0.8 outlier reset it
    assert smooth.since_improvement == 6  # smoothed, it moved by 0.02 at most
    assert smooth.best == 0.8  # the raw best is still what restore-best needs


def test_deadline_and_budget_report_what_a_stop_saves() -> None:
    stop = spec(maxDuration="2h", maxGpuHours=10)
    d = decide(stop, Observation(elapsed_seconds=7200, gpu_hours=4.0))
    assert d.stop and d.reason == Reason.DEADLINE_EXCEEDED
    assert d.gpu_hours_saved == pytest.approx(0.0)
    early = decide(spec(maxGpuHours=10, metric={"name": "l", "target": 0.1}), Observation(
        metric=fold(MetricRule(name="l", target=0.1), [0.05]), elapsed_seconds=3600, gpu_hours=4.0))
    assert early.reason == Reason.TARGET_REACHED and early.gpu_hours_saved == pytest.approx(6.0)


def test_deadline_saving_extrapolates_the_gpu_rate() -> None:
    d = decide(spec(maxDuration="10h", metric={"name": "l", "target": 1.0}), Observation(
        metric=fold(MetricRule(name="l", target=1.0), [0.5]), elapsed_seconds=3600.0, gpu_hours=8.0))
    assert d.gpu_hours_saved == pytest.approx(72.0)  # 9 more hours at 8 GPUs


def test_gpu_idle_needs_a_full_window_of_data() -> None:
    stop = spec(gpuIdle={"below": 0.05, "for": "10m"})
    assert decide(stop, Observation(gpu=GpuWindow(0.01, 600))).reason == Reason.GPU_IDLE
    partial = decide(stop, Observation(gpu=GpuWindow(0.01, 300)))
    missing = decide(stop, Observation(gpu=None))
    nan = decide(stop, Observation(gpu=GpuWindow(math.nan, 600)))
    busy = decide(stop, Observation(gpu=GpuWindow(0.30, 600)))
    assert not any(d.stop for d in (partial, missing, nan, busy))
    assert missing.unknown == (Reason.GPU_IDLE,) and "unknown" in missing.message


def test_gpu_idle_is_unknown_while_a_pod_has_no_data() -> None:
    stop = spec(gpuIdle={"below": 0.05, "for": "10m"})
    one = decide(stop, Observation(gpu=GpuWindow(0.01, 600, ("resnet-1",))))
    assert not one.stop and one.unknown == (Reason.GPU_IDLE,) and "no GPU utilisation data for pod resnet-1" in one.message
    many = decide(stop, Observation(gpu=GpuWindow(0.01, 600, tuple(f"w-{i}" for i in range(5)))))
    assert not many.stop and "for pods w-0, w-1, w-2 and 2 more" in many.message


def test_dry_run_reports_but_does_not_act() -> None:
    d = decide(spec(maxDuration="1h", dryRun=True), Observation(elapsed_seconds=4000))
    assert d.would_stop and not d.stop and d.reason == Reason.DEADLINE_EXCEEDED


def test_all_needs_every_rule_but_safety_stops_alone() -> None:
    stop = spec(combine="all", maxDuration="1h", gpuIdle={"below": 0.1, "for": "5m"},
                metric={"name": "l", "divergence": 3.0})
    rule = stop.metric
    assert rule is not None
    calm = fold(rule, [1.0])
    only_deadline = decide(stop, Observation(metric=calm, elapsed_seconds=4000, gpu=GpuWindow(0.5, 600)))
    both = decide(stop, Observation(metric=calm, elapsed_seconds=4000, gpu=GpuWindow(0.01, 600)))
    diverged = decide(stop, Observation(metric=fold(rule, [1.0, 5.0])))
    assert not only_deadline.stop
    assert both.stop and both.reason == Reason.DEADLINE_EXCEEDED and "GPU utilisation" in both.message
    assert diverged.stop and diverged.reason == Reason.DIVERGED


def test_reason_priority_when_several_fire() -> None:
    stop = spec(maxDuration="1h", metric={"name": "l", "patience": 1})
    rule = stop.metric
    assert rule is not None
    d = decide(stop, Observation(metric=fold(rule, [1.0, math.nan]), elapsed_seconds=9999))
    assert d.reason == Reason.NOT_FINITE


def test_cohort_median_compares_best_so_far_at_the_same_step() -> None:
    stop = spec(metric={"name": "l"}, cohort={"selector": {"matchLabels": {"s": "x"}}, "minJobs": 3})
    rule = stop.metric
    assert rule is not None
    m = fold(rule, [0.6, 0.5], steps=[10, 20])
    worse = decide(stop, Observation(metric=m, cohort=CohortView(20, (0.3, 0.4, 0.45))))
    better = decide(stop, Observation(metric=m, cohort=CohortView(20, (0.3, 0.55, 0.9))))
    too_few = decide(stop, Observation(metric=m, cohort=CohortView(20, (0.1, 0.2))))
    assert worse.reason == Reason.COHORT_UNDERPERFORMING and "median 0.4" in worse.message
    assert not better.stop and not too_few.stop and too_few.unknown


def test_cohort_percentile_in_max_mode_keeps_the_top_share() -> None:
    stop = spec(metric={"name": "acc", "mode": "max"},
                cohort={"selector": {"matchLabels": {"s": "x"}}, "rule": "percentile", "percentile": 25, "minJobs": 4})
    rule = stop.metric
    assert rule is not None
    peers = (0.1, 0.2, 0.3, 0.4, 0.5)  # top 25% threshold = 75th percentile = 0.4
    assert decide(stop, Observation(metric=fold(rule, [0.35]), cohort=CohortView(1, peers))).stop
    assert not decide(stop, Observation(metric=fold(rule, [0.45]), cohort=CohortView(1, peers))).stop


def test_percentile_matches_linear_interpolation() -> None:
    assert percentile([1, 2, 3, 4], 50) == 2.5
    assert percentile([5], 90) == 5
    assert percentile([0, 10], 25) == 2.5


def test_preset_fills_unset_fields_and_user_fields_win() -> None:
    from plateau.engine.presets import PRESETS, resolve_metric_rule

    stop = spec(preset="balanced", metric={"name": "val_loss", "patience": 99})
    rule = resolve_metric_rule(stop)
    assert rule is not None and rule.patience == 99
    assert rule.smoothing == PRESETS["balanced"]["smoothing"]
    assert resolve_metric_rule(stop) is rule  # cached per spec object


@pytest.mark.parametrize("preset", ["conservative", "balanced", "aggressive", "forecast"])
def test_a_users_forecast_end_replaces_the_presets(preset: str) -> None:
    """A forecast looks to a horizon or a lookahead, never both: the user's end wins, and the
    preset's thresholds stay."""
    from plateau.engine.presets import PRESETS, resolve_metric_rule

    given = PRESETS[preset].get("forecast")
    ends = [{"horizon": 500}] + ([] if preset == "forecast" else [{"lookahead": 2.5}])  # forecast needs a horizon
    for end in ends:
        stop = spec(preset=preset, metric={"name": "val_loss", "forecast": end})
        rule = resolve_metric_rule(stop)
        assert rule is not None and rule.forecast is not None
        assert (rule.forecast.horizon, rule.forecast.lookahead) == (end.get("horizon"), end.get("lookahead"))
        if given is not None:
            assert rule.forecast.min_gain.progress == given["min_gain"]["progress"]
            assert rule.forecast.confidence == given["confidence"]
    if given is not None and preset != "forecast":  # a rule preset's forecast needs no planned length
        rule = resolve_metric_rule(spec(preset=preset, metric={"name": "val_loss"}))
        assert rule is not None and rule.forecast is not None and rule.forecast.lookahead == given["lookahead"]


def test_patience_grows_with_the_evaluations_before_the_last_improvement() -> None:
    from plateau.engine.rules import effective_patience

    rule = MetricRule(name="l", patience=3, patience_growth=0.5)
    early = fold(rule, [1.0, 0.5, 0.6, 0.6, 0.6])  # improved at evaluation 2: patience stays 3
    late = fold(rule, [1.0 - i / 100 for i in range(20)] + [0.9] * 3)  # improved at 20: patience 10
    assert effective_patience(rule, early) == 3 and effective_patience(rule, late) == 10
    stop = spec(metric=rule.model_dump(by_alias=True, exclude_none=True))
    assert decide(stop, Observation(metric=early)).reason == Reason.PLATEAU
    assert not decide(stop, Observation(metric=late)).stop


def test_a_non_finite_value_during_warmup_does_not_count_toward_patience() -> None:
    """After a warmup that ended on NaN, patience counts from the first evaluation after it."""
    rule = MetricRule(name="m", patience=2, warmup=2, check_finite=False)
    m = track(None, rule, [Evaluation(1, 1.0), Evaluation(2, math.nan), Evaluation(3, 2.0)])
    assert m.since_improvement == 1 and m.non_finite == 1
    assert not decide(StopSpec(metric=rule), Observation(metric=m)).would_stop
    after = track(m, rule, [Evaluation(4, math.nan)])  # after warmup, a NaN does count
    assert after.since_improvement == 2 and decide(StopSpec(metric=rule), Observation(metric=after)).would_stop


def test_smoothing_is_an_exponential_moving_average_of_the_raw_values() -> None:
    """smoothed = alpha * smoothed + (1 - alpha) * value, started at the first value."""
    m = fold(MetricRule(name="l", smoothing=0.75), [1.0, 2.0, 0.0])
    assert m.smoothed == pytest.approx(0.75 * (0.75 * 1.0 + 0.25 * 2.0) + 0.25 * 0.0)
    assert m.reference == pytest.approx(0.9375) and m.since_improvement == 0  # 0.9375 < 1.0: improved


def test_a_plateau_message_without_min_delta_says_any_amount() -> None:
    for delta in (None, {"absolute": 0, "relative": 0, "progress": 0}):
        stop = spec(metric={"name": "l", "patience": 1, **({"minDelta": delta} if delta else {})})
        rule = stop.metric
        assert rule is not None
        d = decide(stop, Observation(metric=fold(rule, [1.0, 2.0])))
        assert d.reason == Reason.PLATEAU and "has not improved by any amount for 1 evaluations" in d.message


def test_limits_fire_at_the_limit_and_idle_means_strictly_below() -> None:
    budget = spec(maxGpuHours=10)
    assert decide(budget, Observation(gpu_hours=10.0)).reason == Reason.BUDGET_EXHAUSTED
    assert not decide(budget, Observation(gpu_hours=9.99)).stop
    idle = spec(gpuIdle={"below": 0.05, "for": "10m"})
    assert not decide(idle, Observation(gpu=GpuWindow(0.05, 600))).stop  # at the floor: not idle
    assert decide(idle, Observation(gpu=GpuWindow(0.0499, 600))).reason == Reason.GPU_IDLE


def test_a_non_finite_first_report_counts_toward_patience_without_warmup() -> None:
    rule = MetricRule(name="val_loss", patience=3, check_finite=False)
    m = fold(rule, [math.nan, math.nan])
    assert (m.since_improvement, m.non_finite, m.best) == (2, 2, None)


def test_a_metric_without_a_finite_value_has_no_cohort_comparison() -> None:
    stop = spec(metric={"name": "l", "checkFinite": False}, cohort={"selector": {"matchLabels": {"s": "x"}}, "minJobs": 1})
    assert stop.metric is not None
    m = fold(stop.metric, [math.nan])
    d = decide(stop, Observation(metric=m, cohort=CohortView(1, (0.1, 0.2))))
    outcome = next(o for o in d.outcomes if o.reason == Reason.COHORT_UNDERPERFORMING)
    assert outcome.fired is None and outcome.message == "no cohort comparison available yet"
