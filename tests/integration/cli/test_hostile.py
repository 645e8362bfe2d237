"""Hostile input to the `plateau` command line (issue 15): replay CSVs, manifests and specs,
`plateau run` options, and what `plateau run --prometheus` reads.

Each case gets a one-line error naming the file, line and field with a non-zero exit, or is
contained (counted and ignored); never a traceback, a hang, unbounded memory or a stop driven
by bad data. The commands run as processes, with this checkout's code.
"""

from __future__ import annotations

import gzip
import http.server
import json
import math
import os
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from plateau.api import StopSpec
from plateau.engine.history import metric_spec_for

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(str(ROOT / d) for d in ("operator", "sidecar", "."))}


def plateau(*args: str, cwd: Path | None = None, timeout: float = 60,
            max_memory: int | None = None) -> subprocess.CompletedProcess[str]:
    """`max_memory`: bytes of address space, so that a bug that grows without end fails the
    test with a MemoryError rather than take the machine (not for `run`s that start Prometheus)."""
    def limit() -> None:
        if max_memory is not None:
            resource.setrlimit(resource.RLIMIT_AS, (max_memory, max_memory))
    return subprocess.run([sys.executable, "-m", "plateau.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env=ENV, cwd=cwd, preexec_fn=limit)


def one_line_error(done: subprocess.CompletedProcess[str], *expected: str) -> str:
    """The run failed with exit 2 and one stderr line holding every `expected` part."""
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2, (done.returncode, done.stderr[-2000:])
    assert "Traceback" not in done.stderr and len(lines) == 1, done.stderr[-2000:]
    for part in expected:
        assert part in lines[0], lines[0]
    return lines[0]


# --- 1. replay CSVs ----------------------------------------------------------------------------

SPEC = "stop:\n  metric: {name: val_loss, patience: 3}\n  maxDuration: 1h\n"
GPU_SPEC = "stop:\n  metric: {name: val_loss, patience: 3}\n  gpuIdle: {below: 0.1, for: 2m}\n"


def replay(tmp_path: Path, csv: str | bytes, *flags: str, spec: str = SPEC, name: str = "c.csv") -> subprocess.CompletedProcess[str]:
    (tmp_path / "s.yaml").write_text(spec)
    path = tmp_path / name
    path.write_bytes(csv if isinstance(csv, bytes) else csv.encode())
    return plateau("replay", str(tmp_path / "s.yaml"), str(path), *flags)


def no_regular_file(fifo: Path, target: str) -> Path:
    """A FIFO at `fifo`, its directory, or the device `target` names."""
    if target == "fifo":
        os.mkfifo(fifo)
        return fifo
    return fifo.parent if target == "directory" else Path(target)


def not_json(constant: str) -> float:
    raise ValueError(f"{constant} is not JSON")


def runs(done: subprocess.CompletedProcess[str]) -> list[dict]:
    """The `--json` lines, parsed strictly: NaN or Infinity in them fails the test."""
    assert done.returncode == 0, done.stderr
    return [json.loads(line, parse_constant=not_json) for line in done.stdout.splitlines()]


def test_replay_empty_metric_cells_are_skipped_and_counted_not_a_nan_stop(tmp_path: Path) -> None:
    csv = "run,step,val_loss\na,1,1.0\na,2,\na,3,0.9\na,4,\na,5,0.8\n"
    [run] = runs(replay(tmp_path, csv, "--json"))
    assert (run["stopped"], run["reason"], run["missing"], run["best_value"]) == (False, None, 2, 0.8)
    table = replay(tmp_path, csv)
    assert table.returncode == 0 and "2 rows had no value of val_loss and were skipped" in table.stdout
    # A NaN written as such is a reported NaN: that one does stop.
    [nan] = runs(replay(tmp_path, "run,step,val_loss\na,1,1.0\na,2,nan\na,3,0.9\n", "--json"))
    assert nan["reason"] == "NotFinite"


@pytest.mark.parametrize("value", ["inf", "nan", "-inf", "Infinity"])
@pytest.mark.parametrize(("column", "spec"), [("time", SPEC), ("gpu_util", GPU_SPEC)])
def test_replay_non_finite_time_or_utilisation_is_rejected_with_its_line(tmp_path: Path, value: str, column: str, spec: str) -> None:
    row = {"time": "60", "gpu_util": "0.5", column: value}
    csv = f"run,step,val_loss,time,gpu_util\na,1,1.0,0,0.5\na,2,0.9,{row['time']},{row['gpu_util']}\n"
    one_line_error(replay(tmp_path, csv, "--json", spec=spec), "c.csv:3:", f"column {column!r}", "not a finite number")


def test_replay_step_beyond_what_the_sidecar_accepts_is_one_line(tmp_path: Path) -> None:
    for step in ("9223372036854775808", "1e20"):
        csv = f"run,step,val_loss\na,1,1.0\na,{step},0.9\n"
        one_line_error(replay(tmp_path, csv, "--json"), "c.csv:3:", "column 'step'", "above 9007199254740991")


def test_replay_time_too_large_to_span_is_refused_and_json_stays_strict(tmp_path: Path) -> None:
    target = "stop:\n  metric: {name: val_loss, target: 2}\n"  # stops at the first row: the rest is saved
    csv = "run,step,val_loss,time\na,1,1,0\na,2,1,{big}\na,3,1,-{big}\na,4,1,{big}\n"
    one_line_error(replay(tmp_path, csv.format(big="1e308"), "--json", spec=target), "c.csv:3:", "column 'time'", "outside")
    [run] = runs(replay(tmp_path, csv.format(big=2**53), "--json", spec=target))  # the largest times taken
    assert run["stop_step"] == 1 and run["hours_saved"] == pytest.approx(3 * 2**53 / 3600)  # the step back charges nothing


def test_replay_corrupt_gzip_is_one_line(tmp_path: Path) -> None:
    good = gzip.compress(("run,step,val_loss\n" + "".join(f"a,{i},{1 / i}\n" for i in range(1, 2000))).encode())
    corrupt = good[:40] + bytes(b ^ 0x5A for b in good[40:80]) + good[80:]
    one_line_error(replay(tmp_path, corrupt, name="c.csv.gz"), "c.csv.gz")
    one_line_error(replay(tmp_path, good[: len(good) // 2], name="c.csv.gz"), "c.csv.gz")  # cut short
    one_line_error(replay(tmp_path, b"not gzip at all", name="c.csv.gz"), "c.csv.gz")


def test_replay_duplicated_column_is_an_error(tmp_path: Path) -> None:
    one_line_error(replay(tmp_path, "run,step,val_loss,val_loss\na,1,1.0,9.0\n"), "c.csv:1:", "'val_loss' appears twice")


@pytest.mark.parametrize("limit", ["-1", "0"])
def test_replay_limit_below_one_is_rejected(tmp_path: Path, limit: str) -> None:
    one_line_error(replay(tmp_path, "run,step,val_loss\na,1,1.0\nb,1,1.0\n", "--limit", limit), "--limit")


def test_replay_accepts_a_utf8_byte_order_mark(tmp_path: Path) -> None:
    [run] = runs(replay(tmp_path, b"\xef\xbb\xbfrun,step,val_loss\na,1,1.0\na,2,0.9\n", "--json"))
    assert run["run"] == "a" and run["evaluations"] == 2


def test_replay_error_after_a_multiline_field_names_the_line(tmp_path: Path) -> None:
    csv = 'run,step,val_loss,notes\na,1,1.0,"one\ntwo\nthree"\na,2,oops,x\n'
    one_line_error(replay(tmp_path, csv), "c.csv:5:", "'oops' is not a number")


def test_replay_non_utf8_csv_is_one_line(tmp_path: Path) -> None:
    one_line_error(replay(tmp_path, b"run,step,val_loss\na,1,1.0\n\xff\xfe,2,1.0\n"), "c.csv", "not UTF-8")


def test_replay_table_of_many_runs_is_plain_and_complete(tmp_path: Path) -> None:
    csv = "run,step,val_loss\n" + "".join(f"r{i},{s},{1 / s}\n" for s in (1, 2) for i in range(3000))
    done = replay(tmp_path, csv)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split()[:2] == ["run", "stopped"] and len(lines) == 3000 + 3
    assert lines[-1].startswith("0/3000 runs stopped early")


@pytest.mark.parametrize("target", ["fifo", "/dev/zero", "directory"])
def test_replay_curves_that_are_no_regular_file_are_refused_at_once(tmp_path: Path, target: str) -> None:
    (tmp_path / "s.yaml").write_text(SPEC)
    path = no_regular_file(tmp_path / "c.csv", target)
    done = plateau("replay", str(tmp_path / "s.yaml"), str(path), timeout=20, max_memory=2 << 30)
    one_line_error(done, str(path), "cannot read")


# --- 2. manifests and specs ------------------------------------------------------------------

def deep_yaml(levels: int) -> str:
    return "apiVersion: plateau.dev/v1alpha1\nkind: TrainingJob\nmetadata: {name: x}\nspec: " + "[" * levels + "]" * levels + "\n"


def laughs() -> str:
    text = "kind: TrainingJob\na: &a [x, x, x, x, x, x, x, x, x, x]\n"
    for i in range(1, 9):
        previous = "a" if i == 1 else f"b{i - 1}"
        text += f"b{i}: &b{i} [" + ", ".join([f"*{previous}"] * 10) + "]\n"
    return text


MANIFESTS = {
    "latin1": ("kind: TrainingJob\nmetadata: {name: caf\xe9}\n".encode("latin-1"), ("m.yaml:2:", "not UTF-8")),
    "utf16": ("kind: TrainingJob\nmetadata: {name: x}\n".encode("utf-16"), ("m.yaml:1:1:", "UTF-16")),
    "utf16-no-bom": ("kind: TrainingJob\n".encode("utf-16-le"), ("m.yaml:1:1:", "UTF-16")),
    "deep-flow": (deep_yaml(20_000).encode(), ("m.yaml:4:", "nested deeper than")),
    "deep-block": (("a:\n" + "".join(" " * i + "b:\n" for i in range(1, 300))).encode(), ("m.yaml:", "nested deeper than")),
    "syntax": (b"kind: TrainingJob\nmetadata:\n  name: x\n  labels: {a: b\nspec: {}\n", ("m.yaml:", ":")),
    "tab": (b"kind: TrainingJob\nmetadata:\n\tname: x\n", ("m.yaml:3:1:",)),
    "control-char": (b"kind: TrainingJob\nmetadata: {name: \x07}\n", ("m.yaml:2:", "not allowed")),
    "billion-laughs": (laughs().encode(), ("m.yaml:", "aliases expand")),
    "alias-in-itself": (b"kind: TrainingJob\nspec: &s [*s]\n", ("m.yaml:2:7:", "expands without end")),
    "alias-in-its-mapping": (b"kind: TrainingJob\nspec: &s {stop: {metric: *s}}\n", ("m.yaml:2:7:", "expands without end")),
    "huge": (b"kind: TrainingJob\n# " + b"x" * (5 * 1024 * 1024) + b"\n", ("m.yaml", "larger than")),
}


@pytest.mark.parametrize("case", sorted(MANIFESTS))
@pytest.mark.parametrize("command", ["validate", "replay", "run"])
def test_bad_manifest_is_one_line_with_file_line_column(tmp_path: Path, case: str, command: str) -> None:
    data, expected = MANIFESTS[case]
    path = tmp_path / "m.yaml"
    path.write_bytes(data)
    args = {"validate": [str(path)], "replay": [str(path), str(tmp_path / "none.csv")], "run": [str(path)]}[command]
    line = one_line_error(plateau(command, *args, cwd=tmp_path, timeout=30, max_memory=2 << 30), *expected)
    assert "<unicode string>" not in line


def test_yaml_syntax_error_is_file_line_column_message(tmp_path: Path) -> None:
    path = tmp_path / "m.yaml"
    path.write_text("kind: TrainingJob\nmetadata:\n  name: x\n bad: indent\n")
    line = one_line_error(plateau("validate", str(path)))
    assert line.startswith(f"plateau: error: {path}:4:2: ")


@pytest.mark.parametrize("target", ["fifo", "/dev/urandom", "directory"])
def test_manifest_that_is_no_regular_file_is_refused_at_once(tmp_path: Path, target: str) -> None:
    path = no_regular_file(tmp_path / "m.yaml", target)
    one_line_error(plateau("validate", str(path), timeout=20), str(path), "cannot read")


# --- 3. `plateau run` options ------------------------------------------------------------------

def job_manifest(tmp_path: Path, metrics_path: str | None = None) -> Path:
    metrics = f", path: {json.dumps(metrics_path)}" if metrics_path else ""
    path = tmp_path / "job.yaml"
    path.write_text(
        "apiVersion: plateau.dev/v1alpha1\nkind: TrainingJob\nmetadata: {name: hostile}\nspec:\n"
        f"  template: {{spec: {{containers: [{{name: t, image: x, command: [{json.dumps(sys.executable)}, -c, 'pass']}}]}}}}\n"
        f"  metrics: {{source: file, names: [loss]{metrics}}}\n"
        "  stop: {maxDuration: 1m}\n")
    return path


RUN_OPTIONS = {
    "interval-nan": (["--interval", "nan"], ("--interval nan",)),
    "interval-inf": (["--interval", "inf"], ("--interval inf",)),
    "interval-huge": (["--interval", "1e300"], ("--interval 1e+300",)),
    "interval-negative": (["--interval", "-1"], ("--interval -1",)),
    "port-too-high": (["--metrics-port", "70000"], ("--metrics-port 70000", "not a TCP port")),
    "port-negative": (["--metrics-port", "-5"], ("--metrics-port -5", "not a TCP port")),
    "prometheus-no-scheme": (["--prometheus", "localhost:9090"], ("--prometheus localhost:9090",)),
    "status-out-directory": (["--status-out", "{tmp}"], ("--status-out", "a directory")),
    "status-out-read-only": (["--status-out", "/sys/kernel/status.yaml"], ("--status-out /sys/kernel/status.yaml", "cannot write")),
    "workdir-read-only": (["--workdir", "/sys/kernel"], ("run directory /sys/kernel", "cannot write")),
    "workdir-a-file": (["--workdir", "{tmp}/job.yaml"], ("run directory", "job.yaml")),
}


@pytest.mark.parametrize("case", sorted(RUN_OPTIONS))
def test_run_option_from_outside_is_checked_before_the_trainer_starts(tmp_path: Path, case: str) -> None:
    flags, expected = RUN_OPTIONS[case]
    manifest = job_manifest(tmp_path)
    done = plateau("run", str(manifest), *(f.format(tmp=tmp_path) for f in flags), cwd=tmp_path, timeout=30)
    one_line_error(done, *expected)
    assert "started the trainer" not in done.stdout


@pytest.mark.parametrize("kind", ["fifo", "device"])
def test_run_with_metrics_path_no_regular_file_is_refused_at_once(tmp_path: Path, kind: str) -> None:
    path = str(tmp_path / "metrics.fifo") if kind == "fifo" else "/dev/urandom"
    if kind == "fifo":
        os.mkfifo(path)
    one_line_error(plateau("run", str(job_manifest(tmp_path, path)), cwd=tmp_path, timeout=30), path, "not a regular file")


# --- 4. `plateau run --prometheus` -------------------------------------------------------------

class FakePrometheus(http.server.ThreadingHTTPServer):
    """Answers every query with `behaviour`: a canned body, or a hostile way of sending one."""

    daemon_threads = True

    def __init__(self, behaviour: str, body: bytes = b"") -> None:
        super().__init__(("127.0.0.1", 0), _FakeHandler)
        self.behaviour, self.body, self.queries = behaviour, body, 0
        self.stopping = threading.Event()
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def close(self) -> None:
        self.stopping.set()
        self.shutdown()
        self.server_close()


class _FakeHandler(http.server.BaseHTTPRequestHandler):
    server: FakePrometheus

    def log_message(self, *args: object) -> None:
        pass

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        fake = self.server
        fake.queries += 1
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        try:
            if fake.behaviour == "answer":
                self.send_header("Content-Length", str(len(fake.body)))
                self.end_headers()
                self.wfile.write(fake.body)
            elif fake.behaviour == "declared-huge":
                self.send_header("Content-Length", str(10**12))
                self.end_headers()
                self.wfile.write(b'{"status": "success", "data": {"resultType": "vector", "result": [')
            elif fake.behaviour == "endless":  # a body that never ends, as fast as it goes
                self.end_headers()
                self.wfile.write(b'{"status": "success", "data": {"resultType": "vector", "result": [')
                while not fake.stopping.is_set():
                    self.wfile.write(b" " * 65536)
            else:  # "drip": one byte every 0.4 s, and "silent": headers, then nothing
                self.end_headers()
                self.wfile.flush()
                while not fake.stopping.wait(0.4):
                    if fake.behaviour == "drip":
                        self.wfile.write(b" ")
                        self.wfile.flush()
        except OSError:
            pass  # the client gave up: what it should do


def vector(*series: tuple[dict[str, str], float]) -> bytes:
    result = [{"metric": labels, "value": [time.time(), "NaN" if math.isnan(v) else repr(v)]} for labels, v in series]
    return json.dumps({"status": "success", "data": {"resultType": "vector", "result": result}}).encode()


STOP = {"maxDuration": "4s", "gracePeriod": "1s", "metric": {"name": "loss", "target": 0.01, "patience": 1000}}
SPEC_KEY = float(metric_spec_for(StopSpec.model_validate(STOP)).key)  # what the sidecar folds under


def sidecar_series(namespace: str | None, job: str, best: float, non_finite: float = 0.0) -> list[tuple[dict[str, str], float]]:
    """A sidecar's track of loss, folded under the run's own spec, at report 50."""
    labels = {"trainingjob": job, "metric": "loss", "instance": "10.0.0.1:9090", "pod": "p"}
    if namespace is not None:
        labels["namespace"] = namespace
    values = {"plateau_metric_reports_total": 50.0, "plateau_track_spec": SPEC_KEY, "plateau_metric_value": best,
              "plateau_metric_step": 50.0, "plateau_track_evaluations": 50.0, "plateau_track_best": best,
              "plateau_track_best_step": 50.0, "plateau_track_reference": best, "plateau_track_first": 1.0,
              "plateau_track_since_improvement": 0.0, "plateau_track_non_finite": non_finite}
    return [({**labels, "__name__": name}, value) for name, value in values.items()]


def run_manifest(tmp_path: Path) -> Path:
    """A trainer that sleeps through any request; loss with a target; a 4 s deadline."""
    path = tmp_path / "job.yaml"
    path.write_text(
        "apiVersion: plateau.dev/v1alpha1\nkind: TrainingJob\nmetadata: {name: mine, namespace: team-a}\nspec:\n"
        f"  template: {{spec: {{terminationGracePeriodSeconds: 1, containers: [{{name: t, image: x, command: [{json.dumps(sys.executable)}, -c, 'import time; time.sleep(60)']}}]}}}}\n"
        "  metrics: {source: file, names: [loss], scrapeInterval: 1s}\n"
        f"  stop: {json.dumps(STOP)}\n")
    return path


def run_through(tmp_path: Path, fake: FakePrometheus) -> tuple[subprocess.CompletedProcess[str], dict, float]:
    started = time.monotonic()
    try:
        done = plateau("run", str(run_manifest(tmp_path)), "--workdir", str(tmp_path / "run"), "--interval", "0.2",
                       "--prometheus", fake.url, cwd=tmp_path, timeout=60)
    finally:
        fake.close()
    took = time.monotonic() - started
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    status = yaml.safe_load((tmp_path / "run" / "status.yaml").read_text())
    return done, status, took


@pytest.mark.parametrize(("behaviour", "reason"), [
    ("drip", "Timeout"), ("silent", "Timeout"), ("endless", "AnswerTooLarge"), ("declared-huge", "AnswerTooLarge")])
def test_a_hostile_prometheus_answer_never_holds_up_max_duration(tmp_path: Path, behaviour: str, reason: str) -> None:
    done, status, took = run_through(tmp_path, FakePrometheus(behaviour))
    assert status["reason"] == "DeadlineExceeded", status["message"]
    assert took < 30, f"plateau run took {took:.0f}s with a {behaviour} Prometheus and a 4 s maxDuration"
    available = next(c for c in status["conditions"] if c["type"] == "MetricsAvailable")
    assert (available["status"], available["reason"]) == ("False", reason), available


@pytest.mark.parametrize("case", ["another-namespace", "another-job", "nan-best", "inf-best"])
def test_series_that_are_not_this_jobs_reports_never_stop_it(tmp_path: Path, case: str) -> None:
    series = {
        "another-namespace": sidecar_series("team-b", "mine", 0.0001),
        "another-job": sidecar_series("team-a", "theirs", 0.0001),
        "nan-best": sidecar_series("team-a", "mine", math.nan),
        "inf-best": sidecar_series("team-a", "mine", -math.inf),
    }[case]
    done, status, _ = run_through(tmp_path, FakePrometheus("answer", vector(*series)))
    assert status["reason"] == "DeadlineExceeded", status["message"]
    available = next(c for c in status["conditions"] if c["type"] == "MetricsAvailable")
    assert available["reason"] == ("NoSeries" if case.startswith("another") else "SeriesFound"), available


def test_this_jobs_series_through_prometheus_do_stop_it(tmp_path: Path) -> None:
    """The control: the same answer, labelled as this job's, reaches the target."""
    done, status, _ = run_through(tmp_path, FakePrometheus("answer", vector(*sidecar_series("team-a", "mine", 0.0001))))
    assert status["reason"] == "TargetReached", status["message"]
