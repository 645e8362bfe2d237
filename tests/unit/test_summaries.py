"""Reading the sidecar's cumulative series: exact when slow, conservative when fast."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from plateau.api import MetricRule
from plateau.rules import Evaluation, MetricTrack, track
from plateau.summaries import SidecarSummary, new_evaluations


def sidecar_model(values: list[float]) -> list[SidecarSummary]:
    """What the sidecar exports after each report: an oracle written from its contract."""
    out: list[SidecarSummary] = []
    lo = hi = None
    non_finite = 0
    for i, v in enumerate(values, start=1):
        step = 10 * i
        if not math.isfinite(v):
            non_finite += 1
        else:
            if lo is None or v < lo[0]:
                lo = (v, step, i)
            if hi is None or v > hi[0]:
                hi = (v, step, i)
        out.append(SidecarSummary(
            reports=i, value=v, step=step, non_finite=non_finite,
            min=lo and lo[0], min_step=lo and lo[1], min_report=lo and lo[2],
            max=hi and hi[0], max_step=hi and hi[1], max_report=hi and hi[2],
        ))
    return out


def read_at(rule: MetricRule, summaries: list[SidecarSummary], reads: list[int]) -> MetricTrack:
    state = None
    seen = seen_nf = 0
    for r in reads:
        now = summaries[r - 1]
        state = track(state, rule, new_evaluations(now, seen, seen_nf, rule.mode))
        seen, seen_nf = now.reports, now.non_finite
    assert state is not None
    return state


values = st.lists(st.one_of(st.floats(-100, 100, allow_nan=False), st.just(math.nan)), min_size=1, max_size=40)
rules = st.builds(
    MetricRule, name=st.just("m"), mode=st.sampled_from(["min", "max"]),
    patience=st.integers(1, 10),
    min_delta=st.one_of(st.none(), st.builds(dict, absolute=st.floats(0, 5), relative=st.floats(0, 0.3), progress=st.floats(0, 0.3))),
    warmup=st.one_of(st.none(), st.integers(0, 5)),
)


@given(rules, values)
def test_reading_after_every_report_is_exact(rule: MetricRule, vals: list[float]) -> None:
    exact = track(None, rule, [Evaluation(10 * (i + 1), v) for i, v in enumerate(vals)])
    assert read_at(rule, sidecar_model(vals), list(range(1, len(vals) + 1))) == exact


@settings(max_examples=300)
@given(rules, values, st.data())
def test_reading_after_bursts_is_conservative(rule: MetricRule, vals: list[float], data: st.DataObject) -> None:
    n = len(vals)
    reads = sorted(set(data.draw(st.lists(st.integers(1, n), max_size=n))) | {n})
    exact = track(None, rule, [Evaluation(10 * (i + 1), v) for i, v in enumerate(vals)])
    burst = read_at(rule, sidecar_model(vals), reads)
    assert burst.evaluations == exact.evaluations
    assert burst.non_finite == exact.non_finite
    assert burst.since_improvement <= exact.since_improvement  # may stop later, never earlier
    assert (burst.best, burst.best_step) == (exact.best, exact.best_step)  # a superseded best stays visible


def test_a_best_value_between_two_reads_is_kept_with_its_step() -> None:
    rule = MetricRule(name="m", patience=3)
    summaries = sidecar_model([1.0, 0.2, 0.5, 0.6])
    state = read_at(rule, summaries, [1, 4])
    assert (state.best, state.best_step, state.since_improvement) == (0.2, 20, 2)


def test_a_sidecar_restart_resets_the_counters_without_losing_evaluations() -> None:
    rule = MetricRule(name="m")
    before = track(None, rule, new_evaluations(sidecar_model([3.0, 2.0])[-1], 0, 0, "min"))
    after_restart = sidecar_model([1.5])[-1]  # reports=1 < seen=2
    state = track(before, rule, new_evaluations(after_restart, 2, 0, "min"))
    assert state.evaluations == 3 and state.best == 1.5


def test_no_new_reports_means_no_evaluations() -> None:
    now = sidecar_model([1.0, 2.0])[-1]
    assert new_evaluations(now, 2, 0, "min") == []
