"""Ctrl-C to `plateau run`, end to end: a real trainer that checkpoints on SIGTERM, real
signals, and the marks the stop leaves on curve.png (read from the PNG's Description, which
lists what the legend and the note say)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import pytest

from tests.integration.local.test_curve import curve_says
from tests.integration.local.test_run import FAST, Result, finish, manifest, start, trainer_command

pytestmark = pytest.mark.integration

# Reports val_loss every 0.05 s and ignores the stop file, so only signals end it. On SIGTERM it
# writes `sigterm`, then either checkpoints for 0.5 s and exits 0, or (`ignore`) carries on.
TRAINER = """
import json, os, signal, sys, time
from pathlib import Path

def on_term(signum, frame):
    Path("sigterm").write_text("")
    if sys.argv[1] == "checkpoint":
        time.sleep(0.5)
        Path("checkpoint").write_text("saved")
        sys.exit(0)

signal.signal(signal.SIGTERM, on_term)
step = 0
while True:
    step += 1
    with open(os.environ["PLATEAU_METRICS_FILE"], "a") as f:
        f.write(json.dumps({"step": step, "val_loss": 1.0 / step}) + "\\n")
    time.sleep(0.05)
"""
# Long enough that an early SIGKILL can only come from a Ctrl-C.
KILL_AFTER = 30
FILE_METRICS = {"source": "file", "names": ["val_loss"]}


def _until(done: Callable[[], bool], process: subprocess.Popen[str], what: str) -> None:
    deadline = time.monotonic() + 30
    while not done():
        assert time.monotonic() < deadline and process.poll() is None, f"never: {what}"
        time.sleep(0.05)


def _reported(run_dir: Path, lines: int) -> Callable[[], bool]:
    metrics = run_dir / "plateau" / "metrics.jsonl"
    return lambda: metrics.exists() and len(metrics.read_text().splitlines()) >= lines


def _interrupted(tmp_path: Path, on_term: str, ctrl_cs: int) -> Result:
    """`plateau run` on the trainer above, with `ctrl_cs` SIGINTs, each once the last has acted."""
    (tmp_path / "trainer.py").write_text(TRAINER)
    doc = manifest([sys.executable, "trainer.py", on_term], {"maxDuration": "10m"}, FILE_METRICS, pod={"terminationGracePeriodSeconds": KILL_AFTER})
    process, run_dir = start(tmp_path, doc)
    _until(_reported(run_dir, 5), process, "the trainer reported")
    process.send_signal(signal.SIGINT)
    _until((run_dir / "etc" / "plateau" / "stop").exists, process, "the stop request")
    if ctrl_cs >= 2:
        process.send_signal(signal.SIGINT)
    if ctrl_cs >= 3:
        _until((tmp_path / "sigterm").exists, process, "SIGTERM reached the trainer")
        process.send_signal(signal.SIGINT)
    return finish(process, run_dir)


def test_a_second_ctrl_c_sends_sigterm_now_and_leaves_time_to_checkpoint(tmp_path: Path) -> None:
    result = _interrupted(tmp_path, "checkpoint", ctrl_cs=2)

    assert result.returncode == 130, result.stderr
    assert (tmp_path / "checkpoint").read_text() == "saved"  # 0.5 s after SIGTERM, not killed first
    assert result.event_time("sent SIGTERM") - result.event_time("stop requested") < 5.0  # before the 5 s Ctrl-C grace
    assert "sent SIGKILL" not in result.stdout
    taken = result.condition("StopRequested")["message"]
    assert "exited with code 0" in taken and "(signals sent: SIGTERM)" in taken


def test_a_third_ctrl_c_kills_at_once(tmp_path: Path) -> None:
    result = _interrupted(tmp_path, "ignore", ctrl_cs=3)

    assert result.returncode == 130, result.stderr
    killed = result.event_time("sent SIGKILL")
    assert killed - result.event_time("sent SIGTERM") < KILL_AFTER / 2
    taken = result.condition("StopRequested")["message"]
    assert "was ended by SIGKILL" in taken and "(signals sent: SIGTERM, SIGKILL)" in taken


def test_a_manual_stop_is_marked_on_the_curve(tmp_path: Path) -> None:
    stop = {"metric": {"name": "val_loss", "patience": 1000}}
    process, run_dir = start(tmp_path, manifest(trainer_command(*FAST), stop))
    _until(_reported(run_dir, 3), process, "the trainer reported")
    # Once plateau run has read an evaluation too: the mark is at the last step read.
    _until(lambda: "val_loss" in (process.stdout.readline() if process.stdout else ""), process, "a progress line")
    process.send_signal(signal.SIGINT)
    result = finish(process, run_dir)

    assert result.returncode == 130, result.stderr
    assert result.status["reason"] == "Manual"
    said = curve_says(result)
    marks = [line for line in said if line.startswith("Manual stop at step ")]
    assert len(marks) == 1, said
    assert 1 <= int(marks[0].removeprefix("Manual stop at step ")) <= result.status["metric"]["lastStep"]
