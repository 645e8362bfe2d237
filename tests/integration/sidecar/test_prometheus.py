"""A real Prometheus scrapes real sidecar processes fed by the real example trainer.

One Prometheus (scrape interval 1 s) serves the module; each test has its own sidecar, with
its own `trainingjob` label, fed by one of the three routes: JSONL file, stdout log, push.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from collections.abc import Iterator
from itertools import pairwise
from dataclasses import dataclass
from pathlib import Path

import pytest

from plateau_sidecar import protocol as p
from tests.support.prometheus import PrometheusServer, SidecarProcess, check_metrics

pytestmark = pytest.mark.integration

TRAINER = Path(__file__).resolve().parents[3] / "examples" / "trainer" / "train.py"
STDOUT_PATTERN = r"step=(?P<step>\d+) val_loss=(?P<val_loss>\S+) accuracy=(?P<accuracy>\S+)"
WAIT = 30.0  # the first sample alone can take ~6 s after Prometheus starts


@dataclass
class Stack:
    workdir: Path
    prometheus: PrometheusServer
    sidecars: dict[str, SidecarProcess]

    def query(self, series: str, job: str, metric: str) -> float | None:
        return self.prometheus.query_value(f'{series}{{trainingjob="{job}",metric="{metric}"}}')

    def wait_reports(self, job: str, metric: str, count: int) -> None:
        self.prometheus.wait_for(
            f'{p.SERIES_REPORTS}{{trainingjob="{job}",metric="{metric}"}}', lambda v: v == count, timeout=WAIT
        )

    def wait_scraped(self, job: str) -> None:
        """Until Prometheus has scraped the sidecar once, so a run's first report is not missed."""
        address = self.sidecars[job].metrics_address
        self.prometheus.wait_for(f'up{{instance="{address}"}}', lambda v: v == 1, timeout=WAIT)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    workdir = tmp_path_factory.mktemp("stack")
    sidecars = {
        "slow": SidecarProcess(workdir, "slow", "--metrics-file", str(workdir / "slow.jsonl")),
        "burst": SidecarProcess(workdir, "burst", "--metrics-file", str(workdir / "burst.jsonl")),
        "stdout": SidecarProcess(
            workdir, "stdout", "--stdout-file", str(workdir / "train.log"), "--stdout-pattern", STDOUT_PATTERN
        ),
        "push": SidecarProcess(workdir, "push", push=True),
    }
    prometheus = PrometheusServer(workdir / "prometheus")
    prometheus.workdir.mkdir()
    try:
        for sidecar in sidecars.values():
            sidecar.wait_ready()
            prometheus.add_target(sidecar.metrics_address)
        prometheus.start()
        yield Stack(workdir, prometheus, sidecars)
    finally:
        prometheus.stop()
        for sidecar in sidecars.values():
            sidecar.stop()


