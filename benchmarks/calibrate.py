"""Choose the presets' rule settings by leave-one-task-out cross-validation.

  .venv/bin/python -m benchmarks.calibrate --folds tasks          # all committed curves
  .venv/bin/python -m benchmarks.calibrate --folds tasks --json

Calibration picks, from every candidate registered for a preset, the setting that saves the
most epochs (mean over runs) subject to the preset's constraint, measured on the calibration
runs only:

  conservative  mean regret <= 0.25 points, p99 regret <= Keras EarlyStopping(patience=10)'s
  balanced      mean regret <= 0.5 points,  p99 regret <= Keras EarlyStopping(patience=10)'s
  aggressive    mean regret <= 1.0 point,   p99 regret <= Keras EarlyStopping(patience=5)'s
  forecast      as balanced, chosen from the forecast rule's candidates (candidates.forecast_grid:
                a patient plateau or the forecast, or a plateau the forecast confirms; the
                user states the run's planned length, its horizon)

(Keras with min_delta=0, on the same calibration runs.) With --folds tasks each task in turn
is held out: the preset is calibrated on every other task's runs and scored on the held-out
task's, so every run is scored by a setting chosen without it. The out-of-sample figures pool
those held-out scores; in-sample figures calibrate and score on all runs.

Two limits, in hindsight, stand beside them: the clairvoyant knows each run's score and stops
within 0.5 points of its end; the metric clairvoyant knows the whole val_loss curve (what the
rules watch) but not the score, and saves the most it can within balanced's mean regret.

Candidates are pluggable: register_candidates(preset, Grid) adds a grid, e.g. forecast-based
settings, to a preset's choice. A Grid gives the stop epoch of every (run, setting) pair;
benchmarks.candidates has the grids: `policy_grid` wraps any per-run policies, `rule_grid` is
the engine's plateau rule, `lookahead_grid` a plateau or a forecast that looks a multiple of the
run so far ahead (the three rule presets choose from these), and `forecast_grid` the forecast
preset's, to each run's planned length.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import candidates
from benchmarks.baselines import keras_early_stopping
from benchmarks.candidates import Grid
from benchmarks.harness import (
    PolicyResult,
    RunCurve,
    clairvoyant_stop,
    load_curves,
    metric_clairvoyant_stop,
    points_by_stop,
    regret,
    s_at,
    summarize,
)

DATA = Path(__file__).resolve().parent / "data"
ALL_CURVES = (DATA / "curves.csv.gz", DATA / "curves-holdout.csv.gz", DATA / "curves-shapes.csv.gz")
CACHE = Path(__file__).resolve().parent / ".cache"
MAX_RUNS = 20_000  # bounds a stop matrix (runs x settings ints) read from the cache or computed


@dataclass(frozen=True)
class Constraint:
    mean_regret: float  # points
    keras_patience: int  # p99 regret must not exceed Keras EarlyStopping(patience=this)'s


CONSTRAINTS: dict[str, Constraint] = {
    "conservative": Constraint(0.25, 10),
    "balanced": Constraint(0.5, 10),
    "aggressive": Constraint(1.0, 5),
    "forecast": Constraint(0.5, 10),
}
RULE_PRESETS = ("conservative", "balanced", "aggressive")  # need no horizon: plateau and lookahead grids


# --- candidates by preset ---------------------------------------------------------------


CANDIDATES: dict[str, list[Grid]] = {preset: [] for preset in CONSTRAINTS}


def register_candidates(preset: str, grid: Grid) -> None:
    """Let `preset` be chosen from `grid`'s settings too (setting names must stay unique)."""
    if preset not in CANDIDATES:
        raise ValueError(f"unknown preset {preset!r}; presets: {', '.join(CANDIDATES)}")
    taken = {s for g in CANDIDATES[preset] for s in g.settings}
    if taken & set(grid.settings) or any(g.name == grid.name for g in CANDIDATES[preset]):
        raise ValueError(f"grid {grid.name!r} repeats a registered grid or setting of {preset!r}")
    CANDIDATES[preset].append(grid)


_DEFAULTS = [*candidates.default_rule_grids(), candidates.lookahead_grid()]
for _preset in RULE_PRESETS:
    for _grid in _DEFAULTS:
        register_candidates(_preset, _grid)
register_candidates("forecast", candidates.forecast_grid())


def registered_grids() -> list[Grid]:
    """Every grid some preset may choose from, once each."""
    return list({id(g): g for grids in CANDIDATES.values() for g in grids}.values())


