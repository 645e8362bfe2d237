"""From a manifest to a local run's processes: environment, path mapping, command checks."""

from __future__ import annotations

import math
import os
import re
import sys
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from plateau.api import TrainingJob
from plateau.local.plan import DEFAULT_KILL_AFTER_SECONDS, RunOptions, check_options, expand, local_path, plan_run
from plateau.api.errors import InputError
from plateau_sidecar import protocol as p


def job(container: dict[str, Any] | None = None, metrics: dict[str, Any] | None = None, **pod: Any) -> TrainingJob:
    trainer = {"name": "trainer", "image": "example/trainer:1", "command": [sys.executable, "train.py"], **(container or {})}
    return TrainingJob.model_validate(
        {
            "apiVersion": "plateau.dev/v1alpha1",
            "kind": "TrainingJob",
            "metadata": {"name": "job", "namespace": "research"},
            "spec": {
                "template": {"spec": {"containers": [trainer], **pod}},
                "metrics": metrics or {},
                "stop": {"maxDuration": "1h"},
            },
        }
    )


@pytest.fixture
def here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_expand_follows_kubernetes() -> None:
    env = {"A": "1", "DIR": "/x"}
    assert expand("$(A)-$$(A)-$(B)-$(DIR)/f", env) == "1-$(A)-$(B)-/x/f"


def test_pod_paths_map_into_the_run_directory(tmp_path: Path) -> None:
    assert local_path("/plateau/metrics.jsonl", tmp_path) == tmp_path / "plateau" / "metrics.jsonl"
    assert local_path("/etc/plateau/stop", tmp_path) == tmp_path / "etc" / "plateau" / "stop"
    assert local_path("/plateau/../etc/plateau/stop", tmp_path) == tmp_path / "etc" / "plateau" / "stop"  # as in a pod
    assert local_path("/plateauish/x", tmp_path) == Path("/plateauish/x")
    assert local_path("logs/m.jsonl", tmp_path) == Path("logs/m.jsonl")


def test_the_pods_two_volumes_stay_apart_in_the_run_directory(here: Path) -> None:
    # In a pod /plateau/stop and /etc/plateau/stop are on different volumes: the trainer's log
    # must not become the stop request, nor its metrics file replace the spec.
    stdout = {"source": "stdout", "logFile": "/plateau/stop", "pattern": r"step=(?P<step>\d+) loss=(?P<loss>\S+)"}
    plan = plan_run(job(metrics=stdout), RunOptions(workdir=here / "run"))
    assert plan.output_file == here / "run" / "plateau" / "stop" != plan.stop_file
    plan = plan_run(job(metrics={"source": "file", "path": "/plateau/spec"}), RunOptions(workdir=here / "run"))
    spec_file = Path(plan.sidecar_env[p.ENV_SPEC_FILE])
    assert plan.metrics_file == here / "run" / "plateau" / "spec" != spec_file
    assert spec_file.read_text() == plan.spec.text  # still there for the sidecar


@pytest.mark.parametrize(("metrics", "expected"), [
    ({"source": "stdout", "logFile": "/etc/plateau/stop"}, "metrics.logFile /etc/plateau/stop: {run}/etc/plateau/stop is where plateau run keeps the stop file;"),
    ({"source": "stdout", "logFile": "/etc/plateau/stop.tmp"}, "is where plateau run keeps the stop file's draft;"),
    ({"source": "file", "path": "/plateau/../etc/plateau/spec"}, "metrics.path /plateau/../etc/plateau/spec: {run}/etc/plateau/spec is where plateau run keeps the spec file;"),
    ({"source": "file", "path": "run/trainer.log"}, "metrics.path run/trainer.log: {run}/trainer.log is where plateau run keeps the trainer's log;"),
    ({"source": "stdout", "logFile": "run/status.yaml"}, "is where plateau run keeps the status;"),
])
def test_a_path_on_one_of_plateau_runs_own_files_is_refused(here: Path, metrics: dict[str, Any], expected: str) -> None:
    if metrics["source"] == "stdout":
        metrics = {**metrics, "pattern": r"step=(?P<step>\d+) loss=(?P<loss>\S+)"}
    with pytest.raises(InputError, match=re.escape(expected.format(run=here / "run"))):
        plan_run(job(metrics=metrics), RunOptions(workdir=here / "run"))
    assert not (here / "run").exists()  # refused before anything is written


