"""Status helpers: conditions follow metav1.Condition rules; engine state round-trips."""

from __future__ import annotations

import json
import math

from plateau.api import MetricRule, Phase, Reason, TrainingJobStatus
from plateau.engine.fold import Evaluation, track
from plateau.engine.status import (
    METRICS_AVAILABLE,
    condition,
    final_phase,
    set_condition,
    summary_from_track,
    track_from_summary,
)


def test_transition_time_moves_only_when_status_changes() -> None:
    c = set_condition([], METRICS_AVAILABLE, "False", "PrometheusUnreachable", "down", "2026-01-01T00:00:00Z", 3)
    c = set_condition(c, METRICS_AVAILABLE, "False", "NoSeries", "still down", "2026-01-01T00:01:00Z", 3)
    got = condition(c, METRICS_AVAILABLE)
    assert got is not None and got.last_transition_time == "2026-01-01T00:00:00Z" and got.reason == "NoSeries"
    c = set_condition(c, METRICS_AVAILABLE, "True", "SeriesFound", "", "2026-01-01T00:02:00Z", 4)
    got = condition(c, METRICS_AVAILABLE)
    assert got is not None and got.last_transition_time == "2026-01-01T00:02:00Z" and got.observed_generation == 4
    assert len(c) == 1
    again = set_condition(c, METRICS_AVAILABLE, "True", "SeriesFound", "", "2026-01-01T00:03:00Z", 4)
    assert again is c  # nothing changed: the same list, and no status copy for the caller
    assert set_condition(c, METRICS_AVAILABLE, "True", "SeriesFound", "5 reports", "2026-01-01T00:03:00Z", 4) is not c


def test_engine_state_survives_a_round_trip_through_status_json() -> None:
    rule = MetricRule(name="val_loss", patience=3, smoothing=0.5, min_delta={"relative": 0.01, "progress": 0.1})
    state = track(None, rule, [Evaluation(i, v) for i, v in enumerate([1.0, 0.5, 0.6, math.nan, 0.55])])
    status = TrainingJobStatus(metric=summary_from_track(state, 5, 1), evaluations=state.evaluations)
    wire = json.loads(json.dumps(status.model_dump(by_alias=True, exclude_none=True), allow_nan=False))
    back = TrainingJobStatus.model_validate(wire)
    restored = track_from_summary(back.metric, back.evaluations)
    assert restored is not None
    assert restored == state  # every field the engine folds with, `first` for minDelta.progress included
    for follow in ([Evaluation(9, 0.4)], [Evaluation(9, 0.45)]):
        assert track(restored, rule, follow) == track(state, rule, follow)


def test_non_finite_last_value_is_null_on_the_wire() -> None:
    state = track(None, MetricRule(name="m"), [Evaluation(1, 1.0), Evaluation(2, math.inf)])
    summary = summary_from_track(state)
    assert summary.last is None and summary.non_finite == 1 and summary.best == 1.0


def test_final_phase() -> None:
    assert final_phase(Reason.TARGET_REACHED) == Phase.SUCCEEDED
    assert final_phase("Plateau") == Phase.STOPPED
    assert final_phase(Reason.WORKLOAD_FAILED) == Phase.FAILED
