"""The example trainer (examples/trainer/train.py): the runs later tests build on."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from itertools import pairwise
from pathlib import Path

import pytest

from plateau_sidecar import protocol as p

pytestmark = pytest.mark.integration

TRAINER = Path(__file__).resolve().parents[3] / "examples" / "trainer" / "train.py"


class Run:
    def __init__(self, tmp_path: Path) -> None:
        self.dir = tmp_path
        self.metrics = tmp_path / "metrics.jsonl"
        self.stop_file = tmp_path / "stop"
        self.checkpoints = tmp_path / "checkpoints"

    def argv(self, *args: str) -> list[str]:
        return [sys.executable, str(TRAINER), "--checkpoint-dir", str(self.checkpoints), *args]

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, p.ENV_METRICS_FILE: str(self.metrics), p.ENV_STOP_FILE: str(self.stop_file)}

    def __call__(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.argv(*args), env=self.env, capture_output=True, text=True, timeout=60)

    def losses(self) -> list[float]:
        return [json.loads(line)["val_loss"] for line in self.metrics.read_text().splitlines()]

    def checkpoint(self) -> dict[str, object]:
        return json.loads((self.checkpoints / "checkpoint.json").read_text())


@pytest.fixture
def run(tmp_path: Path) -> Run:
    return Run(tmp_path)


def test_a_default_run_learns_within_a_minute_and_checkpoints(run: Run) -> None:
    started = time.monotonic()
    result = run()
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - started < 60
    records = [json.loads(line) for line in run.metrics.read_text().splitlines()]
    assert len(records) == 30 and all({"step", "val_loss", "accuracy"} <= set(r) for r in records)
    assert records[-1]["accuracy"] > 0.9 and records[-1]["val_loss"] < records[0]["val_loss"] / 5
    assert [r["step"] for r in records] == sorted({r["step"] for r in records})
    assert run.checkpoint()["epoch"] == 30 and run.checkpoint()["stopped_by"] is None
    assert (run.checkpoints / "weights.npz").exists()
    assert result.stdout.splitlines()[0].startswith("epoch=1 step=")


def test_a_stop_request_mid_run_checkpoints_and_exits_0(run: Run) -> None:
    trainer = subprocess.Popen(
        run.argv("--epochs", "200", "--sleep", "0.1"), env=run.env, stdout=subprocess.PIPE, text=True
    )
    try:
        while not run.metrics.exists() or len(run.metrics.read_text().splitlines()) < 3:
            assert trainer.poll() is None
            time.sleep(0.05)
        run.stop_file.write_text("plateau: no improvement")
        assert trainer.wait(timeout=30) == 0
    finally:
        trainer.kill()
    reported = len(run.losses())
    assert 3 <= reported < 200
    assert run.checkpoint()["stopped_by"] == "plateau: no improvement"
    assert run.checkpoint()["epoch"] == reported  # the checkpoint holds the last evaluated epoch


def test_an_empty_stop_file_is_no_request_and_ignore_stop_keeps_going(run: Run) -> None:
    run.stop_file.write_text("")
    assert run("--epochs", "3").returncode == 0 and len(run.losses()) == 3
    run.stop_file.write_text("plateau: budget")
    assert run("--epochs", "4", "--ignore-stop").returncode == 0 and len(run.losses()) == 3 + 4
    assert run.checkpoint()["stopped_by"] is None


def test_a_crash_exits_non_zero_after_the_epochs_before_it(run: Run) -> None:
    result = run("--epochs", "10", "--crash-at-epoch", "4")
    assert result.returncode == 1 and "crash requested at epoch 4" in result.stderr
    assert len(run.losses()) == 3


def test_nan_from_the_given_epoch_on(run: Run) -> None:
    assert run("--epochs", "5", "--nan-at-epoch", "3").returncode == 0
    assert [math.isnan(v) for v in run.losses()] == [False, False, True, True, True]


def test_divergence_makes_val_loss_shoot_up(run: Run) -> None:
    assert run("--epochs", "6", "--diverge-at-epoch", "4").returncode == 0
    losses = run.losses()
    assert losses[2] < losses[0] and losses[3] > 10 * losses[2]


def test_a_small_learning_rate_plateaus_and_the_seed_fixes_the_run(run: Run) -> None:
    assert run("--epochs", "40", "--lr", "0.02", "--seed", "3").returncode == 0
    first = run.losses()
    gains = [a - b for a, b in pairwise(first)]
    assert sum(gains[-10:]) < sum(gains[:10]) / 4  # improvements fade
    run.metrics.unlink()
    assert run("--epochs", "40", "--lr", "0.02", "--seed", "3").returncode == 0
    assert run.losses() == first


def test_the_breast_cancer_dataset(run: Run) -> None:
    assert run("--dataset", "breast_cancer", "--epochs", "5").returncode == 0
    assert run.losses()[-1] < 0.3