def test_pod_paths_a_command_spells_out_are_named_in_a_note(here: Path) -> None:
    tee = {"command": ["bash", "-c", "set -o pipefail; python -u train.py | tee /plateau/train.log"],
           "env": [{"name": "OUT", "value": "--out=/etc/plateau/x"}]}
    stdout = {"source": "stdout", "logFile": "/plateau/train.log", "pattern": r"step=(?P<step>\d+) loss=(?P<loss>\S+)"}
    plan = plan_run(job(tee, metrics=stdout), RunOptions(workdir=here / "run"))
    assert plan.unmapped_note is not None and plan.unmapped_note in plan.notes
    assert plan.unmapped_note.startswith("the trainer's command or env names /plateau/train.log, /etc/plateau/x: ")
    assert "need not tee" in plan.unmapped_note and "docs/local.md" in plan.unmapped_note
    # Paths plateau run passes itself are mapped; paths that only contain "plateau" are no pod paths.
    mapped = {"command": ["bash", "-c", "echo $PLATEAU_STOP_FILE $HOME/plateau/x /plateauish ./plateau", "$(PLATEAU_STOP_FILE)"]}
    assert plan_run(job(mapped), RunOptions(workdir=here / "run")).unmapped_note is None


def test_file_source_environment(here: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(p.ENV_PUSH_URL, "http://elsewhere/push")  # from the calling shell
    env = [{"name": "DATA", "value": "/data"}, {"name": "OUT", "value": "$(DATA)/out"}, {"name": "S", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}]
    plan = plan_run(job({"env": env, "args": ["--out", "$(OUT)", "--stop", "$(PLATEAU_STOP_FILE)"]}), RunOptions(workdir=here / "run"))

    run = here / "run"
    assert plan.trainer_env[p.ENV_METRICS_FILE] == plan.sidecar_env[p.ENV_METRICS_FILE] == str(run / "plateau" / "metrics.jsonl")
    assert plan.trainer_env[p.ENV_STOP_FILE] == str(run / "etc" / "plateau" / "stop")
    assert plan.trainer_env[p.ENV_TRAININGJOB] == "job" and plan.trainer_env[p.ENV_NAMESPACE] == "research"
    assert p.ENV_PUSH_URL not in plan.trainer_env and plan.sidecar_env[p.ENV_PUSH_ADDR] == "off"
    assert plan.trainer_env["OUT"] == "/data/out" and "S" not in plan.trainer_env
    assert plan.command == [sys.executable, "train.py", "--out", "/data/out", "--stop", str(run / "etc" / "plateau" / "stop")]
    assert any("image example/trainer:1 is ignored" in n for n in plan.notes)
    assert any("valueFrom" in n for n in plan.notes)
    assert plan.kill_after == DEFAULT_KILL_AFTER_SECONDS


def test_push_source_environment(here: Path) -> None:
    plan = plan_run(job(metrics={"source": "push"}), RunOptions(workdir=here / "run"))
    url = plan.trainer_env[p.ENV_PUSH_URL]
    assert url.startswith("http://127.0.0.1:") and url.endswith("/push")
    assert url.removeprefix("http://").removesuffix("/push") == plan.sidecar_env[p.ENV_PUSH_ADDR]
    assert p.ENV_METRICS_FILE not in plan.trainer_env and plan.metrics_file is None


def test_stdout_source_follows_the_output_plateau_run_writes(here: Path) -> None:
    metrics = {"source": "stdout", "logFile": "/plateau/train.log", "pattern": r"step=(?P<step>\d+) loss=(?P<loss>\S+)"}
    plan = plan_run(job(metrics=metrics, terminationGracePeriodSeconds=2), RunOptions(workdir=here / "run"))
    assert plan.output_file == here / "run" / "plateau" / "train.log"
    assert plan.sidecar_env[p.ENV_STDOUT_FILE] == str(plan.output_file)
    assert plan.kill_after == 2.0


def test_a_reused_workdir_starts_fresh(here: Path) -> None:
    run = here / "run"
    (run / "etc" / "plateau").mkdir(parents=True)
    (run / "plateau").mkdir()
    (run / "etc" / "plateau" / "stop").write_text("Plateau\n")  # a request left by the last run would stop this one at once
    (run / "plateau" / "metrics.jsonl").write_text('{"step": 1, "val_loss": 1}\n')
    plan_run(job(), RunOptions(workdir=run))
    assert not (run / "etc" / "plateau" / "stop").exists() and not (run / "plateau" / "metrics.jsonl").exists()


def test_default_run_directory(here: Path) -> None:
    first = plan_run(job(), RunOptions()).run_dir
    second = plan_run(job(), RunOptions()).run_dir
    assert first.parent == second.parent == here / "plateau-runs" and first != second
    assert first.name.startswith("job-")


@pytest.mark.parametrize(
    "container, expected",
    [
        ({"command": None, "args": ["x"]}, "command: not set"),
        ({"command": ["./missing.sh"]}, "./missing.sh: executable not found"),
    ],
)
def test_command_errors(here: Path, container: dict[str, Any], expected: str) -> None:
    with pytest.raises(InputError, match=expected):
        plan_run(job(container), RunOptions(workdir=here / "run"))
    assert not (here / "run").exists()  # nothing is created for a run that cannot start


@pytest.mark.parametrize("container, expected", [
    ({"command": ["python", 3]}, r'command\[1\]: Invalid value: "integer": .* must be of type string'),
    ({"command": "python train.py"}, r'command: Invalid value: "string": .* must be of type array'),
])
def test_a_command_the_api_server_would_refuse_is_refused_before_the_run(container: dict[str, Any], expected: str) -> None:
    with pytest.raises(ValidationError, match=expected):
        job(container)


def test_other_errors(here: Path) -> None:
    with pytest.raises(InputError, match="--interval 0: must be a number of seconds above 0"):
        plan_run(job(), RunOptions(interval=0))
    with pytest.raises(InputError, match="--status-out"):
        plan_run(job(), RunOptions(status_out=here / "no" / "status.yaml"))
    with pytest.raises(InputError, match="metrics.logFile .*cannot read"):
        (here / "log-dir").mkdir()
        metrics = {"source": "stdout", "logFile": "log-dir", "pattern": r"step=(?P<step>\d+) loss=(?P<loss>\S+)"}
        plan_run(job(metrics=metrics), RunOptions(workdir=here / "run"))


@pytest.mark.parametrize(("options", "expected"), [
    (RunOptions(interval=math.nan), "--interval nan: must be a number of seconds above 0"),
    (RunOptions(interval=math.inf), "--interval inf: must be a number of seconds above 0"),
    (RunOptions(interval=-1), "--interval -1:"),
    (RunOptions(interval=1e300), "at most 3600"),
    (RunOptions(metrics_port=70000), "--metrics-port 70000: not a TCP port"),
    (RunOptions(metrics_port=-1), "--metrics-port -1: not a TCP port"),
    (RunOptions(prometheus="localhost:9090"), "--prometheus localhost:9090: not an http"),
    (RunOptions(prometheus="ftp://prometheus"), "not an http"),
    (RunOptions(prometheus="http://prometheus:99999"), "--prometheus http://prometheus:99999: Port out of range"),
])
def test_numbers_and_urls_from_flags_are_checked_before_anything(options: RunOptions, expected: str) -> None:
    with pytest.raises(InputError, match=re.escape(expected)):
        check_options(options)


def test_a_status_out_that_cannot_be_written_is_refused_before_the_run(here: Path) -> None:
    (here / "a-dir").mkdir()
    with pytest.raises(InputError, match="--status-out .*a-dir: cannot read: a directory"):
        plan_run(job(), RunOptions(status_out=here / "a-dir"))
    with pytest.raises(InputError, match="--status-out /sys/kernel/status.yaml: cannot write"):
        plan_run(job(), RunOptions(status_out=Path("/sys/kernel/status.yaml")))  # read-only, even to root
    kept = here / "old-status.yaml"
    kept.write_text("kept")
    plan_run(job(), RunOptions(status_out=kept, workdir=here / "run"))
    plan_run(job(), RunOptions(status_out=here / "new.yaml", workdir=here / "run"))
    assert kept.read_text() == "kept" and not (here / "new.yaml").exists()  # tried, not written


@pytest.mark.parametrize("kind", ["fifo", "device"])
def test_a_metrics_path_that_is_no_regular_file_is_refused_without_opening_it(here: Path, kind: str) -> None:
    path = here / "metrics.fifo" if kind == "fifo" else Path("/dev/urandom")
    if kind == "fifo":
        os.mkfifo(path)
    with pytest.raises(InputError, match="metrics file .*: cannot read: not a regular file"):
        plan_run(job(metrics={"source": "file", "names": ["val_loss"], "path": str(path)}), RunOptions(workdir=here / "run"))


def test_a_read_only_workdir_is_refused_before_the_run() -> None:
    with pytest.raises(InputError, match="run directory /sys/kernel: cannot write"):
        plan_run(job(), RunOptions(workdir=Path("/sys/kernel")))
