"""Generate real training curves whose shapes break patience-based stopping.

benchmarks/generate_curves.py trains short runs at a constant learning rate. This adds the
shapes that patience gets wrong, each trained for real with the same batched MLP on data that
ships inside a package (nothing is downloaded):

  step      SGD with the learning rate cut 10x at fixed epochs: long plateaus before each drop
  cosine    cosine annealing to zero over the planned epochs: slow start, late gains
  sgdr      cosine warm restarts (SGDR, T0=10, Tmult=2): the loss jumps up at each restart
  finetune  a small model pretrained from scratch on classes 0-4, fine-tuned on classes 5-9
  noisy     10 evaluations per epoch on a 64-128 example validation sample: step-level noise
  overfit   small training subset, wide model, no regularisation: val_loss turns up
  long      300-400 epochs at a small learning rate: gains keep coming late

Task names are "<dataset>-<family>"; a task's runs share a dataset, a family and a plan. Runs
are grouped in cohorts of one sweep (optimizer, width, depth, batch size fixed; learning rate,
weight decay and dropout per run), as in generate_curves.

Output: gzip CSV with the columns of generate_curves (run,task,cohort,step,val_loss,score,
train_loss) plus family and lr (each run's learning rate at the last optimizer step before the
evaluation). step counts evaluations, 1..planned; noisy runs report 10 per epoch.

Usage (about 10 minutes on one shared core):
  .venv/bin/python -m benchmarks.generate_shapes           # benchmarks/data/curves-shapes.csv.gz
  .venv/bin/python -m benchmarks.generate_shapes --tasks mnist1d-step --runs 4 --out /tmp/x.csv.gz
"""

from __future__ import annotations

import argparse
import csv
import gzip
import io
import math
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from benchmarks.generate_curves import (
    COLUMNS as BASE_COLUMNS,
    Config,
    Plan,
    Task,
    _fmt,
    _mnist1d,
    _mnist5k,
    _sklearn,
    fit_group,
    make_split,
)

DEFAULT_OUT = Path(__file__).resolve().parent / "data" / "curves-shapes.csv.gz"
COLUMNS = (*BASE_COLUMNS, "family", "lr")
PRETRAIN_EPOCHS = 20


# --- learning-rate schedules: factor of the base rate at `t` epochs done (fractional) -------


def step_schedule(milestones: Sequence[int], gamma: float = 0.1) -> Callable[[float], float]:
    """torch's MultiStepLR: the rate is multiplied by gamma at each milestone epoch."""
    return lambda t: gamma ** sum(t >= m for m in milestones)


def cosine_schedule(epochs: int) -> Callable[[float], float]:
    """torch's CosineAnnealingLR with eta_min=0 and T_max=epochs, per minibatch."""
    return lambda t: 0.5 * (1.0 + math.cos(math.pi * t / epochs))


def sgdr_schedule(first: int, mult: int) -> Callable[[float], float]:
    """torch's CosineAnnealingWarmRestarts(T_0=first, T_mult=mult), per minibatch."""

    def factor(t: float) -> float:
        length = first
        while t >= length:
            t -= length
            length *= mult
        return 0.5 * (1.0 + math.cos(math.pi * t / length))

    return factor


# --- the tasks ----------------------------------------------------------------------------


def _classes(load: Callable[[], tuple[np.ndarray, np.ndarray]], keep: range) -> Callable[[], tuple[np.ndarray, np.ndarray]]:
    """The examples of the classes in `keep`, relabelled 0..len(keep)-1."""

    def subset() -> tuple[np.ndarray, np.ndarray]:
        x, y = load()
        mask = np.isin(y, list(keep))
        return x[mask], y[mask] - keep.start

    return subset


@dataclass(frozen=True)
class Shape:
    family: str
    data: Task  # name = dataset, used for the split; epochs unused (plan has them)
    plan: Plan
    optimizer: str
    lr_range: tuple[float, float]
    batch_size: int
    widths: tuple[int, ...]
    depth: int = 2
    subset: float = 1.0
    label_noise: float = 0.0
    weight_decays: tuple[float, ...] = (0.0, 1e-4, 1e-3)
    dropouts: tuple[float, ...] = (0.0, 0.0, 0.1)
    pretrain: Task | None = None  # fine-tune: trained on this first (same shape), head re-initialised

    @property
    def name(self) -> str:
        return f"{self.data.name}-{self.family}"


