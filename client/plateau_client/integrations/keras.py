"""Keras 3: report the validation metrics to Plateau; checkpoint and stop when the operator asks.

    from plateau_client.integrations.keras import PlateauCallback
    model.fit(x, y, validation_data=(x_val, y_val), epochs=100, callbacks=[PlateauCallback()])

Any Keras backend; tested with torch (KERAS_BACKEND=torch). Needs Keras (`pip install keras`, or
this client's `keras` extra: plateau-client[keras]).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

try:
    import keras
except ImportError as e:
    raise ImportError(
        "plateau_client.integrations.keras needs Keras 3: pip install keras (or the extra plateau-client[keras])"
    ) from e

import plateau_client

from . import announce, chosen, evaluation

VALIDATION_PREFIX = "val_"
WEIGHTS_SUFFIX = ".weights.h5"  # Keras' own rule: save_weights() takes this, save() takes ".keras"


class PlateauCallback(keras.callbacks.Callback):
    """At each epoch end, report the epoch's validation metrics at the optimizer's step count;
    when the operator has asked for a stop, save a checkpoint and stop training.

    `metrics` names the logged metrics to report; by default, every one whose name starts with
    "val_" (Keras' names for what `validation_data` measured). `checkpoint` is the file the stop
    saves: a whole model for ".keras", the weights for ".weights.h5"; None saves nothing."""

    def __init__(
        self,
        metrics: Iterable[str] | None = None,
        reporter: plateau_client.Reporter | None = None,
        checkpoint: str | os.PathLike[str] | None = "plateau-stop.keras",
    ) -> None:
        super().__init__()
        self.metrics = chosen(metrics)
        self.report = reporter.report if reporter else plateau_client.report
        self.checkpoint = os.fspath(checkpoint) if checkpoint is not None else None

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        values = evaluation(logs or {}, self.metrics, VALIDATION_PREFIX)
        if values:
            self.report(int(self.model.optimizer.iterations), **values)
        reason = plateau_client.stop_reason()
        if reason is None:
            return
        if self.checkpoint is not None:
            if self.checkpoint.endswith(WEIGHTS_SUFFIX):
                self.model.save_weights(self.checkpoint)
            else:
                self.model.save(self.checkpoint)
        self.model.stop_training = True
        announce(reason, self.checkpoint)
