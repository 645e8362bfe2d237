"""The stop-rule engine: a pure function from a stop spec and an observation to a decision.

No I/O, no clock, no Kubernetes. The operator, `plateau run`, `plateau replay` and the
benchmark all fold evaluations with plateau.engine.fold.track and call `decide`.

Missing data is never a reason to stop: a rule without the data it needs is "unknown".
"""

from __future__ import annotations

import math
from typing import Callable, NamedTuple, Optional, Sequence

from plateau.api import Combine, ForecastUnit, MetricRule, Reason, StopSpec
from plateau.engine import forecast as fc
from plateau.engine.fold import MIN, MetricTrack, better, forecast_end, min_delta, progress, run_so_far
from plateau.engine.presets import resolve_metric_rule

ALL = Combine.ALL.value

# Safety stops end a broken run whatever `combine` says.
SAFETY_REASONS = (Reason.NOT_FINITE, Reason.DIVERGED)
# When several rules fire at once, the reported reason is the first of these.
REASON_PRIORITY = (
    Reason.NOT_FINITE,
    Reason.DIVERGED,
    Reason.TARGET_REACHED,
    Reason.BUDGET_EXHAUSTED,
    Reason.DEADLINE_EXCEEDED,
    Reason.GPU_IDLE,
    Reason.COHORT_UNDERPERFORMING,
    Reason.CONVERGED,
    Reason.PLATEAU,
)


# --- observations -----------------------------------------------------------------------------


class GpuWindow(NamedTuple):
    """GPU utilisation over the gpuIdle window: the highest sample and how much of it has data."""

    max_utilisation: Optional[float]
    covered_seconds: float
    unseen: tuple[str, ...] = ()  # the job's pods without utilisation data: unknown, never idle


class CohortView(NamedTuple):
    """Peers' best values so far, taken at the step this run has reached."""

    step: int
    peer_values: tuple[float, ...]


class Observation(NamedTuple):
    metric: Optional[MetricTrack] = None
    elapsed_seconds: Optional[float] = None  # accumulated running time
    gpu_hours: Optional[float] = None
    gpu: Optional[GpuWindow] = None
    cohort: Optional[CohortView] = None


# --- decisions --------------------------------------------------------------------------------


class RuleOutcome(NamedTuple):
    """One rule's verdict: fired True/False, or None when its data is missing.

    The message is written when read: the operator decides for thousands of jobs a cycle and
    reads the messages of the few that stop, and formatting them all would cost more than
    the rules themselves.
    """

    reason: Reason
    fired: Optional[bool]
    explain: Callable[[], str]

    @property
    def message(self) -> str:
        return self.explain()


class Decision(NamedTuple):
    stop: bool  # act now (rules say stop, and this is not a dry run)
    would_stop: bool  # the rules say stop; in a dry run this is reported, not acted on
    reason: Optional[Reason]
    message: str
    outcomes: tuple[RuleOutcome, ...] = ()
    gpu_hours_saved: Optional[float] = None
    step: Optional[int] = None  # the metric's last step in the observation: where the decision was made

    @property
    def success(self) -> bool:
        return self.reason == Reason.TARGET_REACHED

    @property
    def unknown(self) -> tuple[Reason, ...]:
        return tuple(o.reason for o in self.outcomes if o.fired is None)


# --- the rules --------------------------------------------------------------------------------


def _fmt(value: Optional[float]) -> str:
    return "n/a" if value is None else f"{value:.4g}"


def _best_text(m: MetricTrack) -> str:
    return f"best {_fmt(m.best)} at step {m.best_step}" if m.best is not None else "no finite value yet"


def _metric_outcomes(rule: MetricRule, m: Optional[MetricTrack]) -> list[RuleOutcome]:
    wanted: list[Reason] = []
    if rule.check_finite:
        wanted.append(Reason.NOT_FINITE)
    if rule.divergence is not None:
        wanted.append(Reason.DIVERGED)
    if rule.target is not None:
        wanted.append(Reason.TARGET_REACHED)
    if rule.patience is not None:
        wanted.append(Reason.PLATEAU)
    if rule.forecast is not None and not rule.forecast.confirms_plateau:
        wanted.append(Reason.CONVERGED)
    if m is None or m.evaluations == 0:
        return [RuleOutcome(r, None, lambda: f"no evaluations of {rule.name} yet") for r in wanted]
    warmup = rule.warmup or 0
    if m.evaluations <= warmup:
        evaluations = m.evaluations
        return [RuleOutcome(r, False, lambda: f"{rule.name}: warming up ({evaluations}/{warmup} evaluations)")
                for r in wanted]
    return [_METRIC_RULES[reason](rule, m) for reason in wanted]


