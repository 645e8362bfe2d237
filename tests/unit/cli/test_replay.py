"""`plateau replay`: CSV input, errors naming file/line/column, JSON output, cohorts."""

from __future__ import annotations

import gzip
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from plateau.api import StopSpec
from plateau.api.errors import InputError
from plateau.cli.replay import load_stop_spec, read_runs, replay
from plateau_sidecar.store import step_of


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "plateau.cli", *args], capture_output=True, text=True, timeout=60)


CURVES = """run,step,val_loss,acc,time,gpu_util,notes
a,1,1.0,0.1,0,0.9,x
a,2,0.8,0.2,60,0.9,x
b,1,2.0,0.1,0,0.9,y
a,3,0.8,0.3,120,0.9,x
b,2,1.0,0.5,60,0.9,y
a,4,0.8,0.3,180,0.9,x
b,3,0.5,0.6,120,0.9,y
"""


def test_replay_cli_json_one_object_per_run(tmp_path: Path) -> None:
    spec = write(tmp_path, "s.yaml", "stop:\n  metric: {name: val_loss, patience: 2}\n")
    curves = write(tmp_path, "c.csv", CURVES)
    out = cli("replay", str(spec), str(curves), "--json")
    assert out.returncode == 0, out.stderr
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    assert rows == [
        {"run": "a", "stopped": True, "stop_step": 4, "reason": "Plateau", "best_step": 2, "best_value": 0.8, "evaluations": 4, "planned": 4, "resumes": 0, "missing": 0,
         "hours_saved": 0.0, "gpu_hours_saved": 0.0},
        {"run": "b", "stopped": False, "stop_step": 3, "reason": None, "best_step": 3, "best_value": 0.5, "evaluations": 3, "planned": 3, "resumes": 0, "missing": 0,
         "hours_saved": 0.0, "gpu_hours_saved": 0.0},
    ]


def test_replay_table_and_gzip_and_renamed_columns(tmp_path: Path) -> None:
    spec = write(tmp_path, "s.yaml", "stop:\n  metric: {name: acc, mode: max, target: 0.55}\n")
    curves = tmp_path / "c.csv.gz"
    curves.write_bytes(gzip.compress(CURVES.replace("run,step", "trial,epoch").encode()))
    out = cli("replay", str(spec), str(curves), "--run-column", "trial", "--step-column", "epoch")
    assert out.returncode == 0, out.stderr
    assert "TargetReached" in out.stdout and "1/2 runs stopped early" in out.stdout


def test_full_training_job_manifest_is_accepted_as_spec() -> None:
    stop = load_stop_spec(Path("examples/plateau-patience.yaml"))
    assert stop.metric is not None and stop.metric.patience == 10


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("run,step,val_loss\na,1,1.0\na,2,oops\n", "c.csv:3: column 'val_loss': 'oops' is not a number"),
        ("run,step,val_loss\na,1,1.0\na,1.5,1.0\n", "c.csv:3: column 'step': '1.5' is not a non-negative whole number"),
        ("run,step,loss\na,1,1.0\n", "c.csv:1: missing column(s) 'val_loss'"),
        ("run,step,val_loss\na,1\n", "c.csv:2: expected 3 fields, found 2"),
        ("run,step,val_loss,gpu_util\na,1,1.0,7\n", "c.csv:2: column 'gpu_util': 7.0 is outside 0..1"),
        ("run,step,val_loss,gpus\na,1,1.0,-1\n", "c.csv:2: column 'gpus': -1 is outside 0..100000"),
        ("run,step,val_loss,gpus\na,1,1.0,inf\n", "c.csv:2: column 'gpus': 'inf' is not a finite number"),
        ("run,step,val_loss\na,1,1.0\na,9223372036854775808,1.0\n",
         "c.csv:3: column 'step': '9223372036854775808' is above 9007199254740991, the largest step the sidecar accepts"),
        ("run,step,val_loss\na,1e20,1.0\n", "c.csv:2: column 'step': '1e20' is above 9007199254740991"),
        ("run,step,val_loss,time\na,1,1.0,0\na,2,1.0,1e308\n", "c.csv:3: column 'time': 1e+308 is outside -9.0072e+15..9.0072e+15 seconds"),
        ("run,step,val_loss,time\na,1,1.0,-1e17\n", "c.csv:2: column 'time': -1e+17 is outside"),
        ("", "c.csv: empty file"),
    ],
)
def test_bad_csv_names_file_line_and_column(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, "c.csv", text)
    with pytest.raises(InputError) as info:
        read_runs(path, ["val_loss"])
    assert message in str(info.value)


