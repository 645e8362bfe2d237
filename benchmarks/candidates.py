"""The settings a preset may be chosen from, as grids of stop epochs: every (run, setting) pair
replayed through the engine. benchmarks.calibrate registers them by preset and scores them.
"""

from __future__ import annotations

import hashlib
import inspect
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from itertools import product
from typing import Any

import numpy as np

import plateau.api
import plateau.engine.curvefit
import plateau.engine.fold
import plateau.engine.forecast
import plateau.engine.presets
import plateau.engine.rules
from benchmarks.harness import Family, RunCurve
from plateau.api import MetricRule, StopSpec
from plateau.engine.fold import Evaluation, MetricTrack, track
from plateau.engine.rules import Observation, decide

PROCESSES = 2  # the rule grid's process pool (calibrate --processes); 1: in this process


@dataclass(frozen=True)
class Grid:
    """Named settings and a function giving their stop epochs: (runs, settings) ints."""

    name: str
    settings: tuple[str, ...]
    stops: Callable[[Sequence[RunCurve]], np.ndarray]
    values: tuple[dict[str, Any], ...] = ()  # per setting: the stop.metric fields, where it is a rule
    # Names the code behind `stops`: cached stop epochs are reused only under the same version.
    # None: never cached (a policy whose code may change under the same setting names).
    version: str | None = None


def policy_grid(name: str, family: Family, version: str | None = None) -> Grid:
    """Any per-run policies as a grid (each run replayed once per setting); cached only when
    given a `version` that changes whenever the policies' code does."""
    names = tuple(n for n, _ in family)

    def stops(curves: Sequence[RunCurve]) -> np.ndarray:
        return np.array([[policy(c) for _, policy in family] for c in curves], dtype=np.int64).reshape(len(curves), -1)

    return Grid(name, names, stops, version=version)


def _engine_version() -> str:
    """The source of the engine modules a rule grid's stops depend on."""
    digest = hashlib.sha256()
    for module in (plateau.api.base, plateau.api.workload, plateau.api.metricrule, plateau.api.stopspec,
                   plateau.api.status, plateau.api.models, plateau.engine.presets, plateau.engine.fold,
                   plateau.engine.rules, plateau.engine.forecast, plateau.engine.curvefit):
        digest.update(inspect.getsource(module).encode())
    return digest.hexdigest()[:16]


def rule_name(values: dict[str, Any]) -> str:
    delta = values.get("min_delta") or {}
    parts = [f"patience={values['patience']}", f"smoothing={values.get('smoothing', 0):g}"]
    parts += [f"minDelta.{k}={v:g}" for k, v in delta.items()]
    if values.get("patience_growth"):
        parts.append(f"patienceGrowth={values['patience_growth']:g}")
    return ",".join(parts + [f"warmup={values.get('warmup', 0)}"])


def _observations(curve: RunCurve, rule: MetricRule) -> Iterator[tuple[int, Observation]]:
    """The run's val_loss folded one evaluation at a time through the engine's `track`: what
    `decide` sees at each step."""
    state: MetricTrack | None = None
    for step, value in zip(curve.steps, curve.val_loss):
        state = track(state, rule, [Evaluation(int(step), float(value))])
        yield int(step), Observation(metric=state)


def _rule_stops(curve: RunCurve, specs: Sequence[StopSpec]) -> list[int]:
    """Stop epochs of specs that differ only in patience (ascending), through the engine's
    `track` and `decide`. track never reads patience, so one fold serves them all; and a
    larger patience never fires where a smaller one does not (patienceGrowth included: the
    effective patience is max(patience, ...)), so only the smallest patience still running
    is asked at a step (and the next ones when it fires)."""
    rule = specs[0].metric
    assert rule is not None
    stops = [curve.planned] * len(specs)
    pending = 0
    for step, obs in _observations(curve, rule):
        while pending < len(specs) and decide(specs[pending], obs).would_stop:
            stops[pending] = step
            pending += 1
        if pending == len(specs):
            break
    return stops


def _rule_block(args: tuple[Sequence[RunCurve], tuple[dict[str, Any], ...]]) -> np.ndarray:
    curves, values = args
    specs = [StopSpec.model_validate({"metric": {"name": "val_loss", **v}}) for v in values]
    return np.array([_rule_stops(c, specs) for c in curves], dtype=np.int64).reshape(len(curves), len(specs))


def rule_grid(
    name: str,
    patiences: Sequence[int],
    smoothings: Sequence[float],
    min_deltas: Sequence[dict[str, float]],
    warmups: Sequence[int],
    growths: Sequence[float] = (0.0,),
) -> Grid:
    """Every combination of Plateau's plateau-rule fields (the fields presets set)."""
    bases = [
        {"smoothing": s, **({"min_delta": d} if d else {}), **({"warmup": w} if w else {}),
         **({"patience_growth": g} if g else {})}
        for s, d, w, g in product(smoothings, min_deltas, warmups, growths)
    ]
    blocks = [tuple({"patience": p, **b} for p in sorted(patiences)) for b in bases]
    values = tuple(v for block in blocks for v in block)

    def stops(curves: Sequence[RunCurve]) -> np.ndarray:
        return _in_pool(_rule_block, curves, blocks)

    return Grid(name, tuple(rule_name(v) for v in values), stops, values, _engine_version())


