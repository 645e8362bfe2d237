"""The track the sidecar folds is the track replay folds: every knob, resumes, learning rates
reported in any order, and any batching of reports between reads (hypothesis, derandomized so
a failure reproduces)."""

from __future__ import annotations

import math
from typing import Optional

import pytest
from hypothesis import given, reject, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from plateau.api import StopSpec
from plateau.engine.history import SNAPSHOT_EVERY, MetricHistory, metric_spec_for, metric_stop_spec
from plateau.cli.replay import Row, RunHistory, RunReplay
from plateau.engine.fold import FOLD_ONLY, Evaluation, MetricTrack, track
from plateau.engine.rules import Decision, Observation, decide
from plateau.prometheus.summaries import TRACK_READ_SERIES, track_from_series
from plateau_sidecar.collector import Exposition
from plateau_sidecar.store import MetricStore

METRIC, LR = "m", "lr"
values = st.one_of(st.floats(-100, 100, allow_nan=False, allow_infinity=False), st.just(math.nan), st.just(math.inf))


@st.composite
def stop_specs(draw: st.DrawFn) -> StopSpec:
    """Every metric knob drawn, presets included."""
    optional = lambda strategy: st.one_of(st.none(), strategy)  # noqa: E731
    rule = {
        "name": METRIC,
        "mode": draw(st.sampled_from(["min", "max"])),
        "patience": draw(optional(st.integers(1, 15))),
        "patienceGrowth": draw(optional(st.floats(0, 1))),
        "minDelta": draw(optional(st.fixed_dictionaries({}, optional={
            "absolute": st.floats(0, 2), "relative": st.floats(0, 0.3), "progress": st.floats(0, 0.3)}))),
        "smoothing": draw(optional(st.floats(0, 0.9))),
        "warmup": draw(optional(st.integers(0, 10))),
        "target": draw(optional(st.floats(-100, 100))),
        "divergence": draw(optional(st.floats(-100, 100))),
        "checkFinite": draw(st.booleans()),
        "schedule": draw(optional(st.just({"learningRate": LR}))),
    }
    spec = {"metric": {k: v for k, v in rule.items() if v is not None},
            "combine": draw(st.sampled_from(["any", "all"])),
            "preset": draw(st.sampled_from([None, "balanced", "conservative", "aggressive"]))}
    try:
        return StopSpec.model_validate({k: v for k, v in spec.items() if v is not None})
    except ValueError:
        reject()  # e.g. a target beyond the divergence threshold, which validation refuses


@st.composite
def reports(draw: st.DrawFn) -> list[tuple[int, float]]:
    """Reports as a trainer sends them: steps that mostly go up, and resumes that go back."""
    out: list[tuple[int, float]] = []
    step = 0
    for _ in range(draw(st.integers(1, 80))):
        if out and draw(st.integers(0, 9)) == 0:
            step = draw(st.integers(0, step))  # a resume from a checkpoint at or before this step
        else:
            step += draw(st.integers(1, 3))
        out.append((step, draw(values)))
    return out


@st.composite
def records(draw: st.DrawFn) -> list[tuple[int, dict[str, float]]]:
    """Records as a trainer sends them: each holds the metric, its learning rate (steady, then
    dropping, restarting or NaN), or both in either order."""
    rates = st.sampled_from([1.0, 1.0, 1.0, 0.5, 0.1, 0.01, 2.0, math.nan])
    out = []
    for step, value in draw(reports()):
        lr = draw(st.one_of(st.none(), rates))
        shapes = [{METRIC: value}] if lr is None else [{METRIC: value, LR: lr}, {LR: lr, METRIC: value}, {LR: lr}]
        out.append((step, draw(st.sampled_from(shapes))))
    return out