def test_replay_takes_exactly_the_steps_the_sidecar_takes(tmp_path: Path) -> None:
    """Replay's decision is the cluster's: a step the sidecar refuses never reaches the engine."""
    for step in (0, 2**53 - 1, 2**53, 2**63, 10**20):
        try:
            step_of({"step": step})
            sidecar = True
        except ValueError:
            sidecar = False
        try:
            read_runs(write(tmp_path, "c.csv", f"run,step,val_loss\na,{step},1.0\n"), ["val_loss"])
            replayed = True
        except InputError:
            replayed = False
        assert replayed == sidecar == (step < 2**53), step


def test_cli_bad_input_is_one_line_and_exit_2(tmp_path: Path) -> None:
    spec = write(tmp_path, "s.yaml", "stop:\n  metric: {name: val_loss, patience: 0}\n")
    out = cli("replay", str(spec), str(write(tmp_path, "c.csv", CURVES)))
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        f"plateau: error: {spec}: stop.metric.patience: Input should be greater than or equal to 1"
    ]
    missing = cli("replay", str(tmp_path / "none.yaml"), "x.csv")
    assert missing.returncode == 2 and "cannot read" in missing.stderr and "Traceback" not in missing.stderr


def test_empty_metric_cell_is_missing_data(tmp_path: Path) -> None:
    path = write(tmp_path, "c.csv", "run,step,val_loss\na,1,1.0\na,2,\na,3,nan\n")
    runs = read_runs(path, ["val_loss"])
    assert "val_loss" not in runs[0].rows[1].values  # not recorded: no value, not a NaN
    assert math.isnan(runs[0].rows[2].values["val_loss"])  # written NaN: a reported NaN


def test_time_column_drives_deadline_and_gpu_idle(tmp_path: Path) -> None:
    curves = write(tmp_path, "c.csv", "run,step,val_loss,time,gpu_util\n" + "".join(
        f"a,{i},1.0,{60 * i},{0.9 if i < 3 else 0.0}\n" for i in range(10)))
    idle = StopSpec.model_validate({"gpuIdle": {"below": 0.05, "for": "3m"}})
    deadline = StopSpec.model_validate({"maxDuration": "4m"})
    histories = read_runs(curves, [])
    # idle from t=180 (step 3); the window is covered once 3 minutes of idle samples exist (t=360)
    assert next(replay(histories, idle)).stop_step == 6
    assert next(replay(histories, deadline)).stop_step == 4


