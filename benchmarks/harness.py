"""Evaluation machinery for the stopping-quality benchmark.

Curves come from benchmarks/generate_curves.py. A *policy* decides, for one run,
the last epoch it lets the run consume; a *cohort policy* decides epoch by epoch
inside a hyperparameter sweep, seeing what its peers have reported so far.

Definitions (all scores in points: score floored at 0, times 100):

  checkpoint(stop)  restore-best: the epoch with the lowest finite val_loss among
                    epochs <= stop (ties: the earliest); None when there is none.
  points(stop)      the score at checkpoint(stop), or 0 when there is no checkpoint.
  saved             1 - stop / planned.
  regret            max(0, points(planned) - points(stop)): what stopping lost
                    against the same run trained to the end; no credit for luck.
  S@0.5             within a family of settings, the largest mean saved among the
                    settings whose mean regret is <= 0.5 points.

Cohort view: a cohort is replayed with W workers in file order. Runs start in waves
of W; inside a wave the runs advance in lockstep, and at every epoch all running
runs report before any is asked whether to stop, so a run at epoch e sees peers'
epoch-e values from finished runs and from its wave. The sweep's result is the run
whose kept checkpoint has the lowest val_loss; its regret is measured against the
sweep with every run trained to the end, under one of two semantics:

  keep-best    a stopped run keeps its restore-best checkpoint and can still win.
  pruned-lost  Optuna's semantics: a run stopped before its planned end is pruned,
               its checkpoint is lost, and it cannot win.
"""

from __future__ import annotations

import csv
import gzip
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol, TypeVar

import numpy as np

DEFAULT_CURVES = Path(__file__).resolve().parent / "data" / "curves.csv.gz"
REGRET_BUDGET = 0.5  # points; the S@0.5 threshold
BIG_REGRET = 1.0  # points; "share of runs with regret > 1 point"
CONSTANT_LR = "constant-lr"  # the family of files without a family column (generate_curves)


@dataclass(frozen=True, eq=False)
class RunCurve:
    run: int
    task: str
    cohort: str
    steps: np.ndarray  # 1..planned
    val_loss: np.ndarray  # NaN/inf where the run diverged
    score: np.ndarray  # 0-1 (R^2 may be negative); NaN where diverged
    train_loss: np.ndarray
    family: str = CONSTANT_LR  # the kind of training (generate_shapes' families)
    lr: np.ndarray | None = None  # learning rate per evaluation, where the file records it

    @property
    def planned(self) -> int:
        return len(self.steps)


def load_curves(path: Path | str = DEFAULT_CURVES, limit: int | None = None) -> list[RunCurve]:
    """Read a curves CSV (gzip if it ends in .gz); limit keeps the first `limit` runs.

    Files from generate_curves have no family or lr column: their runs are CONSTANT_LR and
    carry no lr. Files from generate_shapes have both."""
    opener = gzip.open if str(path).endswith(".gz") else open
    columns: dict[int, tuple[str, str, str, list[tuple[float, ...]]]] = {}
    with opener(path, "rt", newline="") as fh:
        reader = csv.DictReader(fh)
        has_lr = "lr" in (reader.fieldnames or ())
        for row in reader:
            run = int(row["run"])
            if run not in columns:
                if limit is not None and len(columns) == limit:
                    break  # rows are ordered by run
                columns[run] = (row["task"], row["cohort"], row.get("family") or CONSTANT_LR, [])
            values = (int(row["step"]), float(row["val_loss"]), float(row["score"]), float(row["train_loss"]))
            columns[run][3].append(values + ((float(row["lr"]),) if has_lr else ()))
    curves = []
    for run, (task, cohort, family, rows) in columns.items():
        table = np.array(rows, dtype=float)
        steps = table[:, 0].astype(int)
        if not np.array_equal(steps, np.arange(1, len(steps) + 1)):
            raise ValueError(f"run {run}: steps must be 1..N in order")
        lr = table[:, 4] if has_lr else None
        curves.append(RunCurve(run, task, cohort, steps, table[:, 1], table[:, 2], table[:, 3], family, lr))
    return curves


# --- per-run definitions -------------------------------------------------------

Policy = Callable[[RunCurve], int]  # returns the last epoch consumed (planned = never stopped)
Family = Sequence[tuple[str, Policy]]


def checkpoint(curve: RunCurve, stop: int) -> int | None:
    """0-based index of the restore-best epoch among the first `stop` epochs."""
    seen = curve.val_loss[:stop]
    finite = np.isfinite(seen)
    if not finite.any():
        return None
    return int(np.argmin(np.where(finite, seen, np.inf)))


