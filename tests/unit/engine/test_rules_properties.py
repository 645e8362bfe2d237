"""Property tests of the engine (hypothesis)."""

from __future__ import annotations

import math

from hypothesis import example, given, settings
from hypothesis import strategies as st

from plateau.api import MetricRule, StopSpec
from plateau.engine.fold import Evaluation, track
from plateau.engine.rules import GpuWindow, Observation, decide

finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False)
values_with_nan = st.lists(st.one_of(finite, st.just(math.nan), st.just(math.inf)), min_size=1, max_size=60)


@st.composite
def metric_rules(draw: st.DrawFn, mode: str | None = None) -> MetricRule:
    return MetricRule(
        name="m",
        mode=mode or draw(st.sampled_from(["min", "max"])),
        patience=draw(st.one_of(st.none(), st.integers(1, 20))),
        min_delta=draw(st.one_of(st.none(), st.builds(dict, absolute=st.floats(0, 5), relative=st.floats(0, 0.5)))),
        warmup=draw(st.one_of(st.none(), st.integers(0, 30))),
        smoothing=draw(st.one_of(st.none(), st.floats(0, 0.9))),
        divergence=draw(st.one_of(st.none(), finite)),
        check_finite=draw(st.booleans()),
    )


def run(rule: MetricRule, values: list[float]):
    m = track(None, rule, [Evaluation(i + 1, v) for i, v in enumerate(values)])
    return decide(StopSpec(metric=rule), Observation(metric=m)), m


@given(metric_rules(), values_with_nan)
def test_no_metric_rule_fires_during_warmup(rule: MetricRule, values: list[float]) -> None:
    values = values[: rule.warmup or 0]
    if values:
        assert not run(rule, values)[0].would_stop


@example(MetricRule(name="m", patience=1, warmup=2), [1.0, math.nan])  # found by a random run (issue 19)
@example(MetricRule(name="m", patience=1, warmup=1), [math.inf])
@example(MetricRule(name="m", patience=1, warmup=2), [1.0, 2.0])  # the warmup's last evaluation is warmup
@given(metric_rules(), values_with_nan)
def test_nothing_during_warmup_counts_toward_patience(rule: MetricRule, values: list[float]) -> None:
    """NaN and infinities included: the patience counter starts after the warmup."""
    warmup = values[: rule.warmup or 0]
    assert track(None, rule, [Evaluation(i + 1, v) for i, v in enumerate(warmup)]).since_improvement == 0


@given(metric_rules())
def test_no_stop_without_data(rule: MetricRule) -> None:
    stop = StopSpec(metric=rule, gpuIdle={"below": 0.5, "for": "1m"}, maxDuration="1h", maxGpuHours=1)
    for obs in (Observation(), Observation(metric=track(None, rule, []))):
        d = decide(stop, obs)
        assert not d.would_stop
        assert set(d.unknown) >= {"GpuIdle", "DeadlineExceeded", "BudgetExhausted"}


@given(st.lists(finite, min_size=1, max_size=40), st.integers(0, 5))
def test_nan_always_stops_with_check_finite_after_warmup(values: list[float], at: int) -> None:
    rule = MetricRule(name="m", check_finite=True)
    values = values[:]
    values.insert(min(at, len(values)), math.nan)
    d, m = run(rule, values)
    assert d.would_stop and d.reason == "NotFinite"
    assert m.best is not None and math.isfinite(m.best)


@given(st.lists(finite, min_size=1, max_size=40))
def test_finite_data_never_stops_on_not_finite(values: list[float]) -> None:
    d, _ = run(MetricRule(name="m"), values)
    assert not d.would_stop


