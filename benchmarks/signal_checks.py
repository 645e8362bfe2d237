"""Two ways past the presets' ceiling, checked on the committed curves before either is built
into the engine (issue #16: a signal beyond val_loss, or a setting that adapts to the run).

    .venv/bin/python -m benchmarks.signal_checks   # 12 minutes when calibrate's cache is stale, else 1

- train_loss: a rule that stops once val_loss, smoothed, improves by less than `ratio` times
  what train_loss improved over the last `window` of the run (the model now fits its
  training data, not the task). Its settings are scored in sample, beside `balanced`'s
  out-of-sample figure: an in-sample score is an upper bound on what the rule would reach.
- a setting per run: a noise statistic of the first `--early` evaluations (median absolute
  second difference of val_loss over its progress so far) puts each run in a tercile, and
  each tercile takes its own `balanced` candidate, chosen like the preset (leave one task
  out, under balanced's constraint), beside the one setting calibrate chooses.
"""

from __future__ import annotations

import argparse
import itertools
from collections.abc import Sequence

import numpy as np

from benchmarks import calibrate
from benchmarks.calibrate import CACHE, CANDIDATES, CONSTRAINTS, Table
from benchmarks.harness import REGRET_BUDGET, RunCurve

GAP_GRID = list(itertools.product((0.0, 0.5, 0.7), (0.2, 0.3, 0.5), (0.0, 0.05, 0.1, 0.2, 0.3, 0.5), (8, 12, 20)))


def _smoothed(values: np.ndarray, smoothing: float) -> np.ndarray:
    out, level = np.empty_like(values), values[0]
    for i, value in enumerate(values):
        level = value if i == 0 else smoothing * level + (1 - smoothing) * value
        out[i] = level
    return out


def gap_stop(curve: RunCurve, smoothing: float, window: float, ratio: float, first: int) -> int:
    """The last epoch the train_loss rule lets the run consume (planned: never stopped)."""
    if not np.isfinite(curve.val_loss).all() or not np.isfinite(curve.train_loss).all():
        return curve.planned  # a diverged run: left to the divergence rule
    val, train = _smoothed(curve.val_loss, smoothing), _smoothed(curve.train_loss, smoothing)
    epoch = np.arange(curve.planned)
    back = np.maximum(3, (window * (epoch + 1)).astype(int))
    start = np.clip(epoch - back, 0, None)
    fired = (epoch + 1 >= first) & (epoch >= back) & (val[start] - val <= ratio * np.maximum(train[start] - train, 1e-12))
    hits = np.flatnonzero(fired)
    return int(hits[0]) + 1 if len(hits) else curve.planned


def gap_rows(table: Table) -> list[tuple[str, float, float, float]]:
    """(setting, mean saved, mean regret, p99 regret) in sample, best first, within 0.6 points."""
    stops = np.array([[gap_stop(c, *setting) for setting in GAP_GRID] for c in table.curves])
    saved, regret = calibrate.per_run(table.curves, stops)
    out = []
    for j, setting in enumerate(GAP_GRID):
        if regret[:, j].mean() <= 0.6:
            label = "smoothing={}, window={}, ratio={}, after {}".format(*setting)
            out.append((label, float(saved[:, j].mean()), float(regret[:, j].mean()), float(np.percentile(regret[:, j], 99))))
    return sorted(out, key=lambda row: -row[1])


def noise(curve: RunCurve, early: int) -> float:
    values = curve.val_loss[:early]
    values = values[np.isfinite(values)]
    if len(values) < 5:
        return np.inf
    return float(np.median(np.abs(np.diff(values, 2))) / (abs(values[0] - values.min()) + 1e-12))


def per_tercile(table: Table, early: int) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
    """Out of sample, pooled: (saved, mean regret, p99) with a balanced candidate per tercile of
    the noise statistic, and with calibrate's one setting; both chosen without the held-out task."""
    constraint = CONSTRAINTS["balanced"]
    grids = {g.name for g in CANDIDATES["balanced"]}
    tasks = np.array([c.task for c in table.curves])
    statistic = np.array([noise(c, early) for c in table.curves])
    rows = np.arange(len(tasks))
    per, one = np.full(len(tasks), -1), np.full(len(tasks), -1)  # -1: no candidate fits, never stopped
    for task in sorted(set(tasks)):
        held, rest = tasks == task, tasks != task
        tercile = np.searchsorted(np.quantile(statistic[rest], [1 / 3, 2 / 3]), statistic)
        for k in range(3):
            column = calibrate.choose(table, np.flatnonzero(rest & (tercile == k)), constraint, grids)
            per[held & (tercile == k)] = -1 if column is None else column
        column = calibrate.choose(table, np.flatnonzero(rest), constraint, grids)
        one[held] = -1 if column is None else column

    def pooled(columns: np.ndarray) -> tuple[float, float, float]:
        saved = np.where(columns < 0, 0.0, table.saved[rows, columns])
        regret = np.where(columns < 0, 0.0, table.regret[rows, columns])
        return float(saved.mean()), float(regret.mean()), float(np.percentile(regret, 99))

    return pooled(per), pooled(one)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--early", type=int, default=10, help="evaluations the noise statistic reads")
    args = parser.parse_args(argv)
    curves = calibrate.load_all(calibrate.ALL_CURVES)
    table = calibrate.build_table(curves, calibrate.registered_grids(), CACHE)
    print(f"{len(curves):,} runs\n\ntrain_loss rule, in sample (an upper bound on it out of sample), "
          f"its best settings within {REGRET_BUDGET:g} points of mean regret:")
    for label, saved, regret, p99 in [r for r in gap_rows(table) if r[2] <= REGRET_BUDGET][:5]:
        print(f"  {label:<48} {saved:.1%} saved, mean regret {regret:.2f}, p99 {p99:.2f}")
    (t_saved, t_regret, t_p99), (o_saved, o_regret, o_p99) = per_tercile(table, args.early)
    print(f"\nbalanced, out of sample (leave one task out):\n"
          f"  one setting (calibrate's choice)        {o_saved:.1%} saved, mean regret {o_regret:.2f}, p99 {o_p99:.2f}\n"
          f"  a setting per noise tercile (first {args.early}) {t_saved:.1%} saved, mean regret {t_regret:.2f}, p99 {t_p99:.2f}")


if __name__ == "__main__":
    main()
