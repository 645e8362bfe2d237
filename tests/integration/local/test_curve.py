"""What `plateau run` draws on curve.png beyond the curve: the rule's target, and for a metric
that never arrived, which metrics did (read from the PNG's Description, which lists what the
legend and the note say; never its pixels)."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from tests.integration.local.test_run import FAST, Result, manifest, run, trainer_command

pytestmark = pytest.mark.integration


def curve_says(result: Result) -> list[str]:
    """What curve.png says: its legend entries, then any note."""
    result.assert_png()
    with Image.open(result.run_dir / "curve.png") as image:
        return str(image.info.get("Description", "")).splitlines()


def test_the_target_is_drawn(tmp_path: Path) -> None:
    stop = {"metric": {"name": "accuracy", "mode": "max", "target": 0.9}}
    result = run(tmp_path, manifest(trainer_command(*FAST), stop))

    assert result.returncode == 0, result.stderr
    assert result.status["reason"] == "TargetReached"
    said = curve_says(result)
    assert "target 0.9" in said and any(line.startswith("stop (TargetReached) at step ") for line in said), said


def test_a_metric_that_never_arrives_is_named_with_those_that_did(tmp_path: Path) -> None:
    stop = {"metric": {"name": "val_los", "patience": 1000}, "maxDuration": "2s"}
    result = run(tmp_path, manifest(trainer_command("--epochs", "1000", "--sleep", "0.1"), stop))

    assert result.returncode == 0, result.stderr
    assert result.status["reason"] == "DeadlineExceeded"
    said = curve_says(result)
    assert "no evaluations of val_los were reported" in said, said
    assert "(the trainer reported val_loss, accuracy)" in said, said
