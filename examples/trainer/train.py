"""A tiny real trainer for Plateau's tests and demos: a one-hidden-layer MLP in numpy, on a
dataset that ships inside scikit-learn (no download), on CPU in seconds.

It reports `val_loss` and `accuracy` once per epoch through `plateau_client` (to the
JSONL file or the push URL the environment names), prints the same numbers as a log line
for the stdout route, and honours the operator's stop request by checkpointing and exiting 0.

Flags shape the run for tests of each stop rule:
  plateau     a small --lr and many --epochs: val_loss flattens out
  target      watch `accuracy`, which passes 0.9 within a few epochs on digits
  divergence  --diverge-at-epoch N: the learning rate jumps 300-fold, so val_loss shoots up
              (and later goes NaN); or --lr 3 from the start: val_loss stays near 20
  NaN         --nan-at-epoch N: the weights become NaN, so every later val_loss is NaN
  crash       --crash-at-epoch N: raises, so the process exits 1
  no stop     --ignore-stop: keeps training after a stop request (the operator must then scale down)
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time
from dataclasses import dataclass

import numpy as np
from sklearn.datasets import load_breast_cancer, load_digits

import plateau_client

DATASETS = {"digits": load_digits, "breast_cancer": load_breast_cancer}
DIVERGE_LR_FACTOR = 300.0


def _steps(text: str) -> tuple[int, ...]:
    steps = tuple(int(s) for s in text.split(",") if s.strip())
    if any(s < 1 for s in steps) or list(steps) != sorted(set(steps)):
        raise argparse.ArgumentTypeError(f"{text!r}: steps must be positive and increasing")
    return steps


def _resume_epochs(text: str) -> tuple[int, int]:
    at, _, back_to = text.partition(":")
    if not (at.isdigit() and back_to.isdigit() and 0 < int(back_to) < int(at)):
        raise argparse.ArgumentTypeError(f"expected N:M with 0 < M < N, got {text!r}")
    return int(at), int(back_to)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", choices=sorted(DATASETS), default="digits")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--hidden", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--sleep", type=float, default=0.0, help="seconds to sleep after each epoch")
    ap.add_argument("--lr-milestones", type=_steps, default=(),
                    help="a step schedule: the learning rate drops tenfold at these steps (e.g. 2200,4400);"
                         " the trainer then reports it as the metric lr")
    ap.add_argument("--diverge-at-epoch", type=int, help="multiply the learning rate by 300 at this epoch (1-based)")
    ap.add_argument("--nan-at-epoch", type=int, help="poison the weights with NaN at this epoch (1-based)")
    ap.add_argument("--crash-at-epoch", type=int, help="raise an exception at this epoch (1-based)")
    ap.add_argument("--ignore-stop", action="store_true", help="do not honour the operator's stop request")
    ap.add_argument("--resume", metavar="N:M", type=_resume_epochs,
                    help="at epoch N, go back to the state after epoch M, as a trainer restarted from that"
                         " checkpoint does: its steps go back and it reports them again")
    ap.add_argument("--checkpoint-dir", default="checkpoints")
    return ap.parse_args(argv)


@dataclass
class Model:
    w1: np.ndarray
    b1: np.ndarray
    w2: np.ndarray
    b2: np.ndarray

    @classmethod
    def init(cls, n_in: int, n_hidden: int, n_out: int, rng: np.random.Generator) -> Model:
        return cls(
            w1=rng.normal(0, np.sqrt(2 / n_in), (n_in, n_hidden)),
            b1=np.zeros(n_hidden),
            w2=rng.normal(0, np.sqrt(1 / n_hidden), (n_hidden, n_out)),
            b2=np.zeros(n_out),
        )

    def forward(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Hidden activations and class probabilities."""
        h = np.maximum(x @ self.w1 + self.b1, 0.0)
        logits = h @ self.w2 + self.b2
        logits -= logits.max(axis=1, keepdims=True)
        e = np.exp(logits)
        return h, e / e.sum(axis=1, keepdims=True)

    def sgd_step(self, x: np.ndarray, y: np.ndarray, lr: float) -> None:
        h, prob = self.forward(x)
        grad = prob
        grad[np.arange(len(y)), y] -= 1.0
        grad /= len(y)
        dh = (grad @ self.w2.T) * (h > 0)
        self.w2 -= lr * h.T @ grad
        self.b2 -= lr * grad.sum(axis=0)
        self.w1 -= lr * x.T @ dh
        self.b1 -= lr * dh.sum(axis=0)

    def evaluate(self, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
        """Cross-entropy loss and accuracy."""
        _, prob = self.forward(x)
        loss = -np.log(np.clip(prob[np.arange(len(y)), y], 1e-12, None)).mean()
        return float(loss), float((prob.argmax(axis=1) == y).mean())

    def poison(self) -> None:
        self.w1[...] = np.nan


def load(name: str, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Standardised train and validation splits (75/25)."""
    data = DATASETS[name]()
    x, y = data.data.astype(np.float64), data.target
    order = np.random.default_rng(seed).permutation(len(y))
    cut = len(y) * 3 // 4
    train, val = order[:cut], order[cut:]
    mean, std = x[train].mean(axis=0), x[train].std(axis=0) + 1e-8
    x = (x - mean) / std
    return x[train], y[train], x[val], y[val]


def save_checkpoint(directory: str, model: Model, meta: dict[str, object]) -> None:
    """Weights and a small JSON note, each written to a temp file and renamed: never half-written."""
    os.makedirs(directory, exist_ok=True)
    weights = os.path.join(directory, "weights.npz")
    np.savez(weights + ".tmp.npz", w1=model.w1, b1=model.b1, w2=model.w2, b2=model.b2)
    os.replace(weights + ".tmp.npz", weights)
    note = os.path.join(directory, "checkpoint.json")
    with open(note + ".tmp", "w") as f:
        json.dump(meta, f)
    os.replace(note + ".tmp", note)


def train(args: argparse.Namespace) -> int:
    x_train, y_train, x_val, y_val = load(args.dataset, args.seed)
    rng = np.random.default_rng(args.seed)
    model = Model.init(x_train.shape[1], args.hidden, int(y_train.max()) + 1, rng)
    lr, step = args.lr, 0
    meta: dict[str, object] = {"epoch": 0, "step": 0, "stopped_by": None}
    resume_at, back_to = args.resume or (0, 0)
    saved: tuple[Model, int, dict[str, object]] | None = None  # the checkpoint of epoch back_to
    epoch = 0
    while epoch < args.epochs:
        epoch += 1
        if epoch == resume_at and saved is not None:  # a restart from the older checkpoint
            model, step, rng.bit_generator.state = copy.deepcopy(saved[0]), saved[1], saved[2]
            epoch, resume_at = back_to + 1, 0
            print(f"resumed from the checkpoint of epoch {back_to}, step {step}", flush=True)
        if epoch == args.crash_at_epoch:
            raise RuntimeError(f"crash requested at epoch {epoch}")
        if epoch == args.nan_at_epoch:
            model.poison()
        if epoch == args.diverge_at_epoch:
            lr *= DIVERGE_LR_FACTOR
        order = rng.permutation(len(y_train))
        for start in range(0, len(order), args.batch_size):
            batch = order[start : start + args.batch_size]
            model.sgd_step(x_train[batch], y_train[batch], lr)
            step += 1
            if step in args.lr_milestones:
                lr *= 0.1
        val_loss, accuracy = model.evaluate(x_val, y_val)
        schedule = {"lr": lr} if args.lr_milestones else {}
        plateau_client.report(step, val_loss=val_loss, accuracy=accuracy, **schedule)
        print(f"epoch={epoch} step={step} val_loss={val_loss:.6f} accuracy={accuracy:.6f}", flush=True)
        meta = {"epoch": epoch, "step": step, "val_loss": val_loss, "accuracy": accuracy, "stopped_by": None}
        if epoch == back_to and resume_at:
            saved = (copy.deepcopy(model), step, rng.bit_generator.state)
        reason = plateau_client.stop_reason()
        if reason is not None and not args.ignore_stop:
            meta["stopped_by"] = reason
            save_checkpoint(args.checkpoint_dir, model, meta)
            print(f"stop requested ({reason}): checkpointed at epoch {epoch}, step {step}", flush=True)
            return 0
        time.sleep(args.sleep)
    save_checkpoint(args.checkpoint_dir, model, meta)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with np.errstate(all="ignore"):  # NaN and divergence runs overflow on purpose
        return train(args)


if __name__ == "__main__":
    sys.exit(main())