def _not_finite(rule: MetricRule, m: MetricTrack) -> RuleOutcome:
    return RuleOutcome(Reason.NOT_FINITE, m.non_finite > 0, lambda: (
        f"{rule.name} was not finite in {m.non_finite} of {m.evaluations} evaluations"
        f" (last {_fmt(m.last)} at step {m.last_step}); {_best_text(m)}"))


def _diverged(rule: MetricRule, m: MetricTrack) -> RuleOutcome:
    assert rule.divergence is not None
    fired = m.last is not None and math.isfinite(m.last) and better(rule.divergence, m.last, rule.mode)
    side = "above" if rule.mode == MIN else "below"
    return RuleOutcome(Reason.DIVERGED, fired, lambda: (
        f"{rule.name} {_fmt(m.last)} at step {m.last_step} is {side} the divergence threshold"
        f" {_fmt(rule.divergence)}; {_best_text(m)}" if fired else f"{rule.name} within the divergence threshold"))


def _target_reached(rule: MetricRule, m: MetricTrack) -> RuleOutcome:
    assert rule.target is not None
    fired = m.best is not None and not better(rule.target, m.best, rule.mode)
    return RuleOutcome(Reason.TARGET_REACHED, fired, lambda: (
        f"{rule.name} reached the target {_fmt(rule.target)}: {_best_text(m)}" if fired
        else f"{rule.name} has not reached the target {_fmt(rule.target)}; {_best_text(m)}"))


def _plateau(rule: MetricRule, m: MetricTrack) -> RuleOutcome:
    fired = m.since_improvement >= effective_patience(rule, m)
    drop = _drop_ahead(rule, m) if fired else None
    if drop is not None:
        return RuleOutcome(Reason.PLATEAU, False, lambda: (
            f"{rule.name} has not improved for {m.since_improvement} evaluations, but {drop}"))
    if fired and rule.forecast is not None and rule.forecast.confirms_plateau:
        # The forecast must agree: unknown holds the stop back, as it would under combine: all.
        forecast = _converged(rule, m)
        return RuleOutcome(Reason.PLATEAU, forecast.fired, lambda: (
            f"{rule.name} has not improved by {_delta_text(rule, m)} for {m.since_improvement} evaluations;"
            f" {_best_text(m)}; {forecast.message}"))
    return RuleOutcome(Reason.PLATEAU, fired, lambda: (
        f"{rule.name} has not improved by {_delta_text(rule, m)} for {m.since_improvement} evaluations;"
        f" {_best_text(m)}"))