def test_gpu_hours_saved_count_the_recorded_time_after_the_stop(tmp_path: Path) -> None:
    # Run a plateaus from step 2 and stops at step 4 (patience 2) of 7; evaluations every 30
    # minutes on 4 GPUs, 2 GPUs in the last interval: 1.5 hours and 0.5 x (4 + 4 + 2) GPU-hours.
    rows = [f"a,{i},{max(1.0 - 0.1 * i, 0.8):g},{1800 * i},{4 if i < 7 else 2}" for i in range(1, 8)]
    rows += [f"b,{i},{1.0 / i},{1800 * i},4" for i in range(1, 4)]  # improving: never stopped
    curves = write(tmp_path, "c.csv", "run,step,val_loss,time,gpus\n" + "\n".join(rows) + "\n")
    spec = write(tmp_path, "s.yaml", "stop:\n  metric: {name: val_loss, patience: 2}\n")
    a, b = replay(read_runs(curves, ["val_loss"]), load_stop_spec(spec))
    assert (a.stop_step, a.hours_saved, a.gpu_hours_saved) == (4, 1.5, 0.5 * 4 + 0.5 * 4 + 0.5 * 2)
    assert (b.stopped, b.hours_saved, b.gpu_hours_saved) == (False, 0.0, 0.0)
    out = cli("replay", str(spec), str(curves))
    assert out.returncode == 0, out.stderr
    assert "5 GPU-hours (1.5 hours) would have been saved" in out.stdout
    # gpu_util without gpus: one GPU per run; time alone: hours, and GPU-hours unknown.
    util = write(tmp_path, "u.csv", "run,step,val_loss,time,gpu_util\n" + "".join(
        f"a,{i},1.0,{3600 * i},0.5\n" for i in range(1, 6)))
    (run,) = replay(read_runs(util, ["val_loss"]), load_stop_spec(spec))
    assert (run.stop_step, run.hours_saved, run.gpu_hours_saved) == (3, 2.0, 2.0)
    bare = write(tmp_path, "t.csv", "run,step,val_loss,time\n" + "".join(f"a,{i},1.0,{3600 * i}\n" for i in range(1, 6)))
    (run,) = replay(read_runs(bare, ["val_loss"]), load_stop_spec(spec))
    assert (run.hours_saved, run.gpu_hours_saved) == (2.0, None)
    assert "2 hours of training would have been saved (add `gpus` for GPU-hours)" in cli(
        "replay", str(spec), str(bare)).stdout
    assert "would have been saved" not in cli("replay", str(spec), str(write(tmp_path, "n.csv", CURVES.replace(
        ",time,gpu_util", ",t,u")))).stdout


def test_cohort_replay_in_waves_compares_at_the_same_step(tmp_path: Path) -> None:
    rows = ["run,step,val_loss,sweep"]
    good = [1.0, 0.6, 0.4, 0.3, 0.25]
    bad = [1.0, 0.9, 0.85, 0.84, 0.83]
    for r in range(4):
        rows += [f"g{r},{s + 1},{v + r * 0.01},s1" for s, v in enumerate(good)]
    rows += [f"bad,{s + 1},{v},s1" for s, v in enumerate(bad)]
    curves = write(tmp_path, "c.csv", "\n".join(rows) + "\n")
    stop = StopSpec.model_validate({"metric": {"name": "val_loss"},
                                    "cohort": {"selector": {"matchLabels": {"a": "b"}}, "minJobs": 3, "startStep": 2}})
    results = {r.run: r for r in replay(read_runs(curves, ["val_loss"], cohort_column="sweep"), stop, parallel=2)}
    assert results["bad"].stopped and results["bad"].stop_step == 2
    assert results["bad"].reason == "CohortUnderperforming"
    # With 2 at once, g0/g1 ran first with one peer each: below minJobs, so they were not judged.
    assert not results["g0"].stopped and not results["g1"].stopped
    # All at once: 4 peers each. At step 2 the peers of g3 are 0.60, 0.61, 0.62 and 0.90, a true
    # median of 0.615, so g3 (0.63) stops too; a mean of the peers (0.6825) would have kept it.
    together = {r.run: r for r in replay(read_runs(curves, ["val_loss"], cohort_column="sweep"), stop, parallel=5)}
    assert together["bad"].stop_step == 2
    assert together["g3"].stop_step == 2 and "median 0.615" in together["g3"].message
    assert not together["g0"].stopped


def test_cohort_spec_needs_cohort_column(tmp_path: Path) -> None:
    out = cli("replay", "examples/cohort-median.yaml", str(write(tmp_path, "c.csv", CURVES)))
    assert out.returncode == 2 and "--cohort-column" in out.stderr