def same(a: Optional[MetricTrack], b: Optional[MetricTrack]) -> bool:
    """The same track as the operator reads it: the fold's own state (FOLD_ONLY, e.g. the
    forecast's sketch) stays in the sidecar and is never exported."""
    exported = [None if t is None else t._replace(**{f: MetricTrack._field_defaults.get(f) for f in FOLD_ONLY})
                for t in (a, b)]
    return repr(exported[0]) == repr(exported[1])  # NaN-aware: repr(nan) == repr(nan)


def scrape(exposition: Exposition) -> dict[str, float]:
    """The sidecar's /metrics as Prometheus reads it: the text, parsed."""
    return {s.name: s.value for f in text_string_to_metric_families(exposition.render().decode())
            for s in f.samples if s.name in TRACK_READ_SERIES and s.labels.get("metric") == METRIC}


def replayed(stop: StopSpec, sent: list[tuple[int, dict[str, float]]]) -> tuple[int, Optional[Decision], Optional[MetricTrack]]:
    """Replay, a row a record: how many rows it took, the stop decision, and the track it stopped on."""
    run = RunReplay(RunHistory("r", None, [Row(s, dict(record), None, None) for s, record in sent]), stop)
    while not run.done:
        run.decide(run.advance())
    stopped = run.decision if run.decision and run.decision.would_stop else None
    return run.position, stopped, run.metric


@settings(max_examples=400, deadline=None, derandomize=True)
@given(stop=stop_specs(), sent=records(), data=st.data())
def test_every_batching_of_reports_decides_as_replay(stop: StopSpec, sent: list[tuple[int, dict[str, float]]],
                                                      data: st.DataObject) -> None:
    """Reads after any subset of records (1, 2, 5 or all of them per read): the first read
    that stops is the first at or after replay's stop, with replay's reason, evidence and track.
    A learning rate is in force from its record on, whatever the order of the record's keys."""
    store = MetricStore("tj")
    exposition = Exposition(store)
    store.set_spec(metric_spec_for(stop).text)  # type: ignore[union-attr]
    per_read = data.draw(st.sampled_from([1, 2, 5, 20, None]))
    reads = sorted(data.draw(st.sets(st.integers(1, len(sent)), min_size=1))) if per_read is None \
        else list(range(per_read, len(sent) + 1, per_read)) or [len(sent)]
    replay_at, replay_decision, replay_track = replayed(stop, sent)
    sent_so_far = 0
    for read in reads:
        with store.lock:
            for step, record in sent[sent_so_far:read]:
                store.add_record(step, record)
        sent_so_far = read
        got = track_from_series(scrape(exposition), METRIC)
        reported = sum(METRIC in record for _, record in sent[:read])
        if not reported:
            assert got is None
            continue
        assert got is not None and got.current is not None and got.reports == reported
        decision_track = got.stopped or got.current
        decision = decide(stop, Observation(metric=decision_track))
        if replay_decision is None or read < replay_at:
            assert not decision.would_stop, (read, decision.message)
            continue
        assert decision.would_stop and decision.reason == replay_decision.reason
        assert decision.message == replay_decision.message
        assert same(decision_track, replay_track)
        return


@settings(max_examples=200, deadline=None, derandomize=True)
@given(stop=stop_specs(), sent=records(), data=st.data())
def test_a_spec_that_comes_mid_run_folds_as_if_it_had_been_there_from_the_start(
        stop: StopSpec, sent: list[tuple[int, dict[str, float]]], data: st.DataObject) -> None:
    """A new spec refolds the kept reports, each learning rate in force where it was: the
    sidecar that got the spec after any number of records ends with the same track."""
    text = metric_spec_for(stop).text  # type: ignore[union-attr]
    split = data.draw(st.integers(0, len(sent)))
    first, late = MetricStore("tj"), MetricStore("tj")
    first.set_spec(text)
    for part in (sent[:split], sent[split:]):
        for store in (first, late):
            with store.lock:
                for step, record in part:
                    store.add_record(step, record)
        late.set_spec(text)  # after the first part; the same spec again is no refold
    tracks = [store.snapshot().track for store in (first, late)]
    assert (tracks[0] is None) == (tracks[1] is None)
    if tracks[0] is not None and tracks[1] is not None:
        assert same(tracks[0].current, tracks[1].current) and same(tracks[0].stopped, tracks[1].stopped)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(stop=stop_specs(), sent=reports())
