"""Plateau's own stop specs as benchmark policies, replayed through the real engine.

Each policy feeds a run's val_loss, one evaluation per epoch, to `plateau.cli.replay` — the
same `fold.track` and `rules.decide` the operator uses — and returns the epoch it stopped
at. Plateau rows use keep-best semantics: a stopped run keeps its best checkpoint.
"""

from __future__ import annotations

import bisect
from typing import Any, Callable, Optional

from benchmarks.harness import CohortFamily, Family, Policy, RunCurve
from plateau.api import StopSpec
from plateau.engine.presets import PRESETS, resolve_metric_rule
from plateau.cli.replay import Row, RunHistory, replay_run
from plateau.engine.fold import Evaluation, MetricTrack, track
from plateau.engine.rules import CohortView, Observation, decide


def policy_from_spec(stop: StopSpec | dict[str, Any]) -> Policy:
    spec = stop if isinstance(stop, StopSpec) else StopSpec.model_validate(stop)
    return policy_from_specs(lambda curve: spec)


def policy_from_specs(spec_for: Callable[[RunCurve], StopSpec]) -> Policy:
    """A policy whose spec depends on the run: a forecast's horizon is the run's planned length."""

    def policy(curve: RunCurve) -> int:
        rows = [Row(int(s), {"val_loss": float(v)}, None, None) for s, v in zip(curve.steps, curve.val_loss)]
        result = replay_run(RunHistory(str(curve.run), curve.cohort, rows), spec_for(curve))
        return int(result.stop_step or curve.planned)

    return policy


def preset_family() -> Family:
    return [(name, policy_from_spec({"preset": name, "metric": {"name": "val_loss"}}))
            for name in ("conservative", "balanced", "aggressive")]


def settings_family() -> Family:
    """A few rule settings around the presets, to show where they sit on the frontier."""
    out = []
    for patience, smoothing, rel, progress in ((5, 0.0, 0.0, 0.0), (8, 0.5, 0.0, 0.0), (10, 0.3, 0.002, 0.0),
                                               (15, 0.5, 0.0, 0.0), (20, 0.0, 0.0, 0.0),
                                               (9, 0.5, 0.0, 0.01), (11, 0.6, 0.0, 0.04), (13, 0.7, 0.0, 0.03)):
        name = f"patience={patience},smoothing={smoothing:g},minDelta.relative={rel:g}"
        if progress:
            name = f"patience={patience},smoothing={smoothing:g},minDelta.progress={progress:g}"
        out.append((name, policy_from_spec({"metric": {"name": "val_loss", "patience": patience, "smoothing": smoothing,
                                                       "minDelta": {"relative": rel, "progress": progress}}})))
    return out


# The forecast rule's candidates: (metric fields besides the forecast, minGain.progress,
# confidence, minEvaluations, how it joins the plateau). The horizon is each run's planned
# length in evaluations, as a user states it. "confirm": the plateau stops only when the
# forecast agrees (confirmsPlateau); "any"/"all": the spec's combine of the two rules.
BALANCED_RULE = PRESETS["balanced"]
FORECAST_GRID: tuple[tuple[dict[str, Any], float, float, int, str], ...] = (
    ({}, 0.02, 0.9, 8, "any"),
    ({}, 0.05, 0.9, 8, "any"),
    ({}, 0.05, 0.7, 15, "any"),
    ({}, 0.05, 0.5, 8, "any"),
    (BALANCED_RULE, 0.02, 0.9, 8, "any"),  # balanced, or converged
    ({"patience": 6, "smoothing": 0.6, "minDelta": {"progress": 0.03}}, 0.03, 0.5, 8, "all"),
    # (patience 8, smoothing 0.6, progress 0.03 confirmed at 0.05, 0.7 is the `forecast` preset, listed first)
    ({"patience": 6, "smoothing": 0.6, "minDelta": {"progress": 0.03}}, 0.05, 0.7, 8, "confirm"),
    ({"patience": 5, "smoothing": 0.5, "minDelta": {"progress": 0.05}}, 0.05, 0.7, 8, "confirm"),
    (BALANCED_RULE, 0.05, 0.7, 8, "confirm"),
    (BALANCED_RULE, 0.03, 0.5, 8, "confirm"),
)


