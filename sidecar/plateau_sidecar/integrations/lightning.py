"""PyTorch Lightning: report validation metrics to Plateau, and stop when the operator asks.

    from plateau_sidecar.integrations.lightning import PlateauCallback
    trainer = Trainer(callbacks=[PlateauCallback()])

Needs `pytorch_lightning` (`pip install plateau[torch]`); importing this module without it
raises ImportError, and nothing else in plateau_sidecar imports it.
"""

from __future__ import annotations

from collections.abc import Iterable

import pytorch_lightning as pl
import torch

from .. import client

VALIDATION_PREFIX = "val"


def _scalar(value: object) -> float | None:
    """A logged metric as a float; None for anything but a single number."""
    if isinstance(value, torch.Tensor):
        return float(value.item()) if value.numel() == 1 else None
    return float(value) if isinstance(value, (int, float)) else None


class PlateauCallback(pl.Callback):
    """At each validation end, report the logged validation metrics at `trainer.global_step`,
    then set `trainer.should_stop` if the operator requested a stop.

    `metrics` names the logged metrics to report; by default, every logged metric whose name
    starts with "val" (`val_loss`, `val/acc`, `validation_f1`)."""

    def __init__(self, metrics: Iterable[str] | None = None, reporter: client.Reporter | None = None) -> None:
        self.metrics = frozenset(metrics) if metrics is not None else None
        self.reporter = reporter

    def _wanted(self, name: str) -> bool:
        return name in self.metrics if self.metrics is not None else name.startswith(VALIDATION_PREFIX)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:  # the sanity check's numbers are not an evaluation
            return
        if trainer.is_global_zero:  # one report per evaluation, not one per rank
            scalars = {name: _scalar(value) for name, value in trainer.callback_metrics.items() if self._wanted(name)}
            values = {name: value for name, value in scalars.items() if value is not None}
            if values:
                report = self.reporter.report if self.reporter else client.report
                report(trainer.global_step, **values)
        # Every rank must agree, or one would stop while the others wait for it in a collective.
        if trainer.strategy.reduce_boolean_decision(client.should_stop(), all=False):
            trainer.should_stop = True