def test_a_resume_folds_as_if_the_purged_evaluations_never_happened(stop: StopSpec, sent: list[tuple[int, float]]) -> None:
    """After any resumes, the track is the plain fold of the evaluations that survive them."""
    spec = metric_stop_spec(stop)
    assert spec is not None and spec.metric is not None
    history = MetricHistory.folded(spec, sent)
    survivors: list[tuple[int, float]] = []
    resumes = 0
    for step, value in sent:
        resumes += bool(survivors) and step <= survivors[-1][0]
        survivors = [(s, v) for s, v in survivors if s < step] + [(step, value)]
    assert history.resumes == resumes
    assert same(history.track, track(None, spec.metric, [Evaluation(s, v) for s, v in survivors]))


def test_a_resume_past_many_snapshots_refolds_from_the_one_before_it() -> None:
    spec = metric_stop_spec(StopSpec.model_validate({"metric": {"name": METRIC, "smoothing": 0.5, "patience": 3}}))
    assert spec is not None and spec.metric is not None
    n = 3 * SNAPSHOT_EVERY + 7
    sent = [(s, 1.0 / s) for s in range(1, n + 1)] + [(SNAPSHOT_EVERY + 3, 5.0), (SNAPSHOT_EVERY + 4, 0.0001)]
    history = MetricHistory.folded(spec, sent)
    kept = [(s, 1.0 / s) for s in range(1, SNAPSHOT_EVERY + 3)] + sent[-2:]
    assert history.resumes == 1 and history.track is not None and history.track.evaluations == len(kept)
    assert same(history.track, track(None, spec.metric, [Evaluation(s, v) for s, v in kept]))


def test_the_first_stop_is_kept_after_the_metric_recovers() -> None:
    """Replay stops at the first evaluation that says stop; a read after the metric recovered
    must still see that stop, not the recovered track."""
    spec = metric_stop_spec(StopSpec.model_validate({"metric": {"name": METRIC, "divergence": 10}}))
    assert spec is not None
    history = MetricHistory.folded(spec, [(1, 5.0), (2, 50.0), (3, 4.0)])
    assert history.stopped is not None and history.stopped.last_step == 2 and history.stopped.last == 50.0
    assert history.track is not None and history.track.last == 4.0


def test_a_new_spec_refolds_every_kept_report() -> None:
    store = MetricStore("tj")
    first = metric_spec_for(StopSpec.model_validate({"metric": {"name": METRIC, "patience": 2}}))
    second = metric_spec_for(StopSpec.model_validate({"metric": {"name": METRIC, "patience": 2, "smoothing": 0.5}}))
    assert first is not None and second is not None and first.key != second.key
    sent = [(1, 3.0), (2, 2.0), (3, 2.5), (1, 9.0), (2, 1.0)]
    with store.lock:
        for step, value in sent[:3]:
            store.add_record(step, {METRIC: value})
    store.set_spec(first.text)  # a spec that arrives after reports folds them all
    with store.lock:
        for step, value in sent[3:]:
            store.add_record(step, {METRIC: value})
    store.set_spec(second.text)
    view = store.snapshot().track
    assert view is not None and view.spec_key == second.key and view.resumes == 1
    spec = StopSpec.model_validate_json(second.text)
    assert same(view.current, MetricHistory.folded(spec, sent).track)


def test_a_spec_that_does_not_validate_is_counted_and_leaves_no_track() -> None:
    store = MetricStore("tj")
    with store.lock:
        store.add_record(1, {METRIC: 1.0})
    store.set_spec('{"metric": {"name": "m", "patience": -1}}')
    snap = store.snapshot()
    assert snap.track is None and snap.bad_input["bad_spec"] == 1  # type: ignore[index]


