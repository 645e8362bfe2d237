"""The metric fold: new evaluations into a compact metric state, the MetricTrack. Pure.

The operator keeps the track in status, so a restart loses nothing; the sidecar folds every
report through it (plateau.engine.history), and plateau.engine.rules decides on it. A
learning-rate drop starts a new regime (patience, smoothing and the forecast's sketch again).
"""

from __future__ import annotations

import math
from typing import Iterable, NamedTuple, Optional

from plateau.api import ForecastRule, ForecastUnit, MetricRule, Mode, Schedule
from plateau.engine import forecast as fc

MIN = Mode.MIN.value  # a plain str: the fold compares modes per evaluation, enum lookups cost


# --- observations -----------------------------------------------------------------------------
# The engine's values are immutable NamedTuples, not frozen dataclasses: the operator builds
# tens of thousands a second, and a frozen dataclass costs several times as much to build.


class Evaluation(NamedTuple):
    """One report of the metric by the trainer, exactly as it was reported."""

    step: int
    value: float
    lr: Optional[float] = None  # the learning rate in force, where the trainer reports it


class MetricTrack(NamedTuple):
    """Everything the rules need to know about a metric's history, in O(1) space."""

    name: str
    evaluations: int = 0
    last: Optional[float] = None
    last_step: Optional[int] = None
    best: Optional[float] = None  # best finite raw value: the restore-best checkpoint
    best_step: Optional[int] = None
    reference: Optional[float] = None  # (smoothed) value improvements are measured against
    smoothed: Optional[float] = None
    first: Optional[float] = None  # first finite value: where minDelta.progress counts from
    since_improvement: int = 0  # the patience counter
    non_finite: int = 0
    # The forecast (rules with `forecast`): the curve's bounded sketch since the last learning-rate
    # drop, where that regime began (in the forecast's unit), and the fit, redone only when new
    # finite evaluations arrive. The sidecar exports the fit; the sketch stays where it is folded.
    sketch: tuple[float, ...] = ()
    origin: float = 0.0
    regime_evaluations: Optional[int] = None  # finite evaluations since the last drop; None: no forecast
    forecast_level: Optional[float] = None
    forecast_level_sd: Optional[float] = None
    forecast_gain: Optional[float] = None
    forecast_gain_sd: Optional[float] = None
    # Learning-rate drops (rules with `schedule`): the LR the last drop set, its step, and the
    # steps between the last two drops (the observed pattern that predicts the next).
    lr_base: Optional[float] = None
    drop_step: Optional[int] = None
    drop_gap: Optional[int] = None


# State only the fold needs (the sidecar, replay, the benchmark fold; the operator reads the rest):
# neither exported by the sidecar nor kept in status.
FOLD_ONLY = ("sketch", "origin", "lr_base")


# --- the metric fold --------------------------------------------------------------------------


def better(a: float, b: float, mode: str) -> bool:
    return a < b if mode == MIN else a > b


def progress(first: Optional[float], towards: float, mode: str) -> float:
    """How far the metric has come from its first value (0 if it went the wrong way)."""
    if first is None:
        return 0.0
    return max(0.0, first - towards if mode == MIN else towards - first)


def min_delta(rule: MetricRule, reference: float, first: Optional[float]) -> float:
    """The improvement on `reference` that counts: the largest of minDelta's parts."""
    d = rule.min_delta
    if d is None:
        return 0.0
    return max(d.absolute, d.relative * abs(reference), d.progress * progress(first, reference, rule.mode))


def _improved(value: float, reference: Optional[float], first: Optional[float], rule: MetricRule) -> bool:
    if reference is None:
        return True
    delta = min_delta(rule, reference, first)
    if rule.mode == MIN:
        return value < reference - delta
    return value > reference + delta


