"""PyTorch Lightning: report the validation metrics to Plateau; checkpoint and stop when the operator asks.

    from plateau_client.integrations.lightning import PlateauCallback
    trainer = lightning.pytorch.Trainer(callbacks=[PlateauCallback()])

Needs `lightning` (`pip install lightning`, or this client's `lightning` extra:
plateau-client[lightning]); the older `pytorch_lightning` does as well where `lightning` is
not installed. A `pytorch_lightning.Trainer` takes the callback too: Lightning calls its hooks
by name.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

try:
    import lightning.pytorch as pl
except ImportError:
    try:
        import pytorch_lightning as pl
    except ImportError as e:
        raise ImportError(
            "plateau_client.integrations.lightning needs PyTorch Lightning: pip install lightning"
            " (or the extra plateau-client[lightning])"
        ) from e

import plateau_client

from . import announce, chosen, evaluation

VALIDATION_PREFIX = "val"


class PlateauCallback(pl.Callback):
    """At each validation end (never the sanity check), report the logged validation metrics at
    `trainer.global_step`; when the operator has asked for a stop, save a checkpoint and set
    `trainer.should_stop`.

    `metrics` names the logged metrics to report; by default, every logged metric whose name
    starts with "val" (`val_loss`, `val/acc`, `validation_f1`). `checkpoint` is the file the stop
    saves, under `trainer.default_root_dir` unless absolute; None saves nothing (your own
    ModelCheckpoint then keeps what it kept)."""

    def __init__(
        self,
        metrics: Iterable[str] | None = None,
        reporter: plateau_client.Reporter | None = None,
        checkpoint: str | os.PathLike[str] | None = "plateau-stop.ckpt",
    ) -> None:
        self.metrics = chosen(metrics)
        self.report = reporter.report if reporter else plateau_client.report
        self.checkpoint = checkpoint

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:  # the sanity check's numbers are not an evaluation
            return
        if trainer.is_global_zero:  # one report per evaluation, not one per rank
            values = evaluation(trainer.callback_metrics, self.metrics, VALIDATION_PREFIX)
            if values:
                self.report(trainer.global_step, **values)
        # Every rank must agree, or one would stop while the others wait for it in a collective.
        if not trainer.strategy.reduce_boolean_decision(plateau_client.should_stop(), all=False):
            return
        path = None
        if self.checkpoint is not None:
            path = os.path.join(trainer.default_root_dir, self.checkpoint)  # an absolute path stays as it is
            trainer.save_checkpoint(path)  # on every rank: the strategy decides who writes
        trainer.should_stop = True
        if trainer.is_global_zero:
            announce(plateau_client.stop_reason() or "on another rank", path)