def _in_pool(block_stops: Callable[[tuple[Sequence[RunCurve], tuple[dict[str, Any], ...]]], np.ndarray],
             curves: Sequence[RunCurve], blocks: Sequence[tuple[dict[str, Any], ...]]) -> np.ndarray:
    """block_stops over every (block of settings, share of the runs), PROCESSES at a time,
    put together as (runs, settings)."""
    shares = [list(curves[i::PROCESSES]) for i in range(PROCESSES)]  # interleaved: long runs spread
    jobs = [(share, block) for block in blocks for share in shares]
    if PROCESSES > 1:
        with ProcessPoolExecutor(PROCESSES) as pool:
            parts = list(pool.map(block_stops, jobs))
    else:
        parts = [block_stops(job) for job in jobs]
    out = np.empty((len(curves), sum(len(b) for b in blocks)), dtype=np.int64)
    column = 0
    for b, block in enumerate(blocks):
        for i in range(PROCESSES):
            out[i::PROCESSES, column:column + len(block)] = parts[b * PROCESSES + i]
        column += len(block)
    return out


PATIENCES = (4, 5, 6, 8, 10, 12, 15, 20, 25, 30, 40, 50)


def default_rule_grids() -> list[Grid]:
    """The plateau rule's fields around today's presets, and patienceGrowth (a patience that
    grows with the run, for long runs) on a coarser grid of the others."""
    return [
        rule_grid(
            "plateau-rule",
            patiences=PATIENCES,
            smoothings=(0.0, 0.3, 0.5, 0.6, 0.7, 0.8),
            min_deltas=(
                {}, {"relative": 0.001}, {"relative": 0.002}, {"relative": 0.005},
                {"progress": 0.01}, {"progress": 0.02}, {"progress": 0.03}, {"progress": 0.05},
            ),
            warmups=(0, 5),
        ),
        rule_grid(
            "plateau-rule-growth",
            patiences=PATIENCES,
            smoothings=(0.3, 0.5, 0.7),
            min_deltas=({}, {"progress": 0.02}, {"progress": 0.03}, {"progress": 0.05}),
            warmups=(0,),
            growths=(0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5),
        ),
    ]


# The forecast preset's candidates: a patient plateau rule (patienceGrowth) or the forecast,
# whichever fires first (combine: any), or a short plateau the forecast confirms
# (confirmsPlateau). The horizon is each run's planned length in evaluations, as a user states it.
FORECAST_FOLDS: tuple[dict[str, Any], ...] = (  # the fields `track` reads: one fold per run each
    {"smoothing": 0.6, "min_delta": {"progress": 0.03}},
    {"smoothing": 0.6, "min_delta": {"progress": 0.05}},
    {"smoothing": 0.7, "min_delta": {"progress": 0.03}},
)
FORECAST_PLATEAUS: tuple[tuple[int, float, bool], ...] = (  # patience, patienceGrowth, confirmsPlateau
    (8, 1.0, False), (8, 1.5, False), (8, 2.0, False), (10, 1.5, False), (12, 1.0, False), (12, 1.5, False),
    (16, 1.0, False), (6, 0.0, True), (8, 0.0, True),
)
FORECAST_GAINS = (0.01, 0.015, 0.02, 0.03)  # minGain.progress
FORECAST_CONFIDENCES = (0.5, 0.7)
FORECAST_MIN_EVALUATIONS = (8, 12, 16)

# The rule presets' forecast candidates: a plateau or a forecast that looks `lookahead` times the
# run so far ahead, so the user states no planned length. `lookahead` is read by `track` (the
# fit's end), so each one is a fold of its own.
LOOKAHEAD_FOLDS: tuple[dict[str, Any], ...] = tuple(
    {"smoothing": smoothing, "min_delta": {"progress": delta}, "lookahead": ahead}
    for ahead in (1.5, 2.0, 3.0, 4.0) for smoothing, delta in ((0.3, 0.03), (0.6, 0.03), (0.7, 0.03))
)
LOOKAHEAD_PLATEAUS: tuple[tuple[int, float, bool], ...] = (
    (8, 1.0, False), (8, 1.5, False), (12, 1.0, False), (12, 1.5, False), (16, 1.0, False), (20, 1.0, False),
    (25, 1.0, False), (30, 1.0, False), (40, 1.0, False),
)
LOOKAHEAD_GAINS = (0.01, 0.02, 0.03, 0.05)
LOOKAHEAD_CONFIDENCES = (0.5, 0.7)
LOOKAHEAD_MIN_EVALUATIONS = (12,)


