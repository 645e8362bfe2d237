"""From the sidecar's track series to the engine's state, and the MetricsAvailable a read gives."""

from __future__ import annotations

import math

from plateau.engine.fold import MetricTrack
from plateau.prometheus.summaries import NO_SERIES, SERIES_FOUND, SPEC_PENDING, SidecarTrack, availability, track_from_series
from plateau_sidecar import protocol as p

READ = {p.SERIES_REPORTS: 9.0, p.SERIES_VALUE: 0.4, p.SERIES_STEP: 900.0, p.SERIES_TRACK_SPEC: 7.0,
        "plateau_track_evaluations": 9.0, "plateau_track_best": 0.3, "plateau_track_best_step": 700.0,
        "plateau_track_reference": 0.31, "plateau_track_smoothed": 0.35, "plateau_track_first": 2.0,
        "plateau_track_since_improvement": 2.0, "plateau_track_non_finite": 1.0}


def test_every_track_series_reaches_the_engine_state() -> None:
    read = track_from_series(READ, "loss")
    assert read == SidecarTrack(9, 7, MetricTrack("loss", evaluations=9, last=0.4, last_step=900, best=0.3, best_step=700,
                                                  reference=0.31, smoothed=0.35, first=2.0, since_improvement=2,
                                                  non_finite=1), None, 0)
    assert read.current is not None and isinstance(read.current.best_step, int)  # counts are whole numbers


def test_the_first_track_that_said_stop_and_the_resumes_are_read() -> None:
    stopped = {f"plateau_track_stopped_{f}": v for f, v in (("last", 0.5), ("last_step", 400.0), ("evaluations", 4.0),
                                                             ("best", 0.3), ("since_improvement", 3.0))}
    read = track_from_series({**READ, **stopped, p.SERIES_TRACK_RESUMES: 2.0}, "loss")
    assert read is not None and read.resumes == 2
    assert read.stopped == MetricTrack("loss", evaluations=4, last=0.5, last_step=400, best=0.3, since_improvement=3)


def test_counts_the_sidecar_did_not_export_read_as_zero_and_a_track_needs_evaluations() -> None:
    bare = {p.SERIES_REPORTS: 1.0, p.SERIES_TRACK_SPEC: 7.0, "plateau_track_evaluations": 1.0}
    read = track_from_series(bare, "loss")
    assert read is not None and read.current == MetricTrack("loss", evaluations=1) and read.resumes == 0
    no_track = track_from_series({p.SERIES_REPORTS: 1.0, p.SERIES_TRACK_SPEC: 7.0}, "loss")
    assert no_track == SidecarTrack(1, 7, None, None, 0)


def test_a_count_that_is_not_a_finite_number_is_unknown() -> None:
    assert track_from_series({**READ, p.SERIES_REPORTS: math.inf}, "loss") is None
    read = track_from_series({**READ, p.SERIES_TRACK_SPEC: math.nan}, "loss")
    assert read == SidecarTrack(9, None, None) and read.resumes == 0  # no spec key: folded under no spec yet
    last = track_from_series({**READ, p.SERIES_VALUE: math.nan}, "loss")
    assert last is not None and last.current is not None and math.isnan(last.current.last)  # a value, not a count


def test_availability_says_why_a_read_is_unusable() -> None:
    assert availability(None, "loss", 7) == ("False", NO_SERIES, "no loss series from the sidecar yet")
    state, reason, message = availability(None, "loss", 7, seen=(60, 1320))  # its pod ended: the series went stale
    assert (state, reason) == ("False", NO_SERIES) and "yet" not in message
    assert "since its report 60 (step 1320)" in message and "pod has ended" in message
    state, reason, message = availability(SidecarTrack(3, None, None), "loss", 7)
    assert (state, reason) == ("False", SPEC_PENDING) and p.ENV_SPEC_FILE in message and p.DEFAULT_SPEC_FILE in message
    state, reason, message = availability(SidecarTrack(3, 8, None), "loss", 7)
    assert (state, reason) == ("False", SPEC_PENDING) and "not folded loss under the current stop spec" in message
    assert availability(SidecarTrack(3, 7, None), "loss", 7) == ("True", SERIES_FOUND, "the sidecar reports loss")