def _data(name: str, classification: bool, load: Callable[[], tuple[np.ndarray, np.ndarray]]) -> Task:
    return Task(name, classification, 0, (), load)


DIGITS = _data("digits", True, _sklearn("load_digits"))
MNIST1D = _data("mnist1d", True, _mnist1d)
WINE = _data("wine", True, _sklearn("load_wine"))
DIABETES = _data("diabetes", False, _sklearn("load_diabetes"))

# Schedules first: they are what the schedule-aware rule is developed on. Their runs are
# regularised, so the high-rate phase sits on a noise floor that each drop breaks through
# (without it the small MLPs overfit before the first drop and the schedule shows nothing).
REGULARISED = {"weight_decays": (1e-3, 3e-3, 1e-2), "dropouts": (0.0, 0.1, 0.3)}
SHAPES: tuple[Shape, ...] = (
    Shape("step", MNIST1D, Plan(120, step_schedule((60, 90))), "sgd", (0.02, 0.3), 128, (64, 128), **REGULARISED),
    Shape("step", DIGITS, Plan(100, step_schedule((50, 75))), "sgd", (0.01, 0.3), 64, (32, 64), label_noise=0.1, **REGULARISED),
    Shape("cosine", MNIST1D, Plan(100, cosine_schedule(100)), "sgd", (0.02, 0.5), 128, (64, 128), **REGULARISED),
    Shape("cosine", DIGITS, Plan(80, cosine_schedule(80)), "adam", (3e-4, 1e-2), 64, (32, 64), label_noise=0.1, **REGULARISED),
    Shape("sgdr", MNIST1D, Plan(150, sgdr_schedule(10, 2)), "sgd", (0.02, 0.3), 128, (64, 128), **REGULARISED),
    Shape(
        "finetune",
        _data("mnist5k", True, _classes(_mnist5k, range(5, 10))),
        Plan(60),
        "adam",
        (1e-5, 3e-3),
        64,
        (128,),
        subset=0.25,
        pretrain=_data("mnist5k-0to4", True, _classes(_mnist5k, range(0, 5))),
    ),
    Shape(
        "finetune",
        _data("digits", True, _classes(_sklearn("load_digits"), range(5, 10))),
        Plan(80),
        "sgd",
        (1e-3, 0.1),
        32,
        (64,),
        subset=0.25,
        pretrain=_data("digits-0to4", True, _classes(_sklearn("load_digits"), range(0, 5))),
    ),
    Shape("noisy", MNIST1D, Plan(40, evals=10, val_sample=128), "adam", (1e-4, 3e-3), 32, (64, 128)),
    Shape("noisy", DIGITS, Plan(30, evals=10, val_sample=64), "sgd", (0.005, 0.1), 32, (32, 64)),
    Shape(
        "overfit", MNIST1D, Plan(150), "adam", (3e-4, 3e-3), 64, (256,), subset=0.25, label_noise=0.1,
        weight_decays=(0.0,), dropouts=(0.0,),
    ),
    Shape(
        "overfit", DIGITS, Plan(150), "adam", (3e-4, 3e-3), 32, (256,), subset=0.15, label_noise=0.1,
        weight_decays=(0.0,), dropouts=(0.0,),
    ),
    Shape("long", MNIST1D, Plan(300), "sgd", (1e-3, 2e-2), 128, (64, 128)),
    Shape("long", WINE, Plan(400), "sgd", (1e-4, 1e-2), 32, (16, 32)),
    Shape("long", DIABETES, Plan(400), "sgd", (1e-4, 3e-3), 32, (16, 32)),
)