def forecast_name(values: dict[str, Any]) -> str:
    ahead = values["forecast"]
    return ",".join([rule_name(values)]
                    + ([f"forecast.lookahead={ahead['lookahead']:g}"] if "lookahead" in ahead else [])
                    + [f"forecast.minGain.progress={ahead['min_gain']['progress']:g}",
                       f"confidence={ahead['confidence']:g}", f"minEvaluations={ahead['min_evaluations']}"]
                    + (["confirmsPlateau"] if ahead.get("confirms_plateau") else []))


def _forecast_stops(curve: RunCurve, specs: Sequence[StopSpec]) -> list[int]:
    """Stop epochs of specs that differ only in fields `track` never reads (patience,
    patienceGrowth, the forecast's thresholds), through the engine's `track` and `decide`: one
    fold per run serves them all, and each spec is asked at every step until it fires."""
    rule = specs[0].metric
    assert rule is not None
    stops = [curve.planned] * len(specs)
    pending = list(range(len(specs)))
    for step, obs in _observations(curve, rule):
        still = []
        for k in pending:
            if decide(specs[k], obs).would_stop:
                stops[k] = step
            else:
                still.append(k)
        pending = still
        if not pending:
            break
    return stops


def _fold_fields(spec: StopSpec) -> dict[str, Any]:
    rule = spec.metric
    assert rule is not None and rule.forecast is not None
    ahead = rule.forecast
    return {**rule.model_dump(exclude={"patience", "patience_growth", "forecast"}),
            "horizon": ahead.horizon, "lookahead": ahead.lookahead, "unit": ahead.unit}


def _planned(forecast: dict[str, Any], planned: int) -> dict[str, Any]:
    """The candidate's forecast as a user states it: the run's planned length as its horizon,
    unless it looks ahead by a multiple of the run so far."""
    if "lookahead" in forecast:
        return forecast
    return {**forecast, "horizon": planned, "unit": "evaluations"}


def _forecast_block(args: tuple[Sequence[RunCurve], tuple[dict[str, Any], ...]]) -> np.ndarray:
    curves, values = args
    by_horizon: dict[int, list[StopSpec]] = {}
    rows = []
    for c in curves:
        if c.planned not in by_horizon:  # runs of one planned length share their specs
            by_horizon[c.planned] = [StopSpec.model_validate({"metric": {
                "name": "val_loss", **v, "forecast": _planned(v["forecast"], c.planned)}}) for v in values]
            if any(_fold_fields(s) != _fold_fields(by_horizon[c.planned][0]) for s in by_horizon[c.planned]):
                raise ValueError("a forecast block's specs must share the fields track reads")
        rows.append(_forecast_stops(c, by_horizon[c.planned]))
    return np.array(rows, dtype=np.int64).reshape(len(curves), len(values))


def _plateau_or_forecast(
    name: str,
    folds: Sequence[dict[str, Any]],
    plateaus: Sequence[tuple[int, float, bool]],
    gains: Sequence[float],
    confidences: Sequence[float],
    min_evaluations: Sequence[int],
) -> Grid:
    """Every combination of a plateau and a forecast, per fold (a fold's `lookahead`, if any,
    goes into the forecast), replayed through the engine and cached under its source."""
    blocks = []
    for fold in folds:
        shared = {k: v for k, v in fold.items() if k != "lookahead"}
        ahead = {"lookahead": fold["lookahead"]} if "lookahead" in fold else {}
        blocks.append(tuple(
            {**shared, "patience": p, **({"patience_growth": g} if g else {}),
             "forecast": {**ahead, "min_gain": {"progress": gain}, "confidence": confidence,
                          "min_evaluations": least, **({"confirms_plateau": True} if confirms else {})}}
            for (p, g, confirms), gain, confidence, least in product(plateaus, gains, confidences, min_evaluations)))
    values = tuple(v for block in blocks for v in block)

    def stops(curves: Sequence[RunCurve]) -> np.ndarray:
        return _in_pool(_forecast_block, curves, blocks)

    return Grid(name, tuple(forecast_name(v) for v in values), stops, values, _engine_version())


def forecast_grid() -> Grid:
    """The forecast preset's candidates (FORECAST_*), with the run's planned length as horizon."""
    return _plateau_or_forecast("plateau-forecast", FORECAST_FOLDS, FORECAST_PLATEAUS, FORECAST_GAINS,
                                FORECAST_CONFIDENCES, FORECAST_MIN_EVALUATIONS)


def lookahead_grid() -> Grid:
    """The rule presets' forecast candidates (LOOKAHEAD_*): no planned length needed."""
    return _plateau_or_forecast("plateau-lookahead", LOOKAHEAD_FOLDS, LOOKAHEAD_PLATEAUS, LOOKAHEAD_GAINS,
                                LOOKAHEAD_CONFIDENCES, LOOKAHEAD_MIN_EVALUATIONS)
