"""Schedule-aware stopping on runs with learning-rate schedules: the same spec with and without
`schedule: {learningRate: lr}`, replayed through the real engine (plateau.replay).

A patience rule sees the long flat stretch before a step schedule's drop as a plateau and stops
the run right before the drop that would have improved it. With the learning rate read from
the curves' `lr` column, the engine holds patience while a drop is due (the drops seen so far
predict the next) and starts counting again after one.

    python -m benchmarks.schedule_quality [--curves benchmarks/data/curves-shapes.csv.gz]

Prints, per task family with a schedule: mean saved, mean and p99 regret, the share of runs
over 1 point of regret, and the runs stopped within --window evaluations before a drop, for each
spec without a schedule, with the lr metric (`learningRate: lr`: drops seen, the next predicted
from their interval; the first drop cannot be foreseen) and with the milestones declared (as a
user who configured a step schedule writes them); the clairvoyant limit beside them.
"""

from __future__ import annotations

import argparse
import csv
import gzip
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from benchmarks.harness import RunCurve, clairvoyant_stop, load_curves, summarize
from plateau.api import StopSpec
from plateau.cli.replay import Row, RunHistory, replay_run

DEFAULT_SHAPES = Path(__file__).resolve().parent / "data" / "curves-shapes.csv.gz"
SPECS: dict[str, dict[str, Any]] = {
    "balanced": {"preset": "balanced", "metric": {"name": "val_loss"}},
    "aggressive": {"preset": "aggressive", "metric": {"name": "val_loss"}},
    "patience=10": {"metric": {"name": "val_loss", "patience": 10}},
}
MAX_STEPS = 8  # a schedule with at most this many learning rates is a step schedule
DROP = 0.75  # an evaluation whose lr is below this share of the one before starts a drop


def load_lr(path: Path) -> dict[int, np.ndarray]:
    """The `lr` column of every run, in step order (load_curves checked the order)."""
    out: dict[int, list[float]] = {}
    with gzip.open(path, "rt", newline="") as fh:
        for row in csv.DictReader(fh):
            if "lr" not in row:
                raise ValueError(f"{path}: no lr column")
            out.setdefault(int(row["run"]), []).append(float(row["lr"]))
    return {run: np.array(values) for run, values in out.items()}


def drops(lr: np.ndarray) -> np.ndarray:
    """1-based evaluations at which a drop shows (the lr fell by a quarter or more)."""
    return np.flatnonzero(lr[1:] < DROP * lr[:-1]) + 2


def stop_at(curve: RunCurve, lr: np.ndarray, spec: StopSpec) -> int:
    rows = [Row(int(s), {"val_loss": float(v), "lr": float(r)}, None, None)
            for s, v, r in zip(curve.steps, curve.val_loss, lr)]
    return int(replay_run(RunHistory(str(curve.run), curve.cohort, rows), spec).stop_step or curve.planned)


def with_schedule(spec: dict[str, Any], schedule: Optional[dict[str, Any]]) -> StopSpec:
    metric = dict(spec["metric"], **({"schedule": schedule} if schedule else {}))
    return StopSpec.model_validate({**spec, "metric": metric})


def _schedule(label: str, lr: np.ndarray) -> Optional[dict[str, Any]]:
    """The spec's schedule: none, the lr metric, or the milestones the trainer was configured
    with (read back from its lr column: what a user who knows the schedule writes)."""
    if label == "no":
        return None
    if label.startswith("milestones"):
        return {"milestones": [int(d) for d in drops(lr)], **({"hold": 10} if "hold" in label else {})}
    return {"learningRate": "lr"}


def before_drop(stops: Sequence[int], lrs: Sequence[np.ndarray], window: int) -> int:
    """Runs stopped within `window` evaluations before one of their drops."""
    return sum(any(0 < d - s <= window for d in drops(lr)) for s, lr in zip(stops, lrs))


def rows_for(curves: Sequence[RunCurve], lrs: Sequence[np.ndarray], window: int) -> list[list[str]]:
    out = []
    stepwise = all(len(np.unique(lr)) <= MAX_STEPS for lr in lrs)
    clair = [clairvoyant_stop(c) for c in curves]
    r = summarize("clairvoyant", curves, clair)
    out.append(["clairvoyant", "", *_cells(r), str(before_drop(clair, lrs, window))])
    for name, spec in SPECS.items():
        # Milestones only where the schedule has steps: a cosine's lr falls at every evaluation.
        labels = ("no", "learningRate: lr") + (("milestones", "milestones, hold: 10") if stepwise else ())
        for label in labels:
            stops = [stop_at(c, lr, with_schedule(spec, _schedule(label, lr))) for c, lr in zip(curves, lrs)]
            r = summarize(name, curves, stops)
            out.append([name, label, *_cells(r), str(before_drop(stops, lrs, window))])
    return out


def _cells(r: Any) -> list[str]:
    return [f"{r.mean_saved:.1%}", f"{r.mean_regret:.2f}", f"{r.p99_regret:.2f}", f"{r.share_regret_gt1:.1%}"]


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--curves", type=Path, default=DEFAULT_SHAPES)
    parser.add_argument("--window", type=int, default=10, help="evaluations before a drop that count as 'right before'")
    args = parser.parse_args(argv)
    curves = load_curves(args.curves)
    lr_of = load_lr(args.curves)
    header = ["spec", "schedule", "saved", "mean regret", "p99 regret", "> 1 point", f"stopped <= {args.window} before a drop"]
    families: dict[str, list[RunCurve]] = {}
    for c in curves:
        if len(drops(lr_of[c.run])):  # only runs whose learning rate drops
            families.setdefault(c.task, []).append(c)
    for task, members in families.items():
        lrs = [lr_of[c.run] for c in members]
        print(f"\n{task} ({len(members)} runs, mean {np.mean([c.planned for c in members]):.0f} evaluations)")
        rows = rows_for(members, lrs, args.window)
        widths = [max(len(x) for x in col) for col in zip(header, *rows)]
        for line in (header, *rows):
            print("  ".join(cell.ljust(w) if i < 2 else cell.rjust(w) for i, (cell, w) in enumerate(zip(line, widths))))


if __name__ == "__main__":
    main()
