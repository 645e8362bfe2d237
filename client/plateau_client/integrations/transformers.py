"""Hugging Face Transformers: report each evaluation's metrics to Plateau; when the operator asks,
the Trainer saves a checkpoint and stops.

    from plateau_client.integrations.transformers import PlateauCallback
    trainer = Trainer(model, args, train_dataset=..., eval_dataset=..., callbacks=[PlateauCallback()])

The Trainer must evaluate (`eval_strategy="epoch"` or `"steps"`): the callback acts at each
evaluation. Needs transformers and accelerate (`pip install transformers accelerate`, or this
client's `transformers` extra: plateau-client[transformers]).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

try:
    import transformers
except ImportError as e:
    raise ImportError(
        "plateau_client.integrations.transformers needs Hugging Face Transformers: pip install transformers"
        " accelerate (or the extra plateau-client[transformers])"
    ) from e

from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

import plateau_client

from . import announce, chosen, evaluation
from .torch import should_stop

EVALUATION_PREFIX = "eval_"


class PlateauCallback(transformers.TrainerCallback):
    """At each evaluation, report its metrics at `state.global_step` (from the main process
    only); when the operator has asked for a stop, on every process, set `control.should_save`
    and `control.should_training_stop`, so the Trainer saves `checkpoint-STEP` in `output_dir`
    its own way (model, optimizer, scheduler, trainer state) and ends training.

    `metrics` names the metrics to report; by default, every number the evaluation returned
    (`eval_loss`, and what `compute_metrics` adds: `eval_accuracy`, ...). With `save=False` the
    stop saves nothing. With `save_strategy="best"` the Trainer overrides the request and saves
    only a new best (which it kept already)."""

    def __init__(
        self,
        metrics: Iterable[str] | None = None,
        reporter: plateau_client.Reporter | None = None,
        save: bool = True,
    ) -> None:
        self.metrics = chosen(metrics)
        self.report = reporter.report if reporter else plateau_client.report
        self.save = save

    def on_evaluate(
        self,
        args: transformers.TrainingArguments,
        state: transformers.TrainerState,
        control: transformers.TrainerControl,
        metrics: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        if state.is_world_process_zero:
            values = evaluation(metrics or {}, self.metrics, EVALUATION_PREFIX)
            if values:
                self.report(state.global_step, **values)
        if should_stop(args.device):  # agreed by every rank, so none waits alone in a collective
            control.should_training_stop = True
            control.should_save = control.should_save or self.save
            if state.is_world_process_zero:
                saved = os.path.join(args.output_dir, f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}")
                announce(plateau_client.stop_reason() or "on another rank", saved if control.should_save else None)