def _drop_ahead(rule: MetricRule, m: MetricTrack) -> Optional[str]:
    """Why a plateau is no evidence now: the learning rate drops soon (None when it does not)."""
    schedule, step = rule.schedule, m.last_step
    if schedule is None or step is None:
        return None
    due: list[tuple[int, str]] = []
    if schedule.milestones is not None:
        due += [(n, "scheduled") for n in schedule.milestones if n > step][:1]
    if schedule.period is not None:
        due.append(((step // schedule.period + 1) * schedule.period, "scheduled"))
    if schedule.learning_rate is not None and m.drop_step is not None and m.drop_gap:
        expected = m.drop_step + m.drop_gap
        if expected > step:
            due.append((expected, f"expected every {m.drop_gap:,} steps"))
    if not due:
        return None
    at, why = min(due)
    ahead = rule.forecast
    # The run's end in steps, where known: a lookahead has none.
    end = ahead.horizon if ahead is not None and ahead.unit == ForecastUnit.STEPS else None
    if (end is not None and at > end) or (schedule.hold is not None and at - step > schedule.hold):
        return None
    return f"the learning rate drops at step {at:,} ({why}): a plateau before a drop is not the end"


def _converged(rule: MetricRule, m: MetricTrack) -> RuleOutcome:
    ahead = rule.forecast
    assert ahead is not None
    unit = "step" if ahead.unit == ForecastUnit.STEPS else "evaluation"
    regime = m.regime_evaluations or 0
    horizon = ahead.horizon  # None with a lookahead: the planned length is unknown
    at = run_so_far(ahead, m.last_step, m.evaluations)
    if regime < ahead.min_evaluations or m.forecast_gain is None or m.forecast_gain_sd is None:
        reached = horizon is not None and m.last_step is not None and at >= horizon
        return RuleOutcome(Reason.CONVERGED, None, lambda: (
            f"{rule.name}: the horizon {unit} {horizon:,} is reached, nothing left to forecast" if reached else
            f"{rule.name}: too few evaluations to forecast ({regime} of {ahead.min_evaluations}"
            f"{' since the last learning-rate drop' if m.drop_step is not None else ''})"))
    upper = m.forecast_gain + fc.normal_quantile(ahead.confidence) * m.forecast_gain_sd
    wanted = min_gain(rule, m)
    fired = upper < wanted
    drop = _drop_ahead(rule, m) if fired else None

    def explain() -> str:
        where = f"{forecast_end(ahead, m.last_step, m.evaluations):,.0f}"
        if horizon is None:
            where += f" ({ahead.lookahead:g}× the run so far)"
        text = (f"{rule.name} expected to reach {_fmt(m.forecast_level)} ± {m.forecast_level_sd:.2g} by {unit}"
                f" {where}: a gain of {_fmt(m.forecast_gain)} (at most {_fmt(upper)} at"
                f" {ahead.confidence:.0%} confidence) {'<' if fired else '>='} minGain {_fmt(wanted)}")
        if drop is not None:
            return f"{text}, but {drop}"
        if not fired or horizon is None:
            return text
        return f"{text}; stopping saves {1.0 - at / horizon:.0%} of the run"

    return RuleOutcome(Reason.CONVERGED, fired and drop is None, explain)


def min_gain(rule: MetricRule, m: MetricTrack) -> float:
    """The gain still to come that is worth the rest of the run: the largest of minGain's parts."""
    assert rule.forecast is not None
    g = rule.forecast.min_gain
    current = m.reference if m.reference is not None else m.best
    if current is None:
        return g.absolute
    return max(g.absolute, g.relative * abs(current), g.progress * progress(m.first, current, rule.mode))


_METRIC_RULES: dict[Reason, Callable[[MetricRule, MetricTrack], RuleOutcome]] = {
    Reason.NOT_FINITE: _not_finite,
    Reason.DIVERGED: _diverged,
    Reason.TARGET_REACHED: _target_reached,
    Reason.PLATEAU: _plateau,
    Reason.CONVERGED: _converged,
}


def effective_patience(rule: MetricRule, m: MetricTrack) -> int:
    """`patience`, grown to patienceGrowth x the evaluations seen at the last improvement."""
    assert rule.patience is not None
    if not rule.patience_growth:
        return rule.patience
    improved_at = m.evaluations - m.since_improvement
    return max(rule.patience, math.ceil(rule.patience_growth * improved_at))


def _delta_text(rule: MetricRule, m: MetricTrack) -> str:
    d = rule.min_delta
    if d is None or (d.absolute == 0 and d.relative == 0 and d.progress == 0):
        return "any amount"
    parts = ([f"{d.absolute:g}"] if d.absolute else []) + ([f"{d.relative:.2%}"] if d.relative else [])
    if d.progress:
        text = f"{d.progress:.2%} of its progress"
        if m.reference is not None and m.first is not None:
            text += f" ({d.progress * progress(m.first, m.reference, rule.mode):.4g})"
        parts.append(text)
    return " or ".join(parts)


def _budget_outcomes(stop: StopSpec, obs: Observation) -> list[RuleOutcome]:
    out = []
    if stop.max_duration is not None:
        limit = stop.max_duration.seconds
        if obs.elapsed_seconds is None:
            out.append(RuleOutcome(Reason.DEADLINE_EXCEEDED, None, lambda: "running time unknown"))
        else:
            fired = obs.elapsed_seconds >= limit
            out.append(RuleOutcome(Reason.DEADLINE_EXCEEDED, fired, lambda: f"ran {obs.elapsed_seconds:.0f}s of maxDuration {stop.max_duration}"))
    if stop.max_gpu_hours is not None:
        if obs.gpu_hours is None:
            out.append(RuleOutcome(Reason.BUDGET_EXHAUSTED, None, lambda: "GPU-hours used unknown"))
        else:
            fired = obs.gpu_hours >= stop.max_gpu_hours
            out.append(RuleOutcome(Reason.BUDGET_EXHAUSTED, fired, lambda: f"used {obs.gpu_hours:.3g} of maxGpuHours {stop.max_gpu_hours:g}"))
    return out


def _gpu_outcome(stop: StopSpec, obs: Observation) -> list[RuleOutcome]:
    rule = stop.gpu_idle
    if rule is None:
        return []
    window = rule.for_.seconds
    gpu = obs.gpu
    if gpu is None or gpu.max_utilisation is None or not math.isfinite(gpu.max_utilisation):
        return [RuleOutcome(Reason.GPU_IDLE, None, lambda: "no GPU utilisation data")]
    if gpu.unseen:  # an unseen pod may be the busy one
        return [RuleOutcome(Reason.GPU_IDLE, None, lambda: f"no GPU utilisation data for {pods_named(gpu.unseen)}")]
    if gpu.covered_seconds < window:
        return [RuleOutcome(Reason.GPU_IDLE, None, lambda: f"GPU utilisation known for {gpu.covered_seconds:.0f}s of the {rule.for_} window")]
    fired = gpu.max_utilisation < rule.below
    return [RuleOutcome(Reason.GPU_IDLE, fired, lambda: f"GPU utilisation at most {gpu.max_utilisation:.1%} over the last {rule.for_} (idle below {rule.below:.0%})")]


NAMED_PODS = 3  # a message names this many pods, and counts the rest


def pods_named(pods: Sequence[str]) -> str:
    more = f" and {len(pods) - NAMED_PODS} more" if len(pods) > NAMED_PODS else ""
    return ("pod " if len(pods) == 1 else "pods ") + ", ".join(pods[:NAMED_PODS]) + more


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile, q in [0, 100] (numpy's default method)."""
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def _cohort_outcome(stop: StopSpec, rule_metric: MetricRule, obs: Observation) -> list[RuleOutcome]:
    rule = stop.cohort
    if rule is None:
        return []
    m, view = obs.metric, obs.cohort
    if m is None or m.best is None or view is None:
        return [RuleOutcome(Reason.COHORT_UNDERPERFORMING, None, lambda: "no cohort comparison available yet")]
    peers = [v for v in view.peer_values if math.isfinite(v)]
    if view.step < rule.start_step:
        return [RuleOutcome(Reason.COHORT_UNDERPERFORMING, False, lambda: f"step {view.step} is before startStep {rule.start_step}")]
    if len(peers) < rule.min_jobs:
        return [RuleOutcome(Reason.COHORT_UNDERPERFORMING, None, lambda: f"{len(peers)} peers reached step {view.step}; minJobs is {rule.min_jobs}")]
    keep = 50.0 if rule.rule == "median" else rule.percentile
    q = keep if rule_metric.mode == MIN else 100.0 - keep
    threshold = percentile(peers, q)
    fired = better(threshold, m.best, rule_metric.mode)
    label = "median" if rule.rule == "median" else f"top-{keep:g}% threshold"
    return [RuleOutcome(Reason.COHORT_UNDERPERFORMING, fired, lambda: f"{rule_metric.name} best {_fmt(m.best)} vs cohort {label} {_fmt(threshold)} of {len(peers)} peers at step {view.step}")]


def _gpu_hours_saved(stop: StopSpec, obs: Observation) -> Optional[float]:
    """What stopping now saves, where a budget or deadline bounds the run's length."""
    bounds = []
    if stop.max_gpu_hours is not None and obs.gpu_hours is not None:
        bounds.append(max(0.0, stop.max_gpu_hours - obs.gpu_hours))
    if stop.max_duration is not None and obs.elapsed_seconds and obs.gpu_hours is not None:
        rate = obs.gpu_hours / obs.elapsed_seconds
        bounds.append(max(0.0, (stop.max_duration.seconds - obs.elapsed_seconds) * rate))
    return min(bounds) if bounds else None


def evaluate(stop: StopSpec, obs: Observation) -> list[RuleOutcome]:
    """Every configured rule's outcome, in no particular order."""
    outcomes = _budget_outcomes(stop, obs) + _gpu_outcome(stop, obs)
    metric_rule = resolve_metric_rule(stop)
    if metric_rule is not None:
        outcomes += _metric_outcomes(metric_rule, obs.metric)
        outcomes += _cohort_outcome(stop, metric_rule, obs)
    return outcomes


def decide(stop: StopSpec, obs: Observation) -> Decision:
    """Stop or go on, with the reason and the evidence."""
    outcomes = evaluate(stop, obs)
    fired = [o for o in outcomes if o.fired]
    safety = [o for o in fired if o.reason in SAFETY_REASONS]
    if stop.combine == ALL:
        criteria = [o for o in outcomes if o.reason not in SAFETY_REASONS]
        all_fired = bool(criteria) and all(o.fired for o in criteria)
        firing = safety or (criteria if all_fired else [])
    else:
        firing = fired
    if not firing:
        unknown = [o.message for o in outcomes if o.fired is None]
        message = "going on" + (f" (unknown: {'; '.join(unknown)})" if unknown else "")
        return Decision(False, False, None, message, tuple(outcomes))
    firing.sort(key=lambda o: REASON_PRIORITY.index(o.reason))
    primary = firing[0]
    message = "; and ".join(o.message for o in firing) if stop.combine == ALL else primary.message
    return Decision(
        stop=not stop.dry_run,
        would_stop=True,
        reason=primary.reason,
        message=message,
        outcomes=tuple(outcomes),
        gpu_hours_saved=_gpu_hours_saved(stop, obs),
        step=obs.metric.last_step if obs.metric else None,
    )
