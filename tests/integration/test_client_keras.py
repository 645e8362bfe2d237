"""The Keras 3 callback, on the torch backend, stopped by a real sidecar."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

os.environ["KERAS_BACKEND"] = "torch"  # read once, when keras is first imported
import keras  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402

from plateau_client.integrations.keras import PlateauCallback  # noqa: E402
from tests.support.stopping_sidecar import StoppingSidecar, stopping_sidecar  # noqa: E402

pytestmark = pytest.mark.integration

EPOCHS, BATCH = 20, 64


@pytest.fixture
def sidecar(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[StoppingSidecar]:
    with stopping_sidecar(tmp_path, "val_loss", monkeypatch) as running:
        yield running


def digits() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    data = load_digits()
    x = (data.data / 16.0).astype("float32")
    return x[:1400], data.target[:1400], x[1400:], data.target[1400:]


def tiny_model() -> keras.Model:
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(16, activation="relu"), keras.layers.Dense(10)])
    model.compile(
        optimizer=keras.optimizers.Adam(0.01),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


def test_the_sidecar_stops_the_fit_and_the_callback_saves_the_model(
    sidecar: StoppingSidecar, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    assert keras.backend.backend() == "torch"
    x, y, x_val, y_val = digits()
    model = tiny_model()
    callback = PlateauCallback(reporter=sidecar.reporter(), checkpoint=tmp_path / "stopped.keras")
    history = model.fit(x, y, validation_data=(x_val, y_val), epochs=EPOCHS, batch_size=BATCH, verbose=0, callbacks=[callback])
    logged = history.history
    evaluations = len(history.epoch)
    steps = [(epoch + 1) * -(-len(x) // BATCH) for epoch in range(evaluations)]
    # It stopped at the very evaluation whose report made the sidecar's rules say stop.
    assert evaluations < EPOCHS
    assert sidecar.stopped_at == steps[-1] == int(model.optimizer.iterations)
    assert sidecar.stopped_at == sidecar.stop_step(list(zip(steps, logged["val_loss"])))
    assert f"plateau: stop requested ({sidecar.stop_file.read_text()}); checkpoint: {tmp_path / 'stopped.keras'}" in capfd.readouterr().err
    # Every validation metric Keras logged reached the sidecar, at each evaluation; training ones did not.
    assert sidecar.series() == {
        name: (evaluations, pytest.approx(values[-1], rel=1e-6)) for name, values in logged.items() if name.startswith("val_")
    }
    assert {"val_loss", "val_accuracy", "loss", "accuracy"} <= logged.keys()
    # The checkpoint is the model as it stopped.
    saved = keras.models.load_model(tmp_path / "stopped.keras")
    assert all(np.array_equal(a, b) for a, b in zip(saved.get_weights(), model.get_weights(), strict=True))


def test_weights_only_and_no_checkpoint(sidecar: StoppingSidecar, tmp_path: Path) -> None:
    x, y, x_val, y_val = digits()
    sidecar.stop_file.write_text("plateau: budget spent")  # asked before the first epoch ends
    models = {}
    for checkpoint, saved in [(tmp_path / "w.weights.h5", ["w.weights.h5"]), (None, [])]:
        models[checkpoint] = model = tiny_model()
        before = set(os.listdir(tmp_path))
        history = model.fit(
            x, y, validation_data=(x_val, y_val), epochs=EPOCHS, verbose=0, callbacks=[PlateauCallback(checkpoint=checkpoint)]
        )
        assert len(history.epoch) == 1
        assert sorted(set(os.listdir(tmp_path)) - before) == saved
    restored = tiny_model()
    restored.load_weights(tmp_path / "w.weights.h5")
    assert all(np.array_equal(a, b) for a, b in zip(restored.get_weights(), models[tmp_path / "w.weights.h5"].get_weights()))
    assert sidecar.series()["val_loss"][0] == 2  # reported through the environment's push URL
