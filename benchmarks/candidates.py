"""The settings a preset may be chosen from, as grids of stop epochs: every (run, setting) pair
replayed through the engine. benchmarks.calibrate registers them by preset and scores them.
"""

from __future__ import annotations

import hashlib
import inspect
from collections.abc import Callable, Sequence
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
from benchmarks import plateau_policies
from benchmarks.harness import Family, RunCurve
from plateau.api import StopSpec
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
    for module in (plateau.api.models, plateau.engine.presets, plateau.engine.fold, plateau.engine.rules,
                   plateau.engine.forecast, plateau.engine.curvefit):
        digest.update(inspect.getsource(module).encode())
    return digest.hexdigest()[:16]


def rule_name(values: dict[str, Any]) -> str:
    delta = values.get("min_delta") or {}
    parts = [f"patience={values['patience']}", f"smoothing={values.get('smoothing', 0):g}"]
    parts += [f"minDelta.{k}={v:g}" for k, v in delta.items()]
    if values.get("patience_growth"):
        parts.append(f"patienceGrowth={values['patience_growth']:g}")
    return ",".join(parts + [f"warmup={values.get('warmup', 0)}"])


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
    state: MetricTrack | None = None
    for step, value in zip(curve.steps, curve.val_loss):
        state = track(state, rule, [Evaluation(int(step), float(value))])
        obs = Observation(metric=state)
        while pending < len(specs) and decide(specs[pending], obs).would_stop:
            stops[pending] = int(step)
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
        jobs = [(curves, block) for block in blocks]
        if PROCESSES > 1:
            with ProcessPoolExecutor(PROCESSES) as pool:
                parts = list(pool.map(_rule_block, jobs))
        else:
            parts = [_rule_block(job) for job in jobs]
        return np.concatenate(parts, axis=1)

    return Grid(name, tuple(rule_name(v) for v in values), stops, values, _engine_version())


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


def forecast_grid() -> Grid:
    """The forecast rule's candidates, replayed through the engine (cached under the engine's
    and the candidates' source)."""
    source = hashlib.sha256(inspect.getsource(plateau_policies).encode()).hexdigest()[:16]
    return policy_grid("plateau-forecast", plateau_policies.forecast_family(), version=f"{_engine_version()}:{source}")
