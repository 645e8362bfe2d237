"""Schedule-aware stopping: declared milestones and a learning-rate metric hold patience and the
forecast before a drop and start them again after it, in the fold, replay and the sidecar."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from plateau.api import Reason, StopSpec
from plateau.engine.fold import Evaluation, track
from plateau.engine.history import MetricHistory, metric_stop_spec
from plateau.engine.rules import Observation, RuleOutcome, decide


def stepped(n: int, drops: tuple[int, ...]) -> list[tuple[int, float, float]]:
    """(step, loss, lr): a flat stretch at each learning rate, each drop a step down in loss."""
    out = []
    for i in range(1, n + 1):
        level = sum(i >= d for d in drops)
        out.append((i, 1.0 - 0.2 * level + 0.001 * (i % 2), 0.1 * 0.1**level))
    return out


def first_stop(stop: StopSpec, rows: list[tuple[int, float, float]]) -> tuple[int, str] | None:
    rule = metric_stop_spec(stop)
    assert rule is not None
    history = MetricHistory(rule)
    for step, loss, lr in rows:
        history.add(step, loss, lr)
        d = decide(stop, Observation(metric=history.track))
        if d.would_stop:
            return step, d.message
    return None


def test_patience_holds_before_a_scheduled_drop_and_counts_again_after_it() -> None:
    rows = stepped(60, (20, 40))
    plain = StopSpec.model_validate({"metric": {"name": "loss", "patience": 5}})
    assert first_stop(plain, rows) == (7, "loss has not improved by any amount for 5 evaluations; best 1 at step 2")
    aware = StopSpec.model_validate({"metric": {"name": "loss", "patience": 5, "schedule": {"milestones": [20, 40]}}})
    assert first_stop(aware, rows) == (45, "loss has not improved by any amount for 5 evaluations; best 0.6 at step 40")
    held = decide(aware, Observation(metric=MetricHistory.folded(metric_stop_spec(aware), [(s, v) for s, v, _ in rows[:30]]).track))  # type: ignore[arg-type]
    plateau = next(o for o in held.outcomes if o.reason == Reason.PLATEAU)
    assert plateau.fired is False and "drops at step 40 (scheduled)" in plateau.message
    near = StopSpec.model_validate({"metric": {"name": "loss", "patience": 5,
                                               "schedule": {"milestones": [20, 40], "hold": 5}}})
    assert first_stop(near, rows)[0] == 7  # type: ignore[index]  # 13 steps before the drop: not held


def improving_then_flat(n: int) -> list[tuple[int, float, float]]:
    """(step, loss, lr): drops at 20, 40 and 60; the loss improves until 40, then sits flat at
    each learning rate."""
    out = []
    for i in range(1, n + 1):
        level = sum(i >= d for d in (20, 40, 60))
        loss = 1.0 - 0.2 * level - (0.005 * (i - 20 * level) if level < 2 else 0.0)
        out.append((i, loss, 0.1 * 0.1**level))
    return out


def test_an_lr_metric_restarts_patience_and_its_steady_drops_predict_the_next() -> None:
    rows = improving_then_flat(100)
    plain = StopSpec.model_validate({"metric": {"name": "loss", "patience": 5}})
    assert first_stop(plain, rows) == (45, "loss has not improved by any amount for 5 evaluations; best 0.6 at step 40")
    aware = StopSpec.model_validate({"metric": {"name": "loss", "patience": 5, "schedule": {"learningRate": "lr"}}})
    # Drops at 20 and 40 predict one at 60: held until it and counted from it; the drop expected
    # at 80 holds again, and when it does not come the plateau is evidence.
    assert first_stop(aware, rows) == (80, "loss has not improved by any amount for 20 evaluations; best 0.4 at step 60")
    held = MetricHistory.folded(metric_stop_spec(aware), [(s, v) for s, v, _ in rows[:50]])  # type: ignore[arg-type]
    assert held.track is not None and held.track.drop_step is None  # no lr given: no drop seen


def test_replay_reads_the_lr_column(tmp_path: Path) -> None:
    rows = ["run,step,val_loss,lr"] + [f"a,{s},{v},{lr}" for s, v, lr in improving_then_flat(100)]
    (tmp_path / "c.csv").write_text("\n".join(rows) + "\n")
    (tmp_path / "s.yaml").write_text("stop:\n  metric: {name: val_loss, patience: 5, schedule: {learningRate: lr}}\n")
    out = subprocess.run([sys.executable, "-m", "plateau.cli", "replay", str(tmp_path / "s.yaml"), str(tmp_path / "c.csv"),
                          "--json"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["stop_step"] == 80


def test_the_forecast_starts_again_at_a_drop_and_holds_before_one() -> None:
    stop = StopSpec.model_validate({"metric": {"name": "val_loss", "schedule": {"milestones": [50]}, "forecast": {
        "horizon": 100, "unit": "steps", "minGain": {"progress": 0.03}}}})
    before = track(None, stop.metric, [Evaluation(i, 0.5 + i**-1.5) for i in range(1, 41)])  # type: ignore[arg-type]
    held = next(o for o in decide(stop, Observation(metric=before)).outcomes if o.reason == Reason.CONVERGED)
    assert held.fired is False and "but the learning rate drops at step 50 (scheduled)" in held.message
    after = track(before, stop.metric, [Evaluation(i, 0.3 + (i - 49.0) ** -1.5) for i in range(50, 55)])  # type: ignore[arg-type]
    assert after.drop_step == 50 and after.regime_evaluations == 5 and after.since_improvement == 0
    fresh = next(o for o in decide(stop, Observation(metric=after)).outcomes if o.reason == Reason.CONVERGED)
    assert fresh.fired is None and "(5 of 8 since the last learning-rate drop)" in fresh.message
    later = track(after, stop.metric, [Evaluation(i, 0.3 + (i - 49.0) ** -1.5) for i in range(55, 80)])  # type: ignore[arg-type]
    assert decide(stop, Observation(metric=later)).reason == Reason.CONVERGED  # the new regime has converged


def test_a_lookahead_holds_before_any_drop_to_come_the_run_has_no_known_end() -> None:
    def converged(end: dict) -> RuleOutcome:
        stop = StopSpec.model_validate({"metric": {"name": "val_loss", "schedule": {"milestones": [5000]}, "forecast": {
            **end, "unit": "steps", "minGain": {"progress": 0.03}}}})
        m = track(None, stop.metric, [Evaluation(i, 0.5 + i**-1.5) for i in range(1, 41)])  # type: ignore[arg-type]
        return next(o for o in decide(stop, Observation(metric=m)).outcomes if o.reason == Reason.CONVERGED)

    assert converged({"horizon": 100}).fired is True  # the drop comes after the planned end
    unknown = converged({"lookahead": 1.5})
    assert unknown.fired is False and "but the learning rate drops at step 5,000 (scheduled)" in unknown.message


def test_the_sidecar_folds_the_learning_rate_in_force_live_and_when_a_spec_arrives_late() -> None:
    from plateau.engine.history import metric_spec_for
    from plateau_sidecar.store import MetricStore

    aware = StopSpec.model_validate({"metric": {"name": "loss", "patience": 5, "schedule": {"learningRate": "lr"}}})
    text = metric_spec_for(aware).text  # type: ignore[union-attr]
    rows = improving_then_flat(100)
    expected = MetricHistory.folded(metric_stop_spec(aware), rows)  # type: ignore[arg-type]
    assert expected.stopped is not None and expected.stopped.last_step == 80
    for lr_first in (True, False):  # the rate in its record is in force at the loss, in either order
        live, late = MetricStore("tj"), MetricStore("tj")
        live.set_spec(text)
        with live.lock, late.lock:
            for step, loss, lr in rows:
                for store in (live, late):
                    store.add_record(step, {"lr": lr, "loss": loss} if lr_first else {"loss": loss, "lr": lr})
        late.set_spec(text)  # refolds the kept reports, each with the lr in force at its record
        for store in (live, late):
            view = store.snapshot().track
            assert view is not None and view.current == expected.track and view.stopped == expected.stopped
            assert view.current.drop_step == 60 and view.current.drop_gap == 20


def test_a_period_starts_a_regime_every_period_steps_and_holds_a_plateau_until_the_next() -> None:
    rows = stepped(50, (20, 40))
    periodic = StopSpec.model_validate({"metric": {"name": "loss", "patience": 5, "schedule": {"period": 20}}})
    m = track(None, periodic.metric, [Evaluation(s, v) for s, v, _ in rows[:45]])  # type: ignore[arg-type]
    assert (m.drop_step, m.drop_gap, m.since_improvement) == (40, 20, 5)  # counted from the drop at 40
    held = decide(periodic, Observation(metric=track(None, periodic.metric,  # type: ignore[arg-type]
                                                     [Evaluation(s, v) for s, v, _ in rows[:30]])))
    plateau = next(o for o in held.outcomes if o.reason == Reason.PLATEAU)
    assert plateau.fired is False and "drops at step 40 (scheduled)" in plateau.message


def test_the_first_learning_rate_is_the_base_not_a_drop_and_a_doubling_is_a_restart() -> None:
    aware = StopSpec.model_validate({"metric": {"name": "loss", "patience": 5, "schedule": {"learningRate": "lr"}}})
    rule = aware.metric
    first = track(None, rule, [Evaluation(1, 1.0, 0.1)])  # type: ignore[arg-type]
    assert (first.drop_step, first.lr_base) == (None, 0.1)
    steady = track(first, rule, [Evaluation(2, 0.9, 0.06)])  # type: ignore[arg-type]  # down, not halved
    assert steady.drop_step is None and steady.lr_base == 0.1
    restarted = track(steady, rule, [Evaluation(3, 0.95, 0.2)])  # type: ignore[arg-type]  # exactly doubled
    assert (restarted.drop_step, restarted.lr_base) == (3, 0.2)


def test_a_drop_reported_with_a_non_finite_value_counts_that_value_against_the_new_regime() -> None:
    stop = StopSpec.model_validate({"metric": {"name": "loss", "patience": 5, "schedule": {"milestones": [3]}}})
    m = track(None, stop.metric, [Evaluation(1, 1.0), Evaluation(2, 1.0), Evaluation(3, float("nan"))])  # type: ignore[arg-type]
    assert (m.drop_step, m.since_improvement, m.reference) == (3, 1, None)