# --- the metric stop spec the sidecar is handed ---------------------------------------------------------

ANY = {"metric": {"name": "loss", "patience": 3, "target": 0.1, "divergence": 5}, "maxDuration": "1h"}


def test_the_metric_decides_alone_under_any_and_only_its_safety_rules_under_all() -> None:
    """With combine: any, the metric's every rule stops alone; with combine: all and criteria
    outside the metric, patience and target count only together with those: the sidecar's track
    says stop only for divergence and non-finite values."""
    alone = metric_stop_spec(StopSpec.model_validate(ANY))
    assert alone is not None and alone.metric is not None and alone.max_duration is None
    assert (alone.metric.patience, alone.metric.target, alone.metric.divergence) == (3, 0.1, 5.0)
    together = metric_stop_spec(StopSpec.model_validate({**ANY, "combine": "all"}))
    assert together is not None and together.metric is not None and together.combine == "all"
    assert (together.metric.patience, together.metric.target, together.metric.divergence) == (None, None, 5.0)
    only_metric = metric_stop_spec(StopSpec.model_validate({"combine": "all", "metric": ANY["metric"]}))
    assert only_metric is not None and only_metric.metric is not None and only_metric.metric.patience == 3


def test_the_spec_text_and_key_are_a_fixed_wire_format() -> None:
    """Operator and sidecar images of different versions must agree on the text and its key: the
    key is a sample value (exact below 2**53), and a sidecar compares it with the operator's."""
    found = metric_spec_for(StopSpec.model_validate({"metric": {"name": "loss", "patience": 3, "target": 0.1},
                                                     "maxDuration": "1h"}))
    assert found is not None
    assert found.text == ('{"combine":"any","gracePeriod":"60s","metric":{"checkFinite":true,"mode":"min",'
                          '"name":"loss","patience":3,"target":0.1}}')
    assert found.key == 148843906000799 and found.key < 2 ** 48


def test_a_history_takes_only_a_resolved_metric_stop_spec() -> None:
    with pytest.raises(AssertionError):
        MetricHistory(StopSpec.model_validate({"preset": "balanced", "metric": {"name": "loss"}}))
    with pytest.raises(AssertionError):
        MetricHistory(StopSpec.model_validate({"maxDuration": "1h"}))


def test_past_max_evaluations_the_history_forgets_and_a_step_back_is_no_longer_a_resume() -> None:
    spec = metric_stop_spec(StopSpec.model_validate({"metric": {"name": "loss", "patience": 50}}))
    assert spec is not None
    history = MetricHistory.folded(spec, [(s, 10.0 - s) for s in range(1, 5)], max_evaluations=3)
    assert not history.kept
    history.add(2, 1.0)  # nothing kept to purge: folded as one more evaluation
    assert history.resumes == 0 and history.track is not None and history.track.evaluations == 5


def test_two_resumes_across_snapshots_fold_as_the_surviving_reports_alone() -> None:
    """A resume drops the snapshots past its step: a later resume must not start from one of them."""
    spec = metric_stop_spec(StopSpec.model_validate({"metric": {"name": "loss", "patience": 50, "smoothing": 0.5}}))
    assert spec is not None
    first = [(s, 1000.0 - s) for s in range(1, 2 * SNAPSHOT_EVERY + 90)]
    second = [(s, 5000.0 + s) for s in range(SNAPSHOT_EVERY + 40, 2 * SNAPSHOT_EVERY + 60)]
    third = [(s, 7.0) for s in range(2 * SNAPSHOT_EVERY + 20, 2 * SNAPSHOT_EVERY + 30)]
    history = MetricHistory.folded(spec, first + second + third)
    assert history.resumes == 2
    surviving = [r for r in first if r[0] < second[0][0]] + [r for r in second if r[0] < third[0][0]] + third
    assert history.track == MetricHistory.folded(spec, surviving).track
