"""How much any choice from a preset's candidates could save: a ceiling, in hindsight.

  .venv/bin/python -m benchmarks.headroom          # all committed curves (calibrate's cache)

benchmarks.calibrate holds each task out in turn and gives it the candidate chosen on the other
tasks. However that choice is made, each task ends up with one of the preset's candidates. The
ceiling is the most that any such assignment saves, pooled over every run, at a mean regret
within the preset's budget: each task given its best candidate with hindsight of its own runs.

That is a multiple-choice knapsack. Its Lagrangian dual bounds it from above: for any λ >= 0,

  saved <= (1/n) * sum over tasks of max over candidates (saved - λ * regret) + λ * budget

where saved and regret are summed over the task's runs (weak duality: a feasible assignment's
term λ * (budget - its mean regret) is >= 0). The ceiling is the least bound over LAMBDAS, so
it is an upper bound whatever λs are tried. Beside it stands the best assignment those λs give
within the budget, which shows how tight the bound is. The p99 constraint is left out, which
can only raise the ceiling.

A goal above a preset's ceiling cannot be met by choosing better among its candidates: it needs
new candidates (a new rule, or a signal beyond val_loss). A preset far below its ceiling out of
sample fails to carry a choice from one task to another.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmarks import calibrate
from benchmarks.calibrate import CACHE, CONSTRAINTS, Table
from benchmarks.harness import PolicyResult, summarize

# The dual is convex and piecewise linear in λ (the share of a run saved that a point of regret
# is worth); a grid dense where the presets' budgets bind, and out to where regret no longer pays.
LAMBDAS = np.unique(np.concatenate([np.linspace(0.0, 0.5, 1001), np.linspace(0.5, 20.0, 391)]))


@dataclass(frozen=True)
class Ceiling:
    bound: float  # mean saved no assignment within the budget exceeds
    saved: float  # the best assignment found within the budget
    regret: float  # its mean regret
    assignment: tuple[int, ...]  # its column per task (the order of `by_task`)


NEVER = "never stop"  # the last column of by_task


def _tasks(table: Table) -> list[str]:
    return sorted({c.task for c in table.curves})


def by_task(table: Table, columns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per (task, column), tasks in name order: saved and regret summed over the task's runs;
    and a last column of zeros, never stopping (what calibrate gives where no candidate fits)."""
    tasks = np.array([c.task for c in table.curves])
    names = _tasks(table)
    saved = np.array([table.saved[tasks == t][:, columns].sum(axis=0) for t in names])
    regret = np.array([table.regret[tasks == t][:, columns].sum(axis=0) for t in names])
    never = np.zeros((len(names), 1))
    return np.hstack([saved, never]), np.hstack([regret, never])


def ceiling(saved: np.ndarray, regret: np.ndarray, runs: int, budget: float,
            lambdas: Sequence[float] = LAMBDAS) -> Ceiling:
    """The dual bound and the best assignment within the budget over `lambdas`, of
    per-(task, column) sums `saved` and `regret` over `runs` runs in all."""
    if saved.shape != regret.shape or saved.ndim != 2 or not saved.size or runs < 1:
        raise ValueError("saved and regret must be (tasks, columns) sums over at least one run")
    if min(lambdas) < 0:
        raise ValueError("every λ must be >= 0")
    rows = np.arange(saved.shape[0])
    bound = np.inf
    best: tuple[float, float, tuple[int, ...]] = (np.nan, np.nan, ())  # saved, regret, assignment
    for lam in lambdas:
        gain = saved - lam * regret
        pick = np.argmax(gain, axis=1)
        bound = min(bound, float(gain[rows, pick].sum()) / runs + lam * budget)
        got = float(saved[rows, pick].sum()) / runs, float(regret[rows, pick].sum()) / runs
        if got[1] <= budget + 1e-9 and (not best[2] or got[0] > best[0]):
            best = (*got, tuple(int(p) for p in pick))
    return Ceiling(bound, *best)


@dataclass(frozen=True)
class Row:
    label: str
    candidates: int
    budget: float
    out_of_sample: PolicyResult | None  # calibrate's leave-one-task-out choice, pooled
    at_budget: Ceiling
    at_reached: Ceiling | None  # at the mean regret out of sample reached, where over the budget
    per_task: tuple[tuple[str, str], ...]  # (task, setting) of the assignment attained at the budget


