"""The benchmark's Plateau rows come from the same engine as `plateau replay`."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

from benchmarks.harness import DEFAULT_CURVES, load_curves
from benchmarks.plateau_policies import CohortSession, cohort_family, policy_from_spec

RUNS = 12


def test_preset_policy_stops_where_plateau_replay_does(tmp_path: Path) -> None:
    curves = load_curves(DEFAULT_CURVES, limit=RUNS)
    with gzip.open(DEFAULT_CURVES, "rt") as src:
        lines = [next(src)] + [line for line in src if int(line.split(",", 1)[0]) in {c.run for c in curves}]
    subset = tmp_path / "subset.csv"
    subset.write_text("".join(lines))
    out = subprocess.run([sys.executable, "-m", "plateau.cli", "replay", "examples/replay/balanced.yaml", str(subset),
                          "--json"], capture_output=True, text=True, timeout=120, check=True)
    by_cli = {int(r["run"]): r["stop_step"] for r in map(json.loads, out.stdout.splitlines())}
    policy = policy_from_spec({"preset": "balanced", "metric": {"name": "val_loss"}})
    assert {c.run: policy(c) for c in curves} == by_cli
    assert any(stop < c.planned for c, stop in zip(curves, by_cli.values()))  # some runs really stop


def test_cohort_session_sees_only_peers_that_reached_the_step() -> None:
    _, factory = cohort_family()[0]  # median, minJobs=2, startStep=0
    session = factory()
    assert isinstance(session, CohortSession)
    for run in (1, 2, 3):
        session.start(run)
    for step, losses in enumerate([(1.0, 1.0, 2.0), (0.5, 0.6, 1.9)], start=1):
        for run, loss in zip((1, 2, 3), losses):
            session.report(run, step, loss, 0.0)
    assert session.should_stop(3, 2)  # 1.9 against a median of 0.5 and 0.6
    assert not session.should_stop(1, 2)
    session.report(1, 3, 0.4, 0.0)
    assert session._best_at(2, 3) is None  # run 2 has not reached step 3