def points(curve: RunCurve, stop: int) -> float:
    idx = checkpoint(curve, stop)
    if idx is None:
        return 0.0
    score = curve.score[idx]
    return 100.0 * max(float(score), 0.0) if math.isfinite(score) else 0.0


def regret(curve: RunCurve, stop: int) -> float:
    return max(0.0, points(curve, curve.planned) - points(curve, stop))


def saved(curve: RunCurve, stop: int) -> float:
    return 1.0 - stop / curve.planned


def checked_stop(curve: RunCurve, stop: int, setting: str) -> int:
    if not 1 <= stop <= curve.planned:
        raise ValueError(f"{setting}: stop {stop} outside 1..{curve.planned} for run {curve.run}")
    return int(stop)


@dataclass(frozen=True)
class PolicyResult:
    setting: str
    mean_saved: float
    mean_regret: float
    p99_regret: float  # numpy's default (linear) percentile
    share_regret_gt1: float
    n_runs: int


def summarize(setting: str, curves: Sequence[RunCurve], stops: Sequence[int]) -> PolicyResult:
    regrets = np.array([regret(c, s) for c, s in zip(curves, stops)])
    return PolicyResult(
        setting=setting,
        mean_saved=float(np.mean([saved(c, s) for c, s in zip(curves, stops)])),
        mean_regret=float(regrets.mean()),
        p99_regret=float(np.percentile(regrets, 99)),
        share_regret_gt1=float((regrets > BIG_REGRET).mean()),
        n_runs=len(curves),
    )


def evaluate_policy(curves: Sequence[RunCurve], setting: str, policy: Policy) -> PolicyResult:
    return summarize(setting, curves, [checked_stop(c, policy(c), setting) for c in curves])


def evaluate_family(curves: Sequence[RunCurve], family: Family) -> list[PolicyResult]:
    return [evaluate_policy(curves, name, policy) for name, policy in family]


class HasSavedRegret(Protocol):
    @property
    def mean_saved(self) -> float: ...
    @property
    def mean_regret(self) -> float: ...


R = TypeVar("R", bound=HasSavedRegret)


def s_at(results: Iterable[R], budget: float = REGRET_BUDGET) -> R | None:
    """The setting with the largest mean saved among those with mean regret <= budget
    (ties: the first listed). 1e-9 absorbs float noise: scores carry 6 digits, so a
    mean regret of exactly 0.5 can sum to 0.5000000000001."""
    eligible = [r for r in results if r.mean_regret <= budget + 1e-9]
    return max(eligible, key=lambda r: r.mean_saved, default=None)


def clairvoyant_stop(curve: RunCurve, tolerance: float = REGRET_BUDGET) -> int:
    """Reference, not a policy one could run: the earliest epoch whose restore-best
    score is within `tolerance` points of the run trained to the end."""
    by_stop = points_by_stop(curve)
    return int(np.argmax(by_stop[-1] - by_stop <= tolerance)) + 1  # true at the last epoch


def metric_clairvoyant_stop(curve: RunCurve, tolerance: float) -> int:
    """Reference for rules that watch val_loss alone: one that knows the whole val_loss curve
    in advance (but not the score) and stops at the earliest epoch whose best val_loss is
    within `tolerance` x the run's whole progress (first finite value to final best) of the
    final best. What it loses in score is what even perfect foresight of the metric costs."""
    finite = np.isfinite(curve.val_loss)
    if not finite.any():
        return 1
    best = np.minimum.accumulate(np.where(finite, curve.val_loss, np.inf))
    final = best[-1]
    span = max(float(curve.val_loss[finite][0] - final), 0.0)
    return int(np.argmax(best - final <= tolerance * span)) + 1  # true at the last epoch


def points_by_stop(curve: RunCurve) -> np.ndarray:
    """points(curve, stop) for stop = 1..planned in one pass (same tie rule as argmin)."""
    out = np.empty(curve.planned)
    best, current = math.inf, 0.0
    for i, (loss, score) in enumerate(zip(curve.val_loss, curve.score)):
        if math.isfinite(loss) and loss < best:
            best = loss
            current = 100.0 * max(float(score), 0.0) if math.isfinite(score) else 0.0
        out[i] = current
    return out


# --- cohort view ----------------------------------------------------------------


class CohortSession(Protocol):
    """One sweep's stopping logic, fed strictly in time order by `replay_cohort`.

    Runs are identified by RunCurve.run; no call reveals a value before its epoch.
    """

    def start(self, run: int) -> None: ...
    def report(self, run: int, step: int, val_loss: float, train_loss: float) -> None: ...
    def should_stop(self, run: int, step: int) -> bool: ...
    def finish(self, run: int, last_step: int, stopped: bool) -> None: ...


