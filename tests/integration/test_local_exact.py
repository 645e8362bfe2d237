"""`plateau run` decides as replay does: with many reports per read, and across a resume.

The expected stop is `plateau replay`'s, on the trainer's own metrics file read after the run;
`plateau run` only ever saw the sidecar's /metrics.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from plateau.api import StopSpec
from plateau.cli.replay import Row, RunHistory, RunResult, replay_run
from tests.integration.test_local_run import manifest, run, trainer_command

pytestmark = pytest.mark.integration

BALANCED = {"preset": "balanced", "metric": {"name": "val_loss"}}


def replayed(stop: dict, run_dir: Path) -> tuple[RunResult, list[dict[str, float]]]:
    (path,) = run_dir.rglob("metrics.jsonl")
    sent = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    rows = [Row(int(r["step"]), {"val_loss": r["val_loss"]}, None, None) for r in sent]
    return replay_run(RunHistory("r", None, rows), StopSpec.model_validate(stop)), sent


def test_twenty_reports_per_read_would_stop_where_replay_stops(tmp_path: Path) -> None:
    interval = 2.0
    result = run(tmp_path, manifest(trainer_command("--lr", "0.3", "--epochs", "400"), {**BALANCED, "dryRun": True}),
                 "--interval", str(interval))
    assert result.returncode == 0, result.stderr
    expected, sent = replayed(BALANCED, result.run_dir)
    assert expected.stopped and expected.stop_step is not None
    per_read = len(sent) / max(1e-9, sent[-1]["time"] - sent[0]["time"]) * interval
    assert per_read >= 20, f"{per_read:.0f} reports per read"
    would = result.status["wouldStop"]
    assert (would["step"], would["reason"], would["message"]) == (expected.stop_step, expected.reason, expected.message)


def test_a_resumed_trainer_stops_as_replay_stops(tmp_path: Path) -> None:
    # At epoch 12 the trainer goes back to its checkpoint of epoch 4 and reports those steps again.
    command = trainer_command("--lr", "0.3", "--epochs", "300", "--sleep", "0.02", "--resume", "12:4")
    result = run(tmp_path, manifest(command, {**BALANCED, "gracePeriod": "20s"}))
    expected, _ = replayed(BALANCED, result.run_dir)
    status = result.status
    assert expected.resumes == 1 and status["metric"]["resumes"] == 1
    assert expected.stopped and status["reason"] == expected.reason
    assert status["message"].startswith(expected.message)
