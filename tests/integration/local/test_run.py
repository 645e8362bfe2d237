"""`plateau run` end to end: the real example trainer, a real sidecar scraped over HTTP, real
signals, and what a run leaves behind (status YAML, PNG, logs, timed event lines). Each run
takes a few seconds."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import pytest
import yaml

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[3]
TRAINER = REPO / "examples" / "trainer" / "train.py"
PLATEAU = Path(sys.executable).parent / "plateau"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
RUN_TIMEOUT = 90
# Event lines carry tenths of a second: a gap measured from them is good to 0.1 s either way.
RESOLUTION = 0.1
# How late a signal may be on a loaded machine (the loop looks every 0.05 s); well under the 5 s
# SIGKILL default, so a schedule that ignored the manifest's periods would still fail.
LATE = 1.0
_EVENT = re.compile(r"^\[\s*(?P<at>[0-9.]+)s\] plateau: (?P<text>.*)$")


def trainer_command(*args: str) -> list[str]:
    return [sys.executable, str(TRAINER), *args]


def manifest(
    command: list[str],
    stop: dict[str, Any],
    metrics: Optional[dict[str, Any]] = None,
    name: str = "local-test",
    pod: Optional[dict[str, Any]] = None,
) -> dict[str, Any]:
    container = {"name": "trainer", "image": "ghcr.io/example/trainer:1.0", "command": command}
    return {
        "apiVersion": "plateau.dev/v1alpha1",
        "kind": "TrainingJob",
        "metadata": {"name": name},
        "spec": {
            "template": {"spec": {"containers": [container], **(pod or {})}},
            "metrics": metrics or {"source": "file", "names": ["val_loss", "accuracy"]},
            "stop": stop,
        },
    }


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str
    run_dir: Path

    @property
    def status(self) -> dict[str, Any]:
        path = self.run_dir / "status.yaml"
        assert path.exists(), f"no status (exit {self.returncode}):\n{self.stdout[-3000:]}\n{self.stderr[-3000:]}"
        loaded = yaml.safe_load(path.read_text())
        assert isinstance(loaded, dict)
        return loaded

    def condition(self, type_: str) -> dict[str, Any]:
        return next(c for c in self.status["conditions"] if c["type"] == type_)

    def events(self) -> list[tuple[float, str]]:
        """The runner's timed event lines: (seconds since the trainer started, text)."""
        return [(float(m["at"]), m["text"]) for m in map(_EVENT.match, self.stdout.splitlines()) if m]

    def event_time(self, fragment: str) -> float:
        return next(at for at, text in self.events() if fragment in text)

    @property
    def trainer_log(self) -> str:
        return (self.run_dir / "trainer.log").read_text()

    def assert_png(self) -> None:
        data = (self.run_dir / "curve.png").read_bytes()
        assert data.startswith(PNG_SIGNATURE) and b"IEND" in data[-16:], "curve.png is not a PNG"