def cohort_configs(shape: Shape, rng: np.random.Generator, size: int) -> list[Config]:
    """One sweep: width fixed per cohort (one batched group); lr, decay, dropout per run."""
    width = int(rng.choice(shape.widths))
    lo, hi = shape.lr_range
    return [
        Config(
            optimizer=shape.optimizer,
            lr=float(math.exp(rng.uniform(math.log(lo), math.log(hi)))),
            width=width,
            depth=shape.depth,
            weight_decay=float(rng.choice(shape.weight_decays)),
            dropout=float(rng.choice(shape.dropouts)),
            batch_size=shape.batch_size,
            subset=shape.subset,
            label_noise=shape.label_noise,
            seed=int(rng.integers(2**31)),
        )
        for _ in range(size)
    ]


def pretrained_body(shape: Shape, cfg: Config) -> torch.Tensor:
    """Every layer but the output layer of one model trained on shape.pretrain from scratch
    (Adam, lr 1e-3, the cohort's width and depth, PRETRAIN_EPOCHS epochs)."""
    assert shape.pretrain is not None
    split = make_split(shape.pretrain)
    base = replace(cfg, optimizer="adam", lr=1e-3, weight_decay=0.0, dropout=0.0, subset=1.0, label_noise=0.0)
    _, model = fit_group(shape.pretrain, split, [base], Plan(PRETRAIN_EPOCHS))
    n_in, width = model.shapes[-1]
    return model.flat[0, : model.flat.shape[1] - (n_in * width + width)].clone()


def train_cohort(shape: Shape, split: object, cfgs: list[Config]) -> np.ndarray:
    """(runs, evaluations, 4): val_loss, score, train_loss, lr."""
    body = pretrained_body(shape, cfgs[0]) if shape.pretrain is not None else None
    curves, _ = fit_group(shape.data, split, cfgs, shape.plan, body)  # type: ignore[arg-type]
    return curves


def generate(seed: int, runs: int, cohorts: int, shapes: Sequence[Shape], out: Path) -> None:
    torch.set_num_threads(1)  # 2 shared cores: one process, one thread
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(COLUMNS)
    run_id = 0
    started = time.perf_counter()
    for shape in shapes:
        shape_start = time.perf_counter()
        split = make_split(shape.data)
        for k in range(cohorts):
            rng = np.random.default_rng([seed, zlib.crc32(shape.name.encode()), k])
            cohort = f"{shape.name}-s{seed}-c{k:02d}"
            for curve in train_cohort(shape, split, cohort_configs(shape, rng, runs)):
                for step, (val_loss, score, train_loss, lr) in enumerate(curve, start=1):
                    writer.writerow((run_id, shape.name, cohort, step, _fmt(val_loss), _fmt(score), _fmt(train_loss),
                                     shape.family, _fmt(lr)))
                run_id += 1
        print(f"{shape.name:>18}: {cohorts}x{runs} runs x {shape.plan.epochs * shape.plan.evals} evaluations"
              f" in {time.perf_counter() - shape_start:6.1f}s", flush=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    # mtime=0 and no file name in the header: same seed, same bytes.
    with open(out, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=9, mtime=0, filename="") as gz:
        gz.write(buf.getvalue().encode())
    print(f"\nwrote {out} ({out.stat().st_size / 1e6:.2f} MB, {run_id} runs) in {time.perf_counter() - started:.0f}s")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=0, help="sweep seed (data splits stay fixed)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--runs", type=int, default=10, help="runs per cohort")
    parser.add_argument("--cohorts", type=int, default=3, help="cohorts per task")
    names = [s.name for s in SHAPES]
    parser.add_argument("--tasks", default=",".join(names), help="comma-separated subset of: " + ", ".join(names))
    args = parser.parse_args(argv)
    by_name = {s.name: s for s in SHAPES}
    unknown = [n for n in args.tasks.split(",") if n not in by_name]
    if unknown:
        parser.error(f"unknown task(s): {', '.join(unknown)}")
    if not 1 <= args.runs <= 100 or not 1 <= args.cohorts <= 20:
        parser.error("--runs must be 1..100 and --cohorts 1..20")
    generate(args.seed, args.runs, args.cohorts, [by_name[n] for n in args.tasks.split(",")], args.out)


if __name__ == "__main__":
    main()