def forecast_spec(curve: RunCurve, fields: dict[str, Any], progress: float, confidence: float, min_evaluations: int,
                  joined: str) -> StopSpec:
    forecast = {"horizon": int(curve.planned), "unit": "evaluations", "minGain": {"progress": progress},
                "confidence": confidence, "minEvaluations": min_evaluations, "confirmsPlateau": joined == "confirm"}
    combine = "any" if joined == "confirm" else joined
    return StopSpec.model_validate({"combine": combine, "metric": {"name": "val_loss", **fields, "forecast": forecast}})


def forecast_preset_spec(curve: RunCurve) -> StopSpec:
    """The `forecast` preset, the run's planned length as its horizon."""
    return StopSpec.model_validate({"preset": "forecast", "metric": {
        "name": "val_loss", "forecast": {"horizon": int(curve.planned), "unit": "evaluations"}}})


def forecast_family() -> Family:
    out: list[tuple[str, Policy]] = [("preset=forecast", policy_from_specs(forecast_preset_spec))]
    for setting in FORECAST_GRID:
        fields, progress, confidence, min_evaluations, joined = setting
        name = ",".join([f"{k}={v}" for k, v in fields.items()]
                        + [f"forecast.minGain.progress={progress:g}", f"confidence={confidence:g}",
                           f"minEvaluations={min_evaluations}"]
                        + ([] if joined == "any" else ["confirmsPlateau" if joined == "confirm" else f"combine={joined}"]))
        out.append((name, policy_from_specs(lambda curve, s=setting: forecast_spec(curve, *s))))
    return out


class CohortSession:
    """A sweep replayed through the engine's cohort rule: each run's best so far against its
    peers' best so far at the same step (a true median, evaluated at every step)."""

    def __init__(self, stop: StopSpec) -> None:
        self.stop = stop
        self.rule = resolve_metric_rule(stop)
        self.tracks: dict[int, Optional[MetricTrack]] = {}
        self.history: dict[int, tuple[list[int], list[float]]] = {}

    def start(self, run: int) -> None:
        self.tracks[run] = None
        self.history[run] = ([], [])

    def report(self, run: int, step: int, val_loss: float, train_loss: float) -> None:
        assert self.rule is not None
        current = track(self.tracks[run], self.rule, [Evaluation(step, val_loss)])
        self.tracks[run] = current
        steps, bests = self.history[run]
        if current.best is not None:
            steps.append(step)
            bests.append(current.best)

    def _best_at(self, run: int, step: int) -> Optional[float]:
        steps, bests = self.history[run]
        if not steps or steps[-1] < step:
            return None  # this peer has not reached the step
        i = bisect.bisect_right(steps, step) - 1
        return bests[i] if i >= 0 else None

    def should_stop(self, run: int, step: int) -> bool:
        peers = tuple(v for p in self.history if p != run and (v := self._best_at(p, step)) is not None)
        return decide(self.stop, Observation(metric=self.tracks[run], cohort=CohortView(step, peers))).would_stop

    def finish(self, run: int, last_step: int, stopped: bool) -> None:
        pass


def cohort_family() -> CohortFamily:
    out = []
    for min_jobs, start in ((2, 0), (3, 5), (5, 5), (5, 10)):
        stop = StopSpec.model_validate({"metric": {"name": "val_loss"}, "cohort": {
            "selector": {"matchLabels": {"sweep": "x"}}, "rule": "median", "minJobs": min_jobs, "startStep": start}})
        out.append((f"median,minJobs={min_jobs},startStep={start}", lambda stop=stop: CohortSession(stop)))
    return out


def register(register_family: Callable[[str, Family], None],
             register_cohort_family: Callable[[str, CohortFamily], None]) -> None:
    register_family("plateau-presets", preset_family())
    register_family("plateau-settings", settings_family())
    register_family("plateau-forecast", forecast_family())
    register_cohort_family("plateau-cohort-median", cohort_family())