@given(metric_rules(mode="min"), st.lists(finite, min_size=1, max_size=50))
def test_min_mode_mirrors_max_mode_on_negated_data(rule: MetricRule, values: list[float]) -> None:
    mirrored = rule.model_copy(update={
        "mode": "max",
        "divergence": None if rule.divergence is None else -rule.divergence,
    })
    d_min, m_min = run(rule, values)
    d_max, m_max = run(mirrored, [-v for v in values])
    assert (d_min.would_stop, d_min.reason) == (d_max.would_stop, d_max.reason)
    assert m_min.since_improvement == m_max.since_improvement
    assert m_min.best_step == m_max.best_step and m_min.best == -m_max.best  # type: ignore[operator]


@given(st.booleans(), st.booleans(), st.booleans())
def test_any_and_all(deadline: bool, budget: bool, idle: bool) -> None:
    obs = Observation(
        elapsed_seconds=7200 if deadline else 60,
        gpu_hours=20 if budget else 1,
        gpu=GpuWindow(0.0 if idle else 0.9, 3600),
    )
    rules = dict(maxDuration="1h", maxGpuHours=10, gpuIdle={"below": 0.1, "for": "10m"})
    assert decide(StopSpec(combine="any", **rules), obs).would_stop == (deadline or budget or idle)
    assert decide(StopSpec(combine="all", **rules), obs).would_stop == (deadline and budget and idle)


@settings(max_examples=50)
@given(metric_rules(), st.lists(finite, min_size=2, max_size=40), st.integers(1, 39))
def test_folding_in_batches_equals_folding_one_by_one(rule: MetricRule, values: list[float], cut: int) -> None:
    evs = [Evaluation(i, v) for i, v in enumerate(values)]
    cut = min(cut, len(evs))
    assert track(track(None, rule, evs[:cut]), rule, evs[cut:]) == track(None, rule, evs)


@given(st.lists(finite, min_size=1, max_size=40), st.integers(1, 10))
def test_patience_counter_resets_exactly_on_improvement(values: list[float], patience: int) -> None:
    rule = MetricRule(name="m", patience=patience)
    m = track(None, rule, [Evaluation(i, v) for i, v in enumerate(values)])
    best_index = min(range(len(values)), key=lambda i: (values[i], i))
    assert m.since_improvement == len(values) - 1 - best_index


@st.composite
def forecast_rules(draw: st.DrawFn) -> MetricRule:
    """A forecast to a horizon or a lookahead, in either unit, with or without a step schedule."""
    end = draw(st.one_of(st.builds(dict, horizon=st.integers(1, 200)),
                         st.builds(dict, lookahead=st.floats(1.05, 4))))
    return MetricRule(
        name="m",
        mode=draw(st.sampled_from(["min", "max"])),
        smoothing=draw(st.one_of(st.none(), st.floats(0, 0.9))),
        forecast={**end, "unit": draw(st.sampled_from(["steps", "evaluations"])), "min_evaluations": 5},
        schedule=draw(st.one_of(st.none(), st.builds(dict, milestones=st.just([10, 25])))),
    )


@example(MetricRule(name="m", forecast={"lookahead": 3, "min_evaluations": 5}),
         [1.0, 0.5, 0.4, 0.3, 0.25, 0.2, math.nan], [7])
@settings(max_examples=200, deadline=None)
@given(forecast_rules(), values_with_nan, st.lists(st.integers(1, 60), max_size=6))
def test_a_forecast_folds_alike_in_any_batches(rule: MetricRule, values: list[float], cuts: list[int]) -> None:
    """Non-finite values and learning-rate drops included: the sidecar folds what arrived
    between two reads in one batch, replay one report at a time, and both fit alike."""
    evs = [Evaluation(3 * i + 1, v) for i, v in enumerate(values)]
    batched = None
    for start, end in zip([0, *sorted(cuts)], [*sorted(cuts), len(evs)]):
        batched = track(batched, rule, evs[start:end])
    one_by_one = None
    for ev in evs:
        one_by_one = track(one_by_one, rule, [ev])
    assert repr(batched) == repr(one_by_one)  # NaN-aware
