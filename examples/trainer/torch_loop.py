"""A plain PyTorch training loop that reports to Plateau and stops when asked: a small MLP on
scikit-learn's `digits` (no download), on CPU in seconds.

Each epoch it reports `val_loss` and `accuracy` through `plateau_client`. When the operator asks
for a stop, it saves `checkpoint.pt` (model, optimizer, epoch, step, reason) in
--checkpoint-dir and exits 0. The stop check is `plateau_client.integrations.torch.should_stop`,
which every torch.distributed rank agrees on; without a process group, as here, it is
`plateau_client.should_stop()`.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import torch
from sklearn.datasets import load_digits
from torch import nn

import plateau_client
from plateau_client.integrations.torch import should_stop


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--lr", type=float, default=0.01)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--sleep", type=float, default=0.0, help="seconds to sleep after each epoch")
    ap.add_argument("--checkpoint-dir", default="checkpoints")
    return ap.parse_args(argv)


def load(seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Standardised train and validation splits (75/25) of digits."""
    data = load_digits()
    x, y = torch.tensor(data.data, dtype=torch.float32), torch.tensor(data.target)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    cut = len(y) * 3 // 4
    train, val = order[:cut], order[cut:]
    mean, std = x[train].mean(dim=0), x[train].std(dim=0) + 1e-6
    x = (x - mean) / std
    return x[train], y[train], x[val], y[val]


def save_checkpoint(directory: str, model: nn.Module, optimizer: torch.optim.Optimizer, meta: dict[str, object]) -> str:
    """Written to a temporary file and renamed: never half-written."""
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, "checkpoint.pt")
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), **meta}, path + ".tmp")
    os.replace(path + ".tmp", path)
    return path


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.manual_seed(args.seed)
    x_train, y_train, x_val, y_val = load(args.seed)
    model = nn.Sequential(nn.Linear(x_train.shape[1], 32), nn.ReLU(), nn.Linear(32, 10))
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    step = 0
    for epoch in range(1, args.epochs + 1):
        model.train()
        for batch in torch.randperm(len(y_train)).split(args.batch_size):
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(x_train[batch]), y_train[batch]).backward()
            optimizer.step()
            step += 1
        model.eval()
        with torch.no_grad():
            logits = model(x_val)
            val_loss = nn.functional.cross_entropy(logits, y_val).item()
            accuracy = (logits.argmax(dim=1) == y_val).float().mean().item()
        plateau_client.report(step, val_loss=val_loss, accuracy=accuracy)
        print(f"epoch={epoch} step={step} val_loss={val_loss:.6f} accuracy={accuracy:.6f}", flush=True)
        if should_stop():
            reason = plateau_client.stop_reason()
            meta = {"epoch": epoch, "step": step, "stopped_by": reason}
            path = save_checkpoint(args.checkpoint_dir, model, optimizer, meta)
            print(f"stop requested ({reason}): checkpointed to {path} at epoch {epoch}, step {step}", flush=True)
            return 0
        time.sleep(args.sleep)
    save_checkpoint(args.checkpoint_dir, model, optimizer, {"epoch": args.epochs, "step": step, "stopped_by": None})
    return 0


if __name__ == "__main__":
    sys.exit(main())
