"""A spec edit mid-run: the sidecar folds every kept report again, without holding up scrapes
and pushes, and ends with the track a fold of every report would give."""

from __future__ import annotations

import math
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from plateau.api import StopSpec
from plateau.engine.history import MetricHistory, metric_spec_for
from plateau_sidecar.spec import SpecFollower
from plateau_sidecar.store import MetricStore

METRIC, LR = "loss", "lr"


def loss(step: int) -> float:
    return 1.0 / math.sqrt(step) + 0.01 * math.sin(step)


def refold_with_reports_meanwhile(store: MetricStore, before: int, meanwhile: int, tmp_path: Path,
                                  drop_at: int | None = None) -> None:
    """`before` reports under a patience spec, then balanced arrives: its fold (the forecast
    refits at each report: seconds) runs while a scrape and `meanwhile` more reports come.
    With `drop_at`, each record also reports the learning rate, after the loss, and the rate
    drops tenfold at that step; balanced then reads it (schedule.learningRate)."""
    def lr(step: int) -> float | None:
        return None if drop_at is None else 0.1 if step < drop_at else 0.01

    def record(step: int) -> dict[str, float]:
        rate = lr(step)
        return {METRIC: loss(step)} if rate is None else {METRIC: loss(step), LR: rate}

    schedule = {} if drop_at is None else {"schedule": {"learningRate": LR}}
    old = metric_spec_for(StopSpec.model_validate({"metric": {"name": METRIC, "patience": 3}}))
    new = metric_spec_for(StopSpec.model_validate({"preset": "balanced", "metric": {"name": METRIC, **schedule}}))
    assert old is not None and new is not None
    store.set_spec(old.text)
    sent = [(step, loss(step), lr(step)) for step in range(1, before + 1)]
    with store.lock:
        for step, *_ in sent:
            store.add_record(step, record(step))
    path = tmp_path / "spec"
    path.write_text(new.text)
    refold = threading.Thread(target=SpecFollower(str(path), store).poll)
    refold.start()
    while store.spec_text != new.text:
        time.sleep(0.001)
    snap = store.snapshot()  # a scrape, answered while the fold still runs
    assert refold.is_alive() and snap.track is not None and snap.track.spec_key == old.key
    late = [(step, loss(step), lr(step)) for step in range(before + 1, before + meanwhile + 1)]
    with store.lock:  # a push, taken while the fold still runs
        for step, *_ in late:
            store.add_record(step, record(step))
    assert refold.is_alive()
    refold.join(60)
    view = store.snapshot().track
    expected = MetricHistory.folded(StopSpec.model_validate_json(new.text), sent + late)
    assert view is not None and view.spec_key == new.key
    assert view.current == expected.track and view.stopped == expected.stopped
    assert view.current.evaluations == before + meanwhile


def test_a_refold_leaves_scrapes_and_pushes_free_and_folds_the_reports_that_came_meanwhile(tmp_path: Path) -> None:
    refold_with_reports_meanwhile(MetricStore("tj"), 8000, 10, tmp_path)


def test_reports_past_the_kept_bound_during_a_refold_still_reach_its_track(tmp_path: Path) -> None:
    """The bound on kept reports drops the metric's reports (a later spec cannot refold them),
    but the fold under way still has every report, so the job keeps a track."""
    store = MetricStore("tj")
    store.kept.bound = 5000
    refold_with_reports_meanwhile(store, 4990, 20, tmp_path)


def test_a_refold_reads_the_learning_rate_in_force_at_each_report(tmp_path: Path) -> None:
    """The rate reported in the same record as the loss (after it) is in force at that loss,
    in the fold of the kept reports and in the reports that come during the fold."""
    refold_with_reports_meanwhile(MetricStore("tj"), 3000, 20, tmp_path, drop_at=2000)
    refold_with_reports_meanwhile(MetricStore("tj"), 3000, 20, tmp_path, drop_at=3010)


def test_a_rate_dropped_past_the_kept_bound_during_a_refold_still_counts(tmp_path: Path) -> None:
    """Each record holds two reports: the bound drops the kept rates during the fold; the
    reports that come meanwhile still fold with the rate in force."""
    store = MetricStore("tj")
    store.kept.bound = 5000
    refold_with_reports_meanwhile(store, 2490, 20, tmp_path, drop_at=2500)


def test_a_refold_gives_up_rather_than_hold_more_reports_than_the_bound(tmp_path: Path) -> None:
    """Reports that come during a fold are held for it up to the bound on kept reports; past
    it, the fold is given up (no track, as when the kept reports were not all kept) instead of
    holding whatever comes for as long as the fold runs."""
    store = MetricStore("tj")
    store.kept.bound = 2000
    old = metric_spec_for(StopSpec.model_validate({"metric": {"name": METRIC, "patience": 3}}))
    new = metric_spec_for(StopSpec.model_validate({"preset": "balanced", "metric": {"name": METRIC}}))
    assert old is not None and new is not None
    store.set_spec(old.text)
    with store.lock:
        for step in range(1, 1501):
            store.add_record(step, {METRIC: loss(step)})
    refold = threading.Thread(target=store.set_spec, args=(new.text,))
    refold.start()
    while store.spec_text != new.text:
        time.sleep(0.001)
    with store.lock:  # more than the bound, while the fold still runs
        for step in range(1501, 3502):
            store.add_record(step, {METRIC: loss(step)})
        assert store._late is None
    assert refold.is_alive()
    refold.join(60)
    assert store.snapshot().track is None and store.history is None


