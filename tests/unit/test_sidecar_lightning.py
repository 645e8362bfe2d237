"""The PyTorch Lightning callback, with the real framework on CPU."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from plateau_sidecar import client
from plateau_sidecar.integrations.lightning import PlateauCallback

EPOCHS, BATCHES = 4, 5


class Regression(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(4, 1)

    def training_step(self, batch: list[torch.Tensor], _: int) -> torch.Tensor:
        loss = torch.nn.functional.mse_loss(self.layer(batch[0]), batch[1])
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch: list[torch.Tensor], _: int) -> None:
        loss = torch.nn.functional.mse_loss(self.layer(batch[0]), batch[1])
        self.log("val_loss", loss)
        self.log("val_mae", (self.layer(batch[0]) - batch[1]).abs().mean())

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.05)


def fit(callback: PlateauCallback, tmp_path: Path) -> pl.Trainer:
    torch.manual_seed(0)
    x = torch.randn(BATCHES * 8, 4)
    data = TensorDataset(x, x.sum(dim=1, keepdim=True))
    trainer = pl.Trainer(
        max_epochs=EPOCHS,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
        callbacks=[callback],
    )
    trainer.fit(Regression(), DataLoader(data, batch_size=8), DataLoader(data, batch_size=8))
    return trainer


@pytest.fixture
def metrics_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "metrics.jsonl"
    monkeypatch.setenv("PLATEAU_METRICS_FILE", str(path))
    monkeypatch.setenv("PLATEAU_STOP_FILE", str(tmp_path / "stop"))
    monkeypatch.setattr(client, "_reporter", None)
    return path


def test_reports_validation_metrics_at_each_validation_end(metrics_file: Path, tmp_path: Path) -> None:
    fit(PlateauCallback(), tmp_path)
    records = [json.loads(line) for line in metrics_file.read_text().splitlines()]
    # One report per epoch, none for the sanity check, at the global step; train_loss is not validation.
    assert [r["step"] for r in records] == [BATCHES * (e + 1) for e in range(EPOCHS)]
    assert all(set(r) == {"step", "time", "val_loss", "val_mae"} for r in records)
    assert records[-1]["val_loss"] < records[0]["val_loss"]


def test_reports_the_named_metrics_only(metrics_file: Path, tmp_path: Path) -> None:
    fit(PlateauCallback(metrics=["val_mae", "train_loss"]), tmp_path)
    records = [json.loads(line) for line in metrics_file.read_text().splitlines()]
    assert {k for r in records for k in r} == {"step", "time", "val_mae", "train_loss"}


def test_stops_the_trainer_when_the_operator_asks(metrics_file: Path, tmp_path: Path) -> None:
    (tmp_path / "stop").write_text("plateau: val_loss has not improved")
    trainer = fit(PlateauCallback(), tmp_path)
    assert trainer.current_epoch == 1  # stopped after the first epoch's validation
    assert len(metrics_file.read_text().splitlines()) == 1
