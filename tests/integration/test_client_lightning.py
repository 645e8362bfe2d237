"""The PyTorch Lightning callback, with the real framework on CPU: `lightning.pytorch`, and the
older `pytorch_lightning` beside it."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import lightning.pytorch as lp
import pytest
import pytorch_lightning
import torch
from torch.utils.data import DataLoader, TensorDataset

import plateau_client
from plateau_client.integrations.lightning import PlateauCallback
from tests.support.stopping_sidecar import StoppingSidecar, stopping_sidecar

pytestmark = pytest.mark.integration

EPOCHS, BATCHES = 4, 5


def regression(pl: ModuleType) -> lp.LightningModule:
    class Regression(pl.LightningModule):  # type: ignore[name-defined,misc]
        def __init__(self) -> None:
            super().__init__()
            self.layer = torch.nn.Linear(4, 1)

        def training_step(self, batch: list[torch.Tensor], _: int) -> torch.Tensor:
            loss = torch.nn.functional.mse_loss(self.layer(batch[0]), batch[1])
            self.log("train_loss", loss)
            return loss

        def validation_step(self, batch: list[torch.Tensor], _: int) -> None:
            self.log("val_loss", torch.nn.functional.mse_loss(self.layer(batch[0]), batch[1]))
            self.log("val_mae", (self.layer(batch[0]) - batch[1]).abs().mean())

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.SGD(self.parameters(), lr=0.05)

    return Regression()


def fit(callback: PlateauCallback, tmp_path: Path, pl: ModuleType = lp, epochs: int = EPOCHS) -> lp.Trainer:
    torch.manual_seed(0)
    x = torch.randn(BATCHES * 8, 4)
    data = TensorDataset(x, x.sum(dim=1, keepdim=True))
    trainer = pl.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
        callbacks=[callback],
    )
    trainer.fit(regression(pl), DataLoader(data, batch_size=8), DataLoader(data, batch_size=8))
    return trainer


@pytest.fixture
def metrics_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "metrics.jsonl"
    monkeypatch.setenv("PLATEAU_METRICS_FILE", str(path))
    monkeypatch.setenv("PLATEAU_STOP_FILE", str(tmp_path / "stop"))
    monkeypatch.setattr(plateau_client, "_reporter", None)
    return path


@pytest.fixture
def sidecar(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[StoppingSidecar]:
    with stopping_sidecar(tmp_path, "val_loss", monkeypatch) as running:
        yield running


def test_reports_validation_metrics_at_each_validation_end(metrics_file: Path, tmp_path: Path) -> None:
    fit(PlateauCallback(), tmp_path)
    records = [json.loads(line) for line in metrics_file.read_text().splitlines()]
    # One report per epoch, none for the sanity check, at the global step; train_loss is not validation.
    assert [r["step"] for r in records] == [BATCHES * (e + 1) for e in range(EPOCHS)]
    assert all(set(r) == {"step", "time", "val_loss", "val_mae"} for r in records)
    assert records[-1]["val_loss"] < records[0]["val_loss"]
    assert not (tmp_path / "plateau-stop.ckpt").exists()  # no stop, no stop checkpoint


def test_reports_the_named_metrics_only(metrics_file: Path, tmp_path: Path) -> None:
    fit(PlateauCallback(metrics=["val_mae", "train_loss"]), tmp_path)
    records = [json.loads(line) for line in metrics_file.read_text().splitlines()]
    assert {k for r in records for k in r} == {"step", "time", "val_mae", "train_loss"}


@pytest.mark.parametrize("pl", [lp, pytorch_lightning], ids=["lightning.pytorch", "pytorch_lightning"])
def test_the_sidecar_stops_the_fit_and_the_callback_checkpoints(
    sidecar: StoppingSidecar, tmp_path: Path, pl: ModuleType
) -> None:
    epochs = 20
    trainer = fit(PlateauCallback(reporter=sidecar.reporter()), tmp_path, pl, epochs)
    evaluations = trainer.current_epoch  # the epochs it finished
    steps = [BATCHES * (e + 1) for e in range(evaluations)]
    # It stopped at the very evaluation whose report made the sidecar's rules say stop.
    assert evaluations < epochs and sidecar.stopped_at == steps[-1] == trainer.global_step
    logged = {name: float(value) for name, value in trainer.callback_metrics.items() if name.startswith("val")}
    assert logged.keys() == {"val_loss", "val_mae"}
    assert sidecar.series() == {name: (evaluations, pytest.approx(value, rel=1e-6)) for name, value in logged.items()}
    # The stop checkpoint, a Lightning one, under default_root_dir, at the step it stopped.
    checkpoint = torch.load(tmp_path / "plateau-stop.ckpt", weights_only=False)
    assert checkpoint["global_step"] == sidecar.stopped_at and "layer.weight" in checkpoint["state_dict"]


def test_an_absolute_checkpoint_path_and_none(metrics_file: Path, tmp_path: Path) -> None:
    (tmp_path / "stop").write_text("plateau: val_loss has not improved")
    trainer = fit(PlateauCallback(checkpoint=tmp_path / "elsewhere" / "last.ckpt"), tmp_path / "root")
    assert trainer.current_epoch == 1  # stopped after the first epoch's validation
    assert len(metrics_file.read_text().splitlines()) == 1
    assert (tmp_path / "elsewhere" / "last.ckpt").exists() and not (tmp_path / "root").exists()
    fit(PlateauCallback(checkpoint=None), tmp_path / "none")
    assert not (tmp_path / "none").exists()


@pytest.mark.parametrize(
    ("hidden", "base"),
    [("pytorch_lightning", "lightning.pytorch"), ("lightning", "pytorch_lightning")],
    ids=["lightning alone", "pytorch_lightning alone"],
)
def test_either_distribution_alone_is_enough(hidden: str, base: str) -> None:
    code = (
        f"import sys; sys.modules[{hidden!r}] = None; "
        "from plateau_client.integrations.lightning import PlateauCallback; "
        "print(PlateauCallback.__mro__[1].__module__)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().startswith(f"{base}.callbacks")