def rows(table: Table) -> list[Row]:
    """Each preset's ceiling beside its out-of-sample figures, and, at balanced's budget, the
    ceiling of every candidate of every preset together."""
    grid_of = np.array(table.grid_of)
    runs = len(table.curves)
    out = []
    for label, grids in [*((p, [g.name for g in calibrate.CANDIDATES[p]]) for p in CONSTRAINTS),
                         ("every candidate", sorted(set(table.grid_of)))]:
        preset = label if label in CONSTRAINTS else "balanced"
        budget = CONSTRAINTS[preset].mean_regret
        columns = np.flatnonzero(np.isin(grid_of, grids))
        saved, regret = by_task(table, columns)
        result = None
        if label in CONSTRAINTS:
            stops = calibrate.pooled_stops(table, calibrate.folds(table, preset, "tasks"))
            result = summarize(label, table.curves, [int(s) for s in stops])
        at_reached = None
        if result is not None and result.mean_regret > budget:
            at_reached = ceiling(saved, regret, runs, result.mean_regret)
        at_budget = ceiling(saved, regret, runs, budget)
        names = [*(table.settings[c] for c in columns), NEVER]
        per_task = tuple(zip(_tasks(table), (names[k] for k in at_budget.assignment)))
        out.append(Row(label, len(columns), budget, result, at_budget, at_reached, per_task))
    return out


def render(found: Sequence[Row]) -> str:
    lines = [f"{'candidates of':<16} {'settings':>8} {'budget':>6} | {'out of sample':>17} | "
             f"{'ceiling':>7} {'attained (regret)':>18} | {'ceiling at the regret out of sample reached':>42}"]
    for r in found:
        oos = f"{r.out_of_sample.mean_saved:.1%} at {r.out_of_sample.mean_regret:.2f}" if r.out_of_sample else "-"
        got = f"{r.at_budget.saved:.1%} ({r.at_budget.regret:.2f})"
        more = f"{r.at_reached.bound:.1%} at {r.out_of_sample.mean_regret:.2f}" if r.at_reached and r.out_of_sample else "-"
        lines.append(f"{r.label:<16} {r.candidates:>8,} {r.budget:>6.2f} | {oos:>17} | {r.at_budget.bound:>7.1%}"
                     f" {got:>18} | {more:>42}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--curves", type=Path, action="append", help="curves CSV (repeatable); default: all committed")
    parser.add_argument("--no-cache", action="store_true", help=f"recompute stop epochs (cache: {CACHE})")
    parser.add_argument("--per-task", choices=CONSTRAINTS, help="also print this preset's best candidate per task")
    args = parser.parse_args(argv)
    curves = calibrate.load_all(args.curves or calibrate.ALL_CURVES)
    table = calibrate.build_table(curves, calibrate.registered_grids(), None if args.no_cache else CACHE)
    print(f"{len(curves):,} runs; the ceiling is in hindsight, per task (see --help)\n")
    found = rows(table)
    print(render(found))
    if args.per_task:
        print(f"\n{args.per_task}'s ceiling, task by task (in hindsight):")
        print("\n".join(f"  {task:<24} {setting}" for task, setting in next(
            r.per_task for r in found if r.label == args.per_task)))
    print("\nlimits on the same runs, beside any candidates:")
    clairvoyant = summarize("clairvoyant", table.curves, [int(s) for s in table.clairvoyant])
    print(f"  clairvoyant (knows each run's score): {clairvoyant.mean_saved:.1%} at {clairvoyant.mean_regret:.2f}")
    for preset in ("conservative", "balanced", "aggressive"):
        budget = CONSTRAINTS[preset].mean_regret
        limit = calibrate.metric_clairvoyant(table.curves, budget)
        print(f"  metric clairvoyant within {budget:g} (knows the whole val_loss curve): "
              + (f"{limit.mean_saved:.1%} at {limit.mean_regret:.2f}" if limit else "none"))


if __name__ == "__main__":
    main()
