"""The ceiling on what any per-task choice from a preset's candidates saves."""

from __future__ import annotations

import subprocess
import sys
from itertools import product
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))  # "benchmarks" is a folder of the repo, not an installed package

from benchmarks import calibrate, candidates, headroom  # noqa: E402
from benchmarks.harness import load_curves  # noqa: E402
from tests.support.curves import subset  # noqa: E402

CURVES = ROOT / "benchmarks" / "data" / "curves.csv.gz"


def _best_assignment(saved: np.ndarray, regret: np.ndarray, runs: int, budget: float) -> float:
    """By brute force: the most any one-column-per-task assignment saves within the budget."""
    rows = np.arange(saved.shape[0])
    best = -np.inf
    for pick in product(range(saved.shape[1]), repeat=saved.shape[0]):
        if regret[rows, pick].sum() / runs <= budget + 1e-9:
            best = max(best, saved[rows, pick].sum() / runs)
    return best


@pytest.mark.parametrize("seed", range(40))
def test_the_ceiling_bounds_every_assignment_and_the_one_attained_keeps_the_budget(seed: int) -> None:
    rng = np.random.default_rng(seed)
    tasks, columns, runs = 3, 5, 12
    saved = rng.uniform(0, 4, (tasks, columns))  # sums over a task's 4 runs
    regret = rng.exponential(1.0, (tasks, columns)) * (saved > 1)  # saving more costs regret
    budget = float(rng.uniform(0.05, 0.6))
    got = headroom.ceiling(saved, regret, runs, budget)
    optimum = _best_assignment(saved, regret, runs, budget)
    assert optimum <= got.bound + 1e-9
    if got.assignment:
        rows = np.arange(tasks)
        assert got.saved == pytest.approx(saved[rows, got.assignment].sum() / runs)
        assert got.regret == pytest.approx(regret[rows, got.assignment].sum() / runs) and got.regret <= budget + 1e-9
        assert got.saved <= optimum + 1e-9


def test_the_ceiling_is_exact_when_the_greediest_assignment_keeps_the_budget() -> None:
    saved = np.array([[1.0, 3.0], [2.0, 0.5]])
    regret = np.array([[0.0, 0.2], [0.1, 0.0]])
    got = headroom.ceiling(saved, regret, 4, budget=0.1)
    assert (got.bound, got.saved, got.regret) == pytest.approx((1.25, 1.25, 0.075)) and got.assignment == (1, 0)


def test_a_ceiling_of_nothing_is_refused() -> None:
    with pytest.raises(ValueError, match="tasks, columns"):
        headroom.ceiling(np.zeros((2, 0)), np.zeros((2, 0)), 4, 0.5)
    with pytest.raises(ValueError, match="λ"):
        headroom.ceiling(np.ones((1, 1)), np.ones((1, 1)), 1, 0.5, lambdas=(-1.0,))


def test_no_preset_saves_more_out_of_sample_than_its_ceiling(monkeypatch: pytest.MonkeyPatch) -> None:
    """calibrate's held-out choices are one assignment of candidates to tasks (never stopping
    where none fits), so their pooled saving is under the ceiling at the regret they reached."""
    monkeypatch.setattr(candidates, "PROCESSES", 1)
    curves = [c for c in load_curves(CURVES) if c.run % 100 < 4]
    grid = candidates.rule_grid("tiny", patiences=(3, 10, 30), smoothings=(0.0, 0.5),
                               min_deltas=({}, {"progress": 0.03}), warmups=(0,), growths=(0.0, 1.0))
    monkeypatch.setattr(calibrate, "CANDIDATES", {p: [grid] for p in calibrate.CONSTRAINTS})
    table = calibrate.build_table(curves, [grid])
    saved, regret = headroom.by_task(table, np.arange(len(grid.settings)))
    assert saved.shape == (len({c.task for c in curves}), len(grid.settings) + 1)
    assert np.allclose(saved[:, :-1].sum(axis=0), table.saved.sum(axis=0))
    assert np.allclose(regret[:, :-1].sum(axis=0), table.regret.sum(axis=0))
    assert not saved[:, -1].any() and not regret[:, -1].any()  # never stopping: calibrate's fallback
    found = headroom.rows(table)
    assert [r.label for r in found] == [*calibrate.CONSTRAINTS, "every candidate"]
    for r in found[:-1]:
        assert r.out_of_sample is not None and r.out_of_sample.n_runs == len(curves)
        assert r.out_of_sample.mean_saved <= (r.at_reached or r.at_budget).bound + 1e-9
        assert r.at_budget.saved <= r.at_budget.bound + 1e-9 and r.at_budget.regret <= r.budget + 1e-9
    assert found[-1].out_of_sample is None and found[-1].candidates == len(grid.settings)
    tasks = sorted({c.task for c in curves})
    for r in found:  # the assignment by name: each task's candidate, or never stopping
        assert [t for t, _ in r.per_task] == tasks
        assert {s for _, s in r.per_task} <= {*grid.settings, headroom.NEVER}
        index = [*grid.settings, headroom.NEVER]
        assert tuple(index.index(s) for _, s in r.per_task) == r.at_budget.assignment


def test_the_command_prints_every_preset(tmp_path: Path) -> None:
    path = tmp_path / "tiny.csv"
    path.write_text("\n".join(subset(CURVES, 3)) + "\n")
    got = subprocess.run([sys.executable, "-m", "benchmarks.headroom", "--curves", str(path), "--no-cache",
                          "--per-task", "balanced"],
                         capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert got.returncode == 0, got.stderr
    for label in (*calibrate.CONSTRAINTS, "every candidate"):
        assert any(line.startswith(label) for line in got.stdout.splitlines()), label
    assert "balanced's ceiling, task by task" in got.stdout
    assert "clairvoyant (knows each run's score)" in got.stdout and got.stdout.count("metric clairvoyant within") == 3
