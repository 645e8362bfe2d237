"""Reading the sidecar's cumulative series: exact when slow, conservative when fast."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from plateau.api import MetricRule
from plateau.rules import Evaluation, MetricTrack, track
from plateau.promql import SIDECAR_SERIES, sidecar_series_for
from plateau.summaries import SidecarSummary, new_evaluations
from plateau_sidecar import protocol as p

# Each sidecar series and the summary field it fills (summaries.summary_from_series).
SERIES_FIELDS = {
    p.SERIES_VALUE: "value", p.SERIES_STEP: "step", p.SERIES_REPORTS: "reports", p.SERIES_NONFINITE: "non_finite",
    p.SERIES_MIN: "min", p.SERIES_MIN_STEP: "min_step", p.SERIES_MIN_REPORT: "min_report",
    p.SERIES_MAX: "max", p.SERIES_MAX_STEP: "max_step", p.SERIES_MAX_REPORT: "max_report",
}


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


@settings(max_examples=200)
@given(rules, values, st.data())
def test_the_series_the_operator_leaves_unfetched_for_a_mode_are_never_read(
        rule: MetricRule, vals: list[float], data: st.DataObject) -> None:
    """The operator fetches promql.sidecar_series_for(mode): reading only those gives the same
    evaluations as reading all ten series."""
    fetched = set(sidecar_series_for([rule.mode]))
    assert len(fetched) == 8 and set(sidecar_series_for(["min", "max"])) == set(SIDECAR_SERIES)
    dropped = {f: None for series, f in SERIES_FIELDS.items() if series not in fetched}
    summaries = sidecar_model(vals)
    seen = data.draw(st.integers(0, len(vals)))
    now = summaries[data.draw(st.integers(max(seen, 1), len(vals))) - 1]
    seen_nf = summaries[seen - 1].non_finite if seen else 0
    assert new_evaluations(now._replace(**dropped), seen, seen_nf, rule.mode) == \
        new_evaluations(now, seen, seen_nf, rule.mode)


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