CohortPolicy = Callable[[], CohortSession]  # a fresh session per cohort
CohortFamily = Sequence[tuple[str, CohortPolicy]]
Semantics = Literal["keep-best", "pruned-lost"]
SEMANTICS: tuple[Semantics, ...] = ("keep-best", "pruned-lost")


def group_cohorts(curves: Sequence[RunCurve]) -> list[list[RunCurve]]:
    """Cohorts in order of first appearance, runs in file order."""
    groups: dict[str, list[RunCurve]] = {}
    for c in curves:
        groups.setdefault(c.cohort, []).append(c)
    return list(groups.values())


def replay_cohort(runs: Sequence[RunCurve], policy: CohortPolicy, workers: int) -> list[int]:
    """Stop epoch of every run of one cohort under a cohort policy."""
    session = policy()
    stops = [run.planned for run in runs]
    for first in range(0, len(runs), workers):
        wave = list(range(first, min(first + workers, len(runs))))
        for i in wave:
            session.start(runs[i].run)
        step = 0
        while wave:
            step += 1
            for i in wave:
                run = runs[i]
                session.report(run.run, step, float(run.val_loss[step - 1]), float(run.train_loss[step - 1]))
            # Decide only after the whole wave reported this epoch (lockstep).
            ended = {i: False for i in wave if step == runs[i].planned}
            ended |= {i: True for i in wave if i not in ended and session.should_stop(runs[i].run, step)}
            for i in wave:
                if i in ended:
                    stops[i] = step
                    session.finish(runs[i].run, step, ended[i])
            wave = [i for i in wave if i not in ended]
    return stops


def sweep_points(runs: Sequence[RunCurve], stops: Sequence[int], semantics: Semantics) -> float:
    """Score (points) of the sweep's winner: the kept checkpoint with the lowest val_loss."""
    best_loss, best_points = math.inf, 0.0
    for run, stop in zip(runs, stops):
        if semantics == "pruned-lost" and stop < run.planned:
            continue
        idx = checkpoint(run, stop)
        if idx is not None and run.val_loss[idx] < best_loss:  # strict: earliest run wins ties
            best_loss, best_points = float(run.val_loss[idx]), points(run, stop)
    return best_points


def sweep_regret(runs: Sequence[RunCurve], stops: Sequence[int], semantics: Semantics) -> float:
    full = sweep_points(runs, [r.planned for r in runs], semantics)
    return max(0.0, full - sweep_points(runs, stops, semantics))


@dataclass(frozen=True)
class CohortResult:
    setting: str
    workers: int | None  # None: a per-run policy, whose decisions don't depend on W
    semantics: Semantics
    compute_saved: float  # 1 - total epochs run / total planned, over all cohorts
    mean_regret: float  # mean over cohorts, points
    max_regret: float
    share_regret_gt1: float  # share of cohorts
    n_cohorts: int

    @property
    def mean_saved(self) -> float:  # lets s_at() rank cohort results too
        return self.compute_saved


def cohort_results(
    setting: str, workers: int | None, cohorts: Sequence[Sequence[RunCurve]], all_stops: Sequence[Sequence[int]]
) -> list[CohortResult]:
    """Score given stop epochs under both semantics (the decisions don't depend on them)."""
    run_epochs = sum(sum(stops) for stops in all_stops)
    planned = sum(r.planned for runs in cohorts for r in runs)
    results = []
    for semantics in SEMANTICS:
        regrets = np.array([sweep_regret(runs, stops, semantics) for runs, stops in zip(cohorts, all_stops)])
        results.append(
            CohortResult(
                setting=setting,
                workers=workers,
                semantics=semantics,
                compute_saved=1.0 - run_epochs / planned,
                mean_regret=float(regrets.mean()),
                max_regret=float(regrets.max()),
                share_regret_gt1=float((regrets > BIG_REGRET).mean()),
                n_cohorts=len(cohorts),
            )
        )
    return results


def evaluate_cohort_policy(
    curves: Sequence[RunCurve], setting: str, policy: CohortPolicy, workers: int
) -> list[CohortResult]:
    cohorts = group_cohorts(curves)
    return cohort_results(setting, workers, cohorts, [replay_cohort(runs, policy, workers) for runs in cohorts])


def evaluate_policy_in_cohorts(curves: Sequence[RunCurve], setting: str, policy: Policy) -> list[CohortResult]:
    """A per-run policy seen as a sweep: each run stops where the policy says, whatever W."""
    cohorts = group_cohorts(curves)
    stops = [[checked_stop(r, policy(r), setting) for r in runs] for runs in cohorts]
    return cohort_results(setting, None, cohorts, stops)