def run_trainer(workdir: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, str(TRAINER), "--checkpoint-dir", str(workdir / "checkpoints"), *args],
        env={**os.environ, p.ENV_STOP_FILE: str(workdir / "no-stop"), **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return result


def jsonl(path: Path) -> list[dict[str, float]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def same(a: float, b: float) -> bool:
    return a == b or (math.isnan(a) and math.isnan(b))


def test_slow_reports_arrive_one_per_scrape_and_every_evaluation_is_recovered(stack: Stack) -> None:
    stack.wait_scraped("slow")
    metrics_file = stack.workdir / "slow.jsonl"
    run_trainer(
        stack.workdir,
        "--epochs",
        "5",
        "--sleep",
        "2",
        "--nan-at-epoch",
        "4",
        env={p.ENV_METRICS_FILE: str(metrics_file)},
    )
    stack.wait_reports("slow", "val_loss", 5)
    selector = '{{trainingjob="slow",metric="val_loss"}}'
    counts = stack.prometheus.samples(p.SERIES_REPORTS + selector.format())
    values = dict(stack.prometheus.samples(p.SERIES_VALUE + selector.format()))
    steps = dict(stack.prometheus.samples(p.SERIES_STEP + selector.format()))
    # Each new evaluation shows up as the count going up by exactly one; its step and value
    # are those of that scrape.
    recovered, last = [], 0.0
    for t, count in counts:
        if count > last:
            assert count == last + 1, f"two reports within one scrape interval: {counts}"
            recovered.append((int(steps[t]), values[t]))
            last = count
    reported = [(int(r["step"]), r["val_loss"]) for r in jsonl(metrics_file)]
    assert len(recovered) == len(reported) == 5
    assert all(a[0] == b[0] and same(a[1], b[1]) for a, b in zip(recovered, reported, strict=True)), (
        recovered,
        reported,
    )
    assert stack.query(p.SERIES_NONFINITE, "slow", "val_loss") == 2


def test_a_burst_faster_than_scrapes_keeps_counts_and_the_superseded_best(stack: Stack) -> None:
    stack.wait_scraped("burst")
    metrics_file = stack.workdir / "burst.jsonl"
    # 40 epochs in about a second: val_loss falls, then the run diverges at epoch 25 and goes NaN.
    run_trainer(
        stack.workdir, "--epochs", "40", "--diverge-at-epoch", "25", env={p.ENV_METRICS_FILE: str(metrics_file)}
    )
    stack.wait_reports("burst", "val_loss", 40)
    records = jsonl(metrics_file)
    finite = [(n, r) for n, r in enumerate(records, start=1) if math.isfinite(r["val_loss"])]
    best_n, best = min(finite, key=lambda nr: (nr[1]["val_loss"], nr[0]))
    worst_n, worst = max(finite, key=lambda nr: (nr[1]["val_loss"], -nr[0]))
    assert best_n < 25 < worst_n  # the best was superseded within the burst
    q = stack.query
    assert q(p.SERIES_MIN, "burst", "val_loss") == best["val_loss"]
    assert q(p.SERIES_MIN_STEP, "burst", "val_loss") == best["step"]
    assert q(p.SERIES_MIN_REPORT, "burst", "val_loss") == best_n
    assert q(p.SERIES_MAX, "burst", "val_loss") == worst["val_loss"]
    assert q(p.SERIES_MAX_REPORT, "burst", "val_loss") == worst_n
    assert q(p.SERIES_NONFINITE, "burst", "val_loss") == len(records) - len(finite) > 0
    accuracy = [r["accuracy"] for r in records]
    assert q(p.SERIES_MAX, "burst", "accuracy") == max(accuracy)
    assert q(p.SERIES_MAX_REPORT, "burst", "accuracy") == accuracy.index(max(accuracy)) + 1
    assert q(p.SERIES_STEP, "burst", "val_loss") == records[-1]["step"]
    # Prometheus really did see several reports per scrape.
    counts = [c for _, c in stack.prometheus.samples(f'{p.SERIES_REPORTS}{{trainingjob="burst",metric="val_loss"}}')]
    assert any(b - a > 1 for a, b in pairwise(counts)) or counts[0] > 1


def test_stdout_lines_of_a_teed_log_are_matched_without_touching_the_command(stack: Stack) -> None:
    stack.wait_scraped("stdout")
    log = stack.workdir / "train.log"
    command = (
        f"set -o pipefail; {sys.executable} -u {TRAINER} --epochs 6 --checkpoint-dir {stack.workdir / 'ck'} | tee {log}"
    )
    result = subprocess.run(
        ["bash", "-c", command],
        env={**os.environ, p.ENV_METRICS_FILE: os.devnull},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    printed = [dict(kv.split("=") for kv in line.split()) for line in result.stdout.splitlines()]
    stack.wait_reports("stdout", "val_loss", 6)
    losses = [float(d["val_loss"]) for d in printed]
    assert stack.query(p.SERIES_MIN, "stdout", "val_loss") == min(losses)
    assert stack.query(p.SERIES_STEP, "stdout", "accuracy") == int(printed[-1]["step"])
    assert stack.query(p.SERIES_REPORTS, "stdout", "accuracy") == 6


def test_pushed_reports_reach_prometheus(stack: Stack) -> None:
    sidecar = stack.sidecars["push"]
    stack.wait_scraped("push")
    result = run_trainer(stack.workdir, "--epochs", "8", env={p.ENV_PUSH_URL: sidecar.push_url})
    assert "plateau:" not in result.stderr  # no warning: every push was taken
    stack.wait_reports("push", "accuracy", 8)
    accuracy = [float(line.split("accuracy=")[1]) for line in result.stdout.splitlines()]
    assert stack.query(p.SERIES_MAX, "push", "accuracy") == pytest.approx(max(accuracy), abs=1e-6)
    check_metrics(sidecar.scrape())
    assert stack.prometheus.query_value(f'sum({p.SERIES_BAD_INPUT}{{trainingjob="push"}})') == 0