# --- scoring ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Table:
    """Per-run saved and regret of every setting, and the references, on a fixed run list."""

    curves: tuple[RunCurve, ...]
    settings: tuple[str, ...]
    grid_of: tuple[str, ...]  # per setting: the grid it comes from
    values: tuple[dict[str, Any] | None, ...]
    stops: np.ndarray  # (runs, settings)
    saved: np.ndarray  # (runs, settings)
    regret: np.ndarray  # (runs, settings)
    keras: dict[int, np.ndarray]  # patience -> per-run regret
    clairvoyant: np.ndarray  # per-run stop


def per_run(curves: Sequence[RunCurve], stops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """harness.saved and harness.regret of every (run, setting), a run's points read once."""
    got_saved = np.empty(stops.shape)
    got_regret = np.empty(stops.shape)
    for i, c in enumerate(curves):
        if not ((1 <= stops[i]) & (stops[i] <= c.planned)).all():
            raise ValueError(f"run {c.run} of {c.task}: a stop outside 1..{c.planned}")
        by_stop = points_by_stop(c)
        got_saved[i] = 1.0 - stops[i] / c.planned
        got_regret[i] = np.maximum(0.0, by_stop[-1] - by_stop[stops[i] - 1])
    return got_saved, got_regret


def _cached_stops(grid: Grid, curves: Sequence[RunCurve], cache: Path | None) -> np.ndarray:
    """grid.stops(curves), kept on disk under a key of the curves' content and the settings."""
    if cache is None or grid.version is None:
        return grid.stops(curves)
    digest = hashlib.sha256()
    for c in curves:
        digest.update(f"{c.task}|{c.cohort}|{c.run}|".encode())
        digest.update(np.ascontiguousarray(c.val_loss).tobytes())
        if c.lr is not None:
            digest.update(np.ascontiguousarray(c.lr).tobytes())
    digest.update("\n".join((grid.version, *grid.settings)).encode())
    path = cache / f"{grid.name}-{digest.hexdigest()[:20]}.npy"
    if path.exists():
        got = np.load(path, allow_pickle=False)
        if got.shape == (len(curves), len(grid.settings)):
            return got
    got = grid.stops(curves)
    cache.mkdir(parents=True, exist_ok=True)
    np.save(path, got, allow_pickle=False)
    return got


def build_table(curves: Sequence[RunCurve], grids: Sequence[Grid], cache: Path | None = None) -> Table:
    if len(curves) > MAX_RUNS:
        raise ValueError(f"{len(curves)} runs; at most {MAX_RUNS}")
    if len({g.name for g in grids}) != len(grids):
        raise ValueError("two grids share a name")
    for g in grids:
        if len(set(g.settings)) != len(g.settings):
            raise ValueError(f"grid {g.name!r} repeats a setting name")
    stops = np.concatenate([_cached_stops(g, curves, cache) for g in grids], axis=1)
    got_saved, got_regret = per_run(curves, stops)
    keras = {}
    for patience in sorted({c.keras_patience for c in CONSTRAINTS.values()}):
        policy = keras_early_stopping(patience)
        keras[patience] = np.array([regret(c, policy(c)) for c in curves])
    values = tuple(v for g in grids for v in (g.values or (None,) * len(g.settings)))
    return Table(
        curves=tuple(curves),
        settings=tuple(s for g in grids for s in g.settings),
        grid_of=tuple(g.name for g in grids for _ in g.settings),
        values=values,
        stops=stops,
        saved=got_saved,
        regret=got_regret,
        keras=keras,
        clairvoyant=np.array([clairvoyant_stop(c) for c in curves]),
    )


def choose(table: Table, rows: np.ndarray, constraint: Constraint, grids: set[str]) -> int | None:
    """The setting (column) of `grids` saving most on `rows` within the constraint; ties: the first."""
    if not len(rows):
        return None  # nothing to calibrate on
    regrets = table.regret[rows]
    mean_regret = regrets.mean(axis=0)
    p99 = np.percentile(regrets, 99, axis=0)
    limit = float(np.percentile(table.keras[constraint.keras_patience][rows], 99))
    ok = (mean_regret <= constraint.mean_regret + 1e-9) & (p99 <= limit + 1e-9)  # 1e-9: float noise
    ok &= np.isin(np.array(table.grid_of), list(grids))
    if not ok.any():
        return None
    mean_saved = np.where(ok, table.saved[rows].mean(axis=0), -np.inf)
    return int(np.argmax(mean_saved))


@dataclass(frozen=True)
class Fold:
    held_out: str  # a task name, or "" for the in-sample calibration on every task
    calibration_tasks: tuple[str, ...]
    setting: str | None
    held_out_result: PolicyResult | None  # the chosen setting on the held-out runs
    clairvoyant: PolicyResult


def folds(table: Table, preset: str, by: str = "tasks") -> list[Fold]:
    """Leave one task out ("tasks"), or calibrate and score on everything ("none")."""
    constraint = CONSTRAINTS[preset]
    tasks = np.array([c.task for c in table.curves])
    names = sorted(set(tasks)) if by == "tasks" else [""]
    out = []
    for name in names:
        test = tasks == name if name else np.ones(len(tasks), dtype=bool)
        calibration = ~test if name else test
        column = choose(table, np.flatnonzero(calibration), constraint, {g.name for g in CANDIDATES[preset]})
        curves = [c for c, t in zip(table.curves, test) if t]
        result = None
        if column is not None:
            result = summarize(table.settings[column], curves, [int(s) for s in table.stops[test, column]])
        out.append(
            Fold(
                held_out=name,
                calibration_tasks=tuple(sorted(set(tasks[calibration]))),
                setting=None if column is None else table.settings[column],
                held_out_result=result,
                clairvoyant=summarize("clairvoyant", curves, [int(s) for s in table.clairvoyant[test]]),
            )
        )
    return out


def pooled_stops(table: Table, fold_list: Sequence[Fold]) -> np.ndarray:
    """Each run's stop under the setting its own fold chose (the planned end where none fit)."""
    tasks = np.array([c.task for c in table.curves])
    stops = np.array([c.planned for c in table.curves])
    index = {s: i for i, s in enumerate(table.settings)}
    for f in fold_list:
        rows = tasks == f.held_out if f.held_out else np.ones(len(tasks), dtype=bool)
        if f.setting is not None:
            stops[rows] = table.stops[rows, index[f.setting]]
    return stops


def breakdown(table: Table, stops: np.ndarray, key: Callable[[RunCurve], str]) -> list[dict[str, Any]]:
    """Per group (and "all"): the policy's summary and the clairvoyant's on the same runs."""
    groups: dict[str, list[int]] = {"all": list(range(len(table.curves)))}
    for i, c in enumerate(table.curves):
        groups.setdefault(key(c), []).append(i)
    rows = []
    for name, idx in groups.items():
        curves = [table.curves[i] for i in idx]
        rows.append({
            "group": name,
            "result": asdict(summarize(name, curves, [int(stops[i]) for i in idx])),
            "clairvoyant": asdict(summarize(name, curves, [int(table.clairvoyant[i]) for i in idx])),
        })
    return rows


METRIC_TOLERANCES = (0.002, 0.005, 0.0075, 0.01, 0.0125, 0.015, 0.0175, 0.02, 0.03, 0.05)


def metric_clairvoyant(curves: Sequence[RunCurve], mean_regret: float) -> PolicyResult | None:
    """harness.metric_clairvoyant_stop at the tolerance (of METRIC_TOLERANCES) that saves the
    most within `mean_regret` on all runs: what perfect foresight of val_loss alone can save at
    that regret, a limit for every rule that watches it."""
    return s_at([summarize(f"metric clairvoyant, tolerance={t:g}", curves,
                           [metric_clairvoyant_stop(c, t) for c in curves]) for t in METRIC_TOLERANCES], mean_regret)


def cross_validate(table: Table, by: str = "tasks") -> dict[str, Any]:
    """Every preset: its folds, the pooled out-of-sample figures per family, and the in-sample
    (all-task) calibration with its figures; and the two limits on all runs."""
    limit = metric_clairvoyant(table.curves, CONSTRAINTS["balanced"].mean_regret)
    report: dict[str, Any] = {
        "runs": len(table.curves), "settings": len(table.settings), "presets": {},
        "limits": {"clairvoyant": asdict(summarize("clairvoyant", table.curves, [int(s) for s in table.clairvoyant])),
                   "metric_clairvoyant": limit and asdict(limit)},
    }
    for preset in CONSTRAINTS:
        cv = folds(table, preset, by)
        whole = folds(table, preset, "none")[0]
        chosen = table.settings.index(whole.setting) if whole.setting is not None else None
        spreads = [f.held_out_result for f in cv if f.held_out_result is not None]
        report["presets"][preset] = {
            "constraint": asdict(CONSTRAINTS[preset]),
            "folds": [
                {"held_out": f.held_out, "setting": f.setting, "calibration_tasks": len(f.calibration_tasks),
                 "result": f.held_out_result and asdict(f.held_out_result), "clairvoyant": asdict(f.clairvoyant)}
                for f in cv
            ],
            "spread": {
                k: [float(np.min(v)), float(np.median(v)), float(np.max(v))]
                for k, v in (("mean_saved", [r.mean_saved for r in spreads]),
                             ("mean_regret", [r.mean_regret for r in spreads]))
            } if spreads else {},
            "out_of_sample": breakdown(table, pooled_stops(table, cv), lambda c: c.family),
            "chosen": whole.setting,
            "values": None if chosen is None else table.values[chosen],
            "in_sample": breakdown(table, pooled_stops(table, [whole]), lambda c: c.family),
        }
    return report


# --- output -------------------------------------------------------------------------------


def _pct(x: float) -> str:
    return f"{x:.1%}"


def render(report: dict[str, Any]) -> str:
    out = [f"{report['runs']} runs, {report['settings']} candidate settings", "limits on all runs (hindsight, not policies):"]
    for name, what in (("clairvoyant", "knows the score: stops within 0.5 pt of the run's end"),
                       ("metric_clairvoyant", "knows the whole val_loss curve, not the score")):
        r = report["limits"][name]
        out.append(f"  {name:<19} {_pct(r['mean_saved']):>6} saved, mean regret {r['mean_regret']:.2f}, p99"
                   f" {r['p99_regret']:.2f} ({what}{'; ' + r['setting'] if name != 'clairvoyant' else ''})"
                   if r else f"  {name:<19} none within the bound")
    for preset, p in report["presets"].items():
        c = p["constraint"]
        out += ["", f"== {preset}: max mean saved s.t. mean regret <= {c['mean_regret']:g} pt and p99 <="
                    f" Keras patience={c['keras_patience']}'s p99 (on the calibration runs)"]
        out.append(f"{'held-out task':<20} {'chosen on the other tasks':<74} {'saved':>6} {'regret':>6} {'p99':>6}"
                   f" {'>1pt':>6} | {'clairv.':>7}")
        for f in p["folds"]:
            r = f["result"]
            figures = (f"{_pct(r['mean_saved']):>6} {r['mean_regret']:>6.2f} {r['p99_regret']:>6.2f}"
                       f" {_pct(r['share_regret_gt1']):>6}") if r else f"{'-':>6} {'-':>6} {'-':>6} {'-':>6}"
            out.append(f"{f['held_out']:<20} {f['setting'] or '(none fits)':<74} {figures} |"
                       f" {_pct(f['clairvoyant']['mean_saved']):>7}")
        if p["spread"]:
            s, g = p["spread"]["mean_saved"], p["spread"]["mean_regret"]
            out.append(f"spread across folds (min / median / max): saved {_pct(s[0])} / {_pct(s[1])} / {_pct(s[2])};"
                       f" mean regret {g[0]:.2f} / {g[1]:.2f} / {g[2]:.2f}")
        for label, key in (("OUT OF SAMPLE (each task scored by the setting chosen without it)", "out_of_sample"),
                           (f"IN SAMPLE (calibrated and scored on all runs: {p['chosen']})", "in_sample")):
            out += [f"{label}", f"  {'family':<14} {'runs':>5} {'saved':>6} {'regret':>6} {'p99':>6} {'>1pt':>6}"
                                f" | {'clairvoyant saved':>17} {'regret':>6} {'p99':>6}"]
            for row in p[key]:
                r, k = row["result"], row["clairvoyant"]
                out.append(f"  {row['group']:<14} {r['n_runs']:>5} {_pct(r['mean_saved']):>6} {r['mean_regret']:>6.2f}"
                           f" {r['p99_regret']:>6.2f} {_pct(r['share_regret_gt1']):>6} | {_pct(k['mean_saved']):>17}"
                           f" {k['mean_regret']:>6.2f} {k['p99_regret']:>6.2f}")
        out.append(f"presets.py values for {preset}: {p['values']}")
    return "\n".join(out)


def load_all(paths: Sequence[Path]) -> list[RunCurve]:
    curves: list[RunCurve] = []
    for path in paths:
        curves += load_curves(path)
    return curves


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--curves", type=Path, action="append", help="curves CSV (repeatable); default: all committed")
    parser.add_argument("--folds", choices=("tasks", "none"), default="tasks",
                        help="tasks: leave one task out; none: in-sample only")
    parser.add_argument("--processes", type=int, default=2, help="process pool for the rule grid (1: none)")
    parser.add_argument("--no-cache", action="store_true", help=f"recompute stop epochs (cache: {CACHE})")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if not 1 <= args.processes <= 8:
        parser.error("--processes must be 1..8")
    candidates.PROCESSES = args.processes
    started = time.perf_counter()
    curves = load_all(args.curves or ALL_CURVES)
    table = build_table(curves, registered_grids(), None if args.no_cache else CACHE)
    report = cross_validate(table, args.folds)
    report["seconds"] = round(time.perf_counter() - started, 1)
    if args.json:
        json.dump(report, sys.stdout, indent=1)
        print()
    else:
        print(render(report))
        print(f"\n({report['seconds']}s)")


if __name__ == "__main__":
    main()