def write_manifest(directory: Path, doc: dict[str, Any]) -> Path:
    path = directory / "job.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def start(directory: Path, doc: dict[str, Any], *flags: str) -> tuple[subprocess.Popen[str], Path]:
    """`plateau run` on the manifest, in `directory`, as a process of its own (stdout not a TTY)."""
    run_dir = directory / "run"
    command = [str(PLATEAU), "run", str(write_manifest(directory, doc)), "--workdir", str(run_dir), "--interval", "0.2", *flags]
    process = subprocess.Popen(command, cwd=directory, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return process, run_dir


def run(directory: Path, doc: dict[str, Any], *flags: str) -> Result:
    process, run_dir = start(directory, doc, *flags)
    return finish(process, run_dir)


def finish(process: subprocess.Popen[str], run_dir: Path) -> Result:
    try:
        stdout, stderr = process.communicate(timeout=RUN_TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        stdout, stderr = process.communicate()
        raise AssertionError(f"plateau run did not finish in {RUN_TIMEOUT}s:\n{stdout[-3000:]}\n{stderr[-3000:]}") from None
    return Result(process.returncode, stdout, stderr, run_dir)


# A fast learning rate: val_loss flattens within ~15 epochs on digits.
FAST = ("--lr", "0.5", "--epochs", "300", "--sleep", "0.05")


def test_plateau_stops_the_trainer_through_the_stop_file(tmp_path: Path) -> None:
    stop = {"metric": {"name": "val_loss", "patience": 3, "minDelta": {"relative": 0.02}, "warmup": 2}, "gracePeriod": "30s"}
    result = run(tmp_path, manifest(trainer_command(*FAST), stop))

    assert result.returncode == 0, result.stderr
    status = result.status
    assert (status["phase"], status["reason"]) == ("Stopped", "Plateau")
    assert "has not improved" in status["message"]
    assert "stop requested (Plateau): checkpointed" in result.trainer_log  # the client saw the request
    assert (tmp_path / "checkpoints" / "checkpoint.json").exists()  # in the current directory
    assert "exited with code 0" in result.condition("StopRequested")["message"]
    assert "(signals sent: none)" in result.condition("StopRequested")["message"]
    assert result.condition("Ready")["message"] == status["message"]
    metric = status["metric"]
    assert metric["bestStep"] <= metric["lastStep"]
    assert 3 < status["evaluations"] < 300 and status["evaluations"] == metric["sidecarReports"]
    assert status["gpuHours"] == 0.0 and metric["bestHistory"][-1] == [metric["bestStep"], metric["best"]]
    assert result.condition("MetricsAvailable")["status"] == "True"
    assert status["startTime"] <= status["stopRequestedTime"] <= status["stopTime"]
    result.assert_png()


def test_target_reached_through_push(tmp_path: Path) -> None:
    stop = {"metric": {"name": "accuracy", "mode": "max", "target": 0.9}}
    metrics = {"source": "push", "names": ["accuracy"]}
    result = run(tmp_path, manifest(trainer_command(*FAST), stop, metrics=metrics))

    assert result.returncode == 0, result.stderr
    status = result.status
    assert (status["phase"], status["reason"]) == ("Succeeded", "TargetReached")
    assert status["metric"]["best"] >= 0.9
    result.assert_png()


def test_nan_stops_the_run_through_the_stdout_route(tmp_path: Path) -> None:
    stop = {"metric": {"name": "val_loss", "patience": 1000}}
    metrics = {
        "source": "stdout",
        "logFile": "/plateau/train.log",
        "pattern": r"step=(?P<step>\d+) val_loss=(?P<val_loss>\S+)",
    }
    result = run(tmp_path, manifest(trainer_command(*FAST, "--nan-at-epoch", "4"), stop, metrics=metrics))

    assert result.returncode == 0, result.stderr
    status = result.status
    assert (status["phase"], status["reason"]) == ("Stopped", "NotFinite")
    assert status["metric"]["nonFinite"] >= 1 and status["metric"]["bestStep"] < 4 * 22
    assert "val_loss=nan" in (result.run_dir / "plateau" / "train.log").read_text()  # the followed log, in the run dir
    result.assert_png()


def test_deadline_and_no_gpu_is_never_idle(tmp_path: Path) -> None:
    # No GPU here: utilisation is unknown, which must never count as idle.
    stop = {"maxDuration": "2s", "gpuIdle": {"below": 0.5, "for": "1m"}}
    result = run(tmp_path, manifest(trainer_command("--epochs", "1000", "--sleep", "0.1"), stop))

    assert result.returncode == 0, result.stderr
    status = result.status
    assert (status["phase"], status["reason"]) == ("Stopped", "DeadlineExceeded")
    assert 2.0 <= result.event_time("stop requested (DeadlineExceeded)") < 2.0 + LATE
    assert (result.condition("GpuMetricsAvailable")["status"], result.condition("GpuMetricsAvailable")["reason"]) == ("False", "NoGpu")
    assert status["gpuHours"] == 0.0
    assert "metric" not in status  # no metric rule: the curve of metrics.names[0] is still drawn
    result.assert_png()


def test_a_trainer_that_ignores_the_request_gets_sigterm_after_the_grace_period(tmp_path: Path) -> None:
    stop = {"metric": {"name": "accuracy", "mode": "max", "target": 0.5}, "gracePeriod": "1s"}
    result = run(tmp_path, manifest(trainer_command(*FAST, "--ignore-stop"), stop))

    assert result.returncode == 0, result.stderr
    assert result.status["reason"] == "TargetReached"
    assert "checkpointed" not in result.trainer_log
    requested = result.event_time("stop requested")
    terminated = result.event_time("sent SIGTERM")
    assert 1.0 - RESOLUTION <= terminated - requested < 1.0 + LATE
    assert "SIGKILL" not in result.stdout
    # The kernel's word for it: the trainer's wait status says SIGTERM ended it.
    assert "was ended by SIGTERM" in result.condition("StopRequested")["message"]
    assert "(signals sent: SIGTERM)" in result.condition("StopRequested")["message"]


def test_a_trainer_that_ignores_sigterm_too_gets_sigkill(tmp_path: Path) -> None:
    # `trap '' TERM` makes SIGTERM ignored, and an ignored signal stays ignored across exec.
    command = ["/bin/sh", "-c", "trap '' TERM; exec \"$0\" \"$@\"", *trainer_command(*FAST, "--ignore-stop")]
    stop = {"metric": {"name": "accuracy", "mode": "max", "target": 0.5}, "gracePeriod": "1s"}
    result = run(tmp_path, manifest(command, stop, pod={"terminationGracePeriodSeconds": 1}))

    assert result.returncode == 0, result.stderr
    requested = result.event_time("stop requested")
    terminated = result.event_time("sent SIGTERM")
    killed = result.event_time("sent SIGKILL")
    assert 1.0 - RESOLUTION <= terminated - requested < 1.0 + LATE
    assert 1.0 - RESOLUTION <= killed - terminated < 1.0 + LATE
    assert "was ended by SIGKILL" in result.condition("StopRequested")["message"]
    assert "(signals sent: SIGTERM, SIGKILL)" in result.condition("StopRequested")["message"]
    result.assert_png()


def test_a_forecast_stop_keeps_its_plus_minus_in_the_status(tmp_path: Path) -> None:
    forecast = {"lookahead": 3.0, "minGain": {"progress": 0.05}, "confidence": 0.7, "minEvaluations": 12}
    result = run(tmp_path, manifest(trainer_command(*FAST), {"metric": {"name": "val_loss", "patience": 1000, "forecast": forecast}}))

    assert result.returncode == 0, result.stderr
    assert (result.status["reason"], result.status["message"].split()[:3]) == ("Converged", ["val_loss", "expected", "to"])
    status_text = (result.run_dir / "status.yaml").read_text(encoding="utf-8")
    assert " ± " in status_text and "\\x" not in status_text  # written as it is, not escaped
    assert result.status["message"] in result.stdout  # printed as it is too


def test_a_failing_trainers_endless_progress_line_is_cut_in_the_status(tmp_path: Path) -> None:
    # A progress bar of 5 MB that never ends its line: the status quotes a bounded part of its last drawing.
    script = "import sys\nfor i in range(5): sys.stdout.write(f'{i}:' + 'x' * 1_000_000 + '\\r')\nsys.stdout.flush(); raise SystemExit(3)"
    result = run(tmp_path, manifest([sys.executable, "-c", script], {"maxDuration": "1m"}))

    assert result.returncode == 3
    message = result.status["message"]
    assert message.startswith("the trainer exited with code 3: 4:xxx") and message.endswith("x…")
    assert len(message) < 1100 and result.condition("Ready")["message"] == message
    assert (result.run_dir / "status.yaml").stat().st_size < 4000
    assert (result.run_dir / "trainer.log").stat().st_size == 5 * 1_000_003  # the log keeps every byte


def test_the_user_guides_tee_manifest_fails_pointing_at_the_docs(tmp_path: Path) -> None:
    # /plateau in a command is not mapped: tee cannot open the file, and the pipeline fails.
    command = ["bash", "-c", f"set -o pipefail; {sys.executable} -u {TRAINER} --epochs 2 | tee /plateau/train.log"]
    metrics = {"source": "stdout", "logFile": "/plateau/train.log", "pattern": r"step=(?P<step>\d+) val_loss=(?P<val_loss>\S+)"}
    result = run(tmp_path, manifest(command, {"maxDuration": "1m"}, metrics=metrics))

    assert result.returncode == 1
    assert (result.status["phase"], result.status["reason"]) == ("Failed", "WorkloadFailed")
    pointer = "the trainer's command or env names /plateau/train.log: plateau run maps only the paths it passes itself"
    assert pointer in result.status["message"] and "docs/local.md" in result.status["message"]
    assert f"plateau: note: {pointer}" in result.stdout  # said before the trainer starts, too


def test_a_crashing_trainer_fails_the_run_with_its_exit_code(tmp_path: Path) -> None:
    stop = {"metric": {"name": "val_loss", "patience": 1000}}
    result = run(tmp_path, manifest(trainer_command(*FAST, "--crash-at-epoch", "3"), stop))

    assert result.returncode == 1
    status = result.status
    assert (status["phase"], status["reason"]) == ("Failed", "WorkloadFailed")
    assert "exited with code 1: RuntimeError: crash requested at epoch 3" in status["message"]
    assert status["evaluations"] == 2
    result.assert_png()


def test_ctrl_c_stops_the_trainer_and_still_writes_the_status(tmp_path: Path) -> None:
    stop = {"metric": {"name": "val_loss", "patience": 1000}}
    process, run_dir = start(tmp_path, manifest(trainer_command(*FAST), stop))
    metrics = run_dir / "plateau" / "metrics.jsonl"
    deadline = time.monotonic() + 30
    while not (metrics.exists() and len(metrics.read_text().splitlines()) >= 3):
        assert time.monotonic() < deadline and process.poll() is None, "the trainer never reported"
        time.sleep(0.1)
    process.send_signal(signal.SIGINT)
    result = finish(process, run_dir)

    assert result.returncode == 130, result.stderr
    status = result.status
    assert (status["phase"], status["reason"]) == ("Stopped", "Manual")
    assert "SIGINT" in status["message"]
    assert "stop requested (Manual): checkpointed" in result.trainer_log  # the same handshake
    assert status["evaluations"] >= 3
    result.assert_png()


def test_dry_run_never_acts_and_reports_would_stop(tmp_path: Path) -> None:
    stop = {"metric": {"name": "val_loss", "patience": 2, "minDelta": {"relative": 0.05}}, "dryRun": True}
    result = run(tmp_path, manifest(trainer_command("--lr", "0.5", "--epochs", "25", "--sleep", "0.1"), stop))

    assert result.returncode == 0, result.stderr
    status = result.status
    assert (status["phase"], status["reason"]) == ("Succeeded", "Completed")
    assert "stopRequestedTime" not in status and not (result.run_dir / "etc" / "plateau" / "stop").exists()
    assert status["evaluations"] == 25  # it ran to the end
    would = status["wouldStop"]
    assert would["reason"] == "Plateau" and would["step"] < status["metric"]["lastStep"]
    result.assert_png()


# --- bad input: one line on stderr, a non-zero exit, no traceback --------------------------------


def _busy_port() -> socket.socket:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    return listener


def _bad_input(tmp_path: Path, doc: dict, *flags: str) -> str:
    path = write_manifest(tmp_path, doc)
    done = subprocess.run([str(PLATEAU), "run", str(path), *flags], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("plateau: error: "), done.stderr
    return lines[0]


GOOD = manifest(trainer_command("--epochs", "2"), {"maxDuration": "1m"})


@pytest.mark.parametrize(
    "doc, expected",
    [
        ({**GOOD, "spec": {**GOOD["spec"], "stop": {}}}, "stop has no rule"),
        (
            {**GOOD, "spec": {"workloadRef": {"apiVersion": "batch/v1", "kind": "Job", "name": "j"}, "stop": {"maxDuration": "1m"}}},
            "needs spec.template",
        ),
        (manifest(["no-such-trainer-here", "--epochs", "2"], {"maxDuration": "1m"}), "no-such-trainer-here: executable not found"),
        (manifest([sys.executable, str(TRAINER)], {"maxDuration": "1m"}, metrics={"source": "file", "path": "a-directory"}), "cannot read"),
    ],
    ids=["invalid-manifest", "workload-ref", "missing-command", "unreadable-metrics-file"],
)
def test_bad_input_is_one_line(tmp_path: Path, doc: dict, expected: str) -> None:
    (tmp_path / "a-directory").mkdir()
    assert expected in _bad_input(tmp_path, doc)


def test_a_metrics_port_in_use_is_one_line(tmp_path: Path) -> None:
    with _busy_port() as busy:
        port = busy.getsockname()[1]
        line = _bad_input(tmp_path, GOOD, "--metrics-port", str(port))
    assert f"--metrics-port {port}" in line and "not available" in line