def test_a_fold_superseded_mid_fold_leaves_the_newer_folds_reports(monkeypatch: pytest.MonkeyPatch) -> None:
    """Spec A's fold runs when spec B arrives and folds too; reports come while both run. A
    ends first, superseded: B's track still has every report."""
    store = MetricStore("tj")
    with store.lock:
        for step in range(1, 101):
            store.add_record(step, {METRIC: loss(step)})
    specs = {p: metric_spec_for(StopSpec.model_validate({"metric": {"name": METRIC, "patience": p}})) for p in (5, 7)}
    started = {p: threading.Event() for p in specs}
    release = {p: threading.Event() for p in specs}
    fold = MetricHistory.folded

    def gated(spec: StopSpec, reports: Any) -> MetricHistory:  # each fold waits for its release
        assert spec.metric is not None and spec.metric.patience is not None
        started[spec.metric.patience].set()
        release[spec.metric.patience].wait(10)
        return fold(spec, reports)

    monkeypatch.setattr(MetricHistory, "folded", staticmethod(gated))
    folds = {p: threading.Thread(target=store.set_spec, args=(spec.text,)) for p, spec in specs.items()}  # type: ignore[union-attr]
    for p in (5, 7):
        folds[p].start()
        assert started[p].wait(10)
    with store.lock:  # while both folds run
        for step in range(101, 111):
            store.add_record(step, {METRIC: loss(step)})
    for p in (5, 7):  # the superseded fold ends first
        release[p].set()
        folds[p].join(10)
    view = store.snapshot().track
    newer = specs[7]
    assert newer is not None and view is not None and view.spec_key == newer.key
    expected = fold(StopSpec.model_validate_json(newer.text), [(step, loss(step)) for step in range(1, 111)])
    assert view.current == expected.track and view.current.evaluations == 110


def hold_first_fold(monkeypatch: pytest.MonkeyPatch) -> tuple[threading.Event, threading.Event]:
    """The store's first fold from now on waits for `release`, once it has set `started`."""
    started, release = threading.Event(), threading.Event()
    fold, calls = MetricHistory.folded, []

    def first_waits(spec: StopSpec, reports: Any) -> MetricHistory:
        calls.append(spec)
        if len(calls) == 1:
            started.set()
            release.wait(10)
        return fold(spec, reports)

    monkeypatch.setattr(MetricHistory, "folded", staticmethod(first_waits))
    return started, release


def test_a_fold_superseded_by_the_same_spec_again_does_not_take_its_place(monkeypatch: pytest.MonkeyPatch) -> None:
    """A, then B, then A again while A's first fold still runs: that fold ends last and must not
    swap in its track, which lacks the reports that came since."""
    store = MetricStore("tj")
    with store.lock:
        for step in range(1, 101):
            store.add_record(step, {METRIC: loss(step)})
    a, b = (metric_spec_for(StopSpec.model_validate({"metric": {"name": METRIC, "patience": p}})) for p in (5, 7))
    assert a is not None and b is not None
    started, release = hold_first_fold(monkeypatch)
    first = threading.Thread(target=store.set_spec, args=(a.text,))
    first.start()
    assert started.wait(10)
    store.set_spec(b.text)
    with store.lock:
        for step in range(101, 111):
            store.add_record(step, {METRIC: loss(step)})
    store.set_spec(a.text)  # folds all 110, then takes the next reports as they come
    with store.lock:
        for step in range(111, 121):
            store.add_record(step, {METRIC: loss(step)})
    release.set()
    first.join(10)
    view = store.snapshot().track
    assert view is not None and view.spec_key == a.key and view.current.evaluations == 120


def test_a_fold_superseded_by_a_spec_that_is_refused_holds_no_reports(monkeypatch: pytest.MonkeyPatch) -> None:
    store = MetricStore("tj")
    with store.lock:
        store.add_record(1, {METRIC: 1.0})
    spec = metric_spec_for(StopSpec.model_validate({"metric": {"name": METRIC, "patience": 5}}))
    assert spec is not None
    started, release = hold_first_fold(monkeypatch)
    folding = threading.Thread(target=store.set_spec, args=(spec.text,))
    folding.start()
    assert started.wait(10)
    store.set_spec('{"metric": {"name": "loss", "patience": -1}}')  # refused: no fold under way now
    release.set()
    folding.join(10)
    with store.lock:
        for step in range(2, 50):
            store.add_record(step, {METRIC: loss(step)})
        assert store._folding is None and store._late is not None and not store._late[0]
    assert store.snapshot().track is None