def track(state: Optional[MetricTrack], rule: MetricRule, evaluations: Iterable[Evaluation]) -> MetricTrack:
    """Fold new evaluations into the metric state (Keras semantics for patience and minDelta).

    The operator folds every job's new evaluations each cycle, so the loop works on locals and
    builds one MetricTrack at the end.
    """
    s = state or MetricTrack(name=rule.name)
    count, last, last_step, best, best_step = s.evaluations, s.last, s.last_step, s.best, s.best_step
    reference, smoothed, since, non_finite = s.reference, s.smoothed, s.since_improvement, s.non_finite
    first = s.first
    alpha = rule.smoothing or 0.0
    warmup = rule.warmup or 0
    mode = rule.mode
    schedule, ahead = rule.schedule, rule.forecast
    sketch, origin, regime, lr_base, drop_step, drop_gap = (s.sketch, s.origin, s.regime_evaluations, s.lr_base,
                                                            s.drop_step, s.drop_gap)
    by_steps = ahead is not None and ahead.unit == ForecastUnit.STEPS
    # (last step, evaluations) at the last evaluation that changed the sketch: the fit is made
    # there, so a batch ending in non-finite values fits as one report at a time does (a
    # lookahead's end moves with the run).
    fit_at: Optional[tuple[int, int]] = None
    for ev in evaluations:
        if schedule is not None:
            dropped, lr_base = _dropped(schedule, last_step, ev, lr_base)
            if dropped:
                # A new regime: patience and the forecast start again from it.
                if drop_step is not None:
                    drop_gap = ev.step - drop_step
                drop_step = ev.step
                since, reference, smoothed, sketch = 0, None, None, ()
                fit_at = (ev.step, count + 1) if ahead is not None else None
                regime = 0 if ahead is not None else None
                origin = float(last_step if by_steps else count) if last_step is not None else 0.0
        count += 1
        value = ev.value
        last, last_step = value, ev.step
        if not math.isfinite(value):
            # A non-finite value is never an improvement.
            non_finite += 1
            since += count > warmup
            continue
        if first is None:
            first = value
        if ahead is not None:
            regime = (regime or 0) + 1
            sketch = fc.sketch(sketch, regime, float(ev.step if by_steps else count), value)
            fit_at = (ev.step, count)
        if best is None or better(value, best, mode):
            best, best_step = value, ev.step
        smoothed = value if smoothed is None else alpha * smoothed + (1 - alpha) * value
        if count <= warmup:
            # Track the reference during warmup, but patience only starts counting after it.
            if reference is None or better(smoothed, reference, mode):
                reference = smoothed
            since = 0
        elif _improved(smoothed, reference, first, rule):
            since = 0
            reference = smoothed
        else:
            since += 1
        if not alpha:
            smoothed = None
    fit = _forecast(ahead, sketch, origin, mode, *fit_at) if fit_at is not None else (
        s.forecast_level, s.forecast_level_sd, s.forecast_gain, s.forecast_gain_sd)
    return MetricTrack(
        name=s.name,
        evaluations=count,
        last=last,
        last_step=last_step,
        best=best,
        best_step=best_step,
        reference=reference,
        smoothed=smoothed,
        first=first,
        since_improvement=since,
        non_finite=non_finite,
        sketch=sketch,
        origin=origin,
        regime_evaluations=regime,
        forecast_level=fit[0],
        forecast_level_sd=fit[1],
        forecast_gain=fit[2],
        forecast_gain_sd=fit[3],
        lr_base=lr_base,
        drop_step=drop_step,
        drop_gap=drop_gap,
    )


def forecast_anew(state: MetricTrack, rule: MetricRule) -> MetricTrack:
    """A track rebuilt from status, whose forecast had a fit: status keeps the fit but never its
    sketch (FOLD_ONLY), so the forecast starts again from here, as after a learning-rate drop:
    minEvaluations new values before the next fit, and no fit on a curve with its start missing."""
    ahead = rule.forecast
    if ahead is None or state.sketch or not state.regime_evaluations:
        return state  # nothing lost: no forecast, the sketch is here, or nothing was fitted yet
    done = run_so_far(ahead, state.last_step, state.evaluations)
    return state._replace(regime_evaluations=0, origin=float(done), forecast_level=None,
                          forecast_level_sd=None, forecast_gain=None, forecast_gain_sd=None)


def _dropped(schedule: Schedule, before: Optional[int], ev: Evaluation, lr_base: Optional[float]
             ) -> tuple[bool, Optional[float]]:
    """Whether the learning rate dropped (or restarted) between the step `before` and this
    evaluation, and the LR the next drop is measured against."""
    if before is not None and ev.step > before:
        if schedule.milestones is not None and any(before < m <= ev.step for m in schedule.milestones):
            return True, lr_base
        if schedule.period is not None and ev.step // schedule.period > before // schedule.period:
            return True, lr_base
    lr = ev.lr
    if schedule.learning_rate is None or lr is None or not math.isfinite(lr) or lr <= 0:
        return False, lr_base
    if lr_base is None:
        return False, lr
    # Halved since the last drop (a step down, or far down a cosine), or restarted (doubled).
    return (True, lr) if lr <= lr_base / 2 or lr >= lr_base * 2 else (False, lr_base)


_NO_FIT = (None, None, None, None)


def run_so_far(rule: ForecastRule, last_step: Optional[int], evaluations: int) -> int:
    """The run so far in the forecast's unit: its last step, or its evaluations."""
    return (last_step or 0) if rule.unit == ForecastUnit.STEPS else evaluations


def forecast_end(rule: ForecastRule, last_step: Optional[int], evaluations: int) -> float:
    """Where the forecast looks, in its unit: the planned length, or `lookahead` times the run so
    far (counted from the run's start, not from the last learning-rate drop)."""
    if rule.horizon is not None:
        return float(rule.horizon)
    assert rule.lookahead is not None
    return rule.lookahead * run_so_far(rule, last_step, evaluations)


def _forecast(rule: Optional[ForecastRule], sketch: tuple[float, ...], origin: float, mode: str,
              last_step: Optional[int], evaluations: int) -> tuple[Optional[float], ...]:
    assert rule is not None
    end = forecast_end(rule, last_step, evaluations)
    f = fc.fit(sketch[1::3], sketch[2::3], end, origin, mode == MIN)
    return _NO_FIT if f is None else tuple(f)
