"""Leave-one-task-out calibration of the presets, the curves loader, and the new curve shapes."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))  # "benchmarks" is a folder of the repo, not an installed package

from benchmarks import calibrate, candidates, generate_shapes  # noqa: E402
from benchmarks.generate_curves import Plan, fit_group, make_split  # noqa: E402
from benchmarks.harness import CONSTANT_LR, load_curves, metric_clairvoyant_stop, summarize  # noqa: E402
from benchmarks.plateau_policies import policy_from_spec, policy_from_specs  # noqa: E402
from plateau.api import StopSpec  # noqa: E402
from tests.support.curves import subset  # noqa: E402

CURVES = ROOT / "benchmarks" / "data" / "curves.csv.gz"
SHAPES = ROOT / "benchmarks" / "data" / "curves-shapes.csv.gz"


@pytest.fixture(scope="module")
def small() -> list:
    """Three runs of each of the six constant-lr tasks, and six runs that diverged."""
    curves = load_curves(CURVES)
    diverged = [c for c in curves if not np.isfinite(c.val_loss).all()][::40][:6]
    return [c for c in curves if c.run % 100 < 3 or c in diverged]


def _tiny_grid() -> candidates.Grid:
    return candidates.rule_grid("tiny", patiences=(3, 10, 30), smoothings=(0.0, 0.5),
                               min_deltas=({}, {"progress": 0.03}), warmups=(0, 5), growths=(0.0, 0.3))


def test_rule_grid_stops_where_plateau_replay_does(small: list, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(candidates, "PROCESSES", 1)
    grid = _tiny_grid()
    stops = grid.stops(small)
    assert any(not np.isfinite(c.val_loss).all() for c in small)  # NaN runs are covered
    for j, values in enumerate(grid.values):
        policy = policy_from_spec({"metric": {"name": "val_loss", **values}})
        assert [policy(c) for c in small] == list(stops[:, j]), grid.settings[j]
    assert (stops < np.array([[c.planned] for c in small])).any()


def _tiny_forecast_grid(monkeypatch: pytest.MonkeyPatch) -> candidates.Grid:
    monkeypatch.setattr(candidates, "FORECAST_FOLDS", candidates.FORECAST_FOLDS[:1])
    monkeypatch.setattr(candidates, "FORECAST_PLATEAUS", ((8, 1.5, False), (6, 0.0, True)))
    monkeypatch.setattr(candidates, "FORECAST_GAINS", (0.02, 0.1))
    monkeypatch.setattr(candidates, "FORECAST_MIN_EVALUATIONS", (8,))
    return candidates.forecast_grid()


def test_forecast_grid_stops_where_plateau_replay_does(small: list, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(candidates, "PROCESSES", 1)
    grid = _tiny_forecast_grid(monkeypatch)
    stops = grid.stops(small)
    for j, values in enumerate(grid.values):
        def spec(c: object, v: dict = values) -> StopSpec:
            planned = c.planned  # type: ignore[attr-defined]
            return StopSpec.model_validate({"metric": {"name": "val_loss", **v, "forecast": {
                **v["forecast"], "horizon": planned, "unit": "evaluations"}}})
        policy = policy_from_specs(spec)
        assert [policy(c) for c in small] == list(stops[:, j]), grid.settings[j]
    planned = np.array([[c.planned] for c in small])
    assert len(set(grid.settings)) == len(grid.settings) == 8
    assert (stops < planned).any() and len({tuple(col) for col in stops.T}) > 1  # the settings differ


def test_lookahead_grid_stops_where_plateau_replay_does(small: list, monkeypatch: pytest.MonkeyPatch) -> None:
    """The rule presets' forecast candidates look ahead by a multiple of the run so far: no
    horizon is put in, and each fold's lookahead reaches the spec."""
    monkeypatch.setattr(candidates, "PROCESSES", 1)
    monkeypatch.setattr(candidates, "LOOKAHEAD_FOLDS", tuple(
        {"smoothing": 0.6, "min_delta": {"progress": 0.03}, "lookahead": k} for k in (1.5, 4.0)))
    monkeypatch.setattr(candidates, "LOOKAHEAD_PLATEAUS", ((8, 1.0, False),))
    monkeypatch.setattr(candidates, "LOOKAHEAD_GAINS", (0.02, 0.1))
    monkeypatch.setattr(candidates, "LOOKAHEAD_CONFIDENCES", (0.7,))
    grid = candidates.lookahead_grid()
    stops = grid.stops(small)
    assert len(set(grid.settings)) == len(grid.settings) == 4
    for j, values in enumerate(grid.values):
        assert "horizon" not in values["forecast"] and f"lookahead={values['forecast']['lookahead']:g}" in grid.settings[j]
        policy = policy_from_spec({"metric": {"name": "val_loss", **values}})
        assert [policy(c) for c in small] == list(stops[:, j]), grid.settings[j]
    assert len({tuple(col) for col in stops.T}) > 1  # the lookahead and the gain change where runs stop


def test_a_process_pool_gives_the_stops_of_one_process(small: list, monkeypatch: pytest.MonkeyPatch) -> None:
    for grid in (_tiny_grid(), _tiny_forecast_grid(monkeypatch)):
        monkeypatch.setattr(candidates, "PROCESSES", 1)
        alone = grid.stops(small)
        monkeypatch.setattr(candidates, "PROCESSES", 3)  # shares of unequal length
        assert (grid.stops(small) == alone).all(), grid.name


def test_a_forecast_block_must_share_what_track_reads(small: list) -> None:
    values = ({"patience": 8, "smoothing": 0.6, "forecast": {"min_gain": {"progress": 0.02}, "confidence": 0.5}},
              {"patience": 8, "smoothing": 0.7, "forecast": {"min_gain": {"progress": 0.02}, "confidence": 0.5}})
    with pytest.raises(ValueError, match="share the fields track reads"):
        candidates._forecast_block((small[:1], values))


def test_each_fold_is_calibrated_without_its_held_out_task(small: list, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(candidates, "PROCESSES", 1)
    grid = _tiny_grid()
    monkeypatch.setattr(calibrate, "CANDIDATES", {p: [grid] for p in calibrate.CONSTRAINTS})
    table = calibrate.build_table(small, [grid])
    tasks = sorted({c.task for c in small})
    folds = calibrate.folds(table, "aggressive")
    assert [f.held_out for f in folds] == tasks
    for fold in folds:
        assert fold.calibration_tasks == tuple(t for t in tasks if t != fold.held_out)
        n_runs = sum(c.task == fold.held_out for c in small)
        assert fold.held_out_result is not None and fold.held_out_result.n_runs == n_runs >= 3
    # Make the held-out runs catastrophic for the setting their fold chose: the fold's choice
    # cannot move (it never sees them), but a calibration that includes them must.
    fold = next(f for f in folds if f.setting is not None)
    column = table.settings.index(fold.setting)
    held_out = np.array([c.task == fold.held_out for c in small])
    poisoned = table.regret.copy()
    poisoned[held_out, column] = 100.0
    table2 = dataclasses.replace(table, regret=poisoned)
    assert next(f for f in calibrate.folds(table2, "aggressive") if f.held_out == fold.held_out).setting == fold.setting
    with_it = calibrate.choose(table2, np.arange(len(small)), calibrate.CONSTRAINTS["aggressive"], {"tiny"})
    assert with_it is not None and table.settings[with_it] != fold.setting


def test_the_metric_clairvoyant_limit_saves_the_most_within_the_bound(small: list) -> None:
    limit = calibrate.metric_clairvoyant(small, 0.5)
    assert limit is not None and limit.mean_regret <= 0.5 + 1e-9 and limit.n_runs == len(small)
    for tolerance in calibrate.METRIC_TOLERANCES:
        stops = [metric_clairvoyant_stop(c, tolerance) for c in small]
        other = summarize("t", small, stops)
        assert other.mean_regret > 0.5 + 1e-9 or other.mean_saved <= limit.mean_saved
    assert calibrate.metric_clairvoyant(small, -1.0) is None  # no tolerance has a negative regret


def test_register_candidates_rejects_unknown_presets_and_repeats(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(calibrate, "CANDIDATES", {p: [] for p in calibrate.CONSTRAINTS})
    grid = candidates.policy_grid("fixed", [("half", lambda c: max(1, c.planned // 2))])
    calibrate.register_candidates("balanced", grid)
    with pytest.raises(ValueError, match="repeats"):
        calibrate.register_candidates("balanced", grid)
    with pytest.raises(ValueError, match="unknown preset"):
        calibrate.register_candidates("reckless", grid)
    assert calibrate.registered_grids() == [grid]


def test_stop_epochs_are_cached_only_for_versioned_grids(small: list, tmp_path: Path) -> None:
    calls: list[int] = []

    def half(c: object) -> int:
        calls.append(1)
        return max(1, c.planned // 2)  # type: ignore[attr-defined]

    for version, expected in ((None, 2), ("v1", 1)):
        calls.clear()
        grid = candidates.policy_grid(f"half-{version}", [("half", half)], version=version)
        first = calibrate.build_table(small, [grid], tmp_path)
        second = calibrate.build_table(small, [grid], tmp_path)
        assert (first.stops == second.stops).all() and len(calls) == expected * len(small)


def test_cross_validation_from_one_command_is_reproducible(tmp_path: Path) -> None:
    lines = subset(CURVES, 3)
    path = tmp_path / "tiny.csv"
    path.write_text("\n".join(lines) + "\n")
    command = [sys.executable, "-m", "benchmarks.calibrate", "--curves", str(path), "--folds", "tasks", "--json",
               "--processes", "1", "--no-cache"]
    runs = [subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=ROOT, check=True)
            for _ in range(2)]
    first, second = (json.loads(r.stdout) for r in runs)
    first.pop("seconds"), second.pop("seconds")
    assert first == second
    balanced = first["presets"]["balanced"]
    assert len(balanced["folds"]) == 6 and balanced["in_sample"][0]["result"]["n_runs"] == 18
    pooled = balanced["out_of_sample"][0]
    assert pooled["group"] == "all" and pooled["result"]["n_runs"] == 18
    assert pooled["clairvoyant"]["mean_saved"] > 0


# --- the loader and the new shapes ------------------------------------------------------------


def test_loader_reads_old_and_new_files(tmp_path: Path) -> None:
    old = tmp_path / "old.csv"
    old.write_text("run,task,cohort,step,val_loss,score,train_loss\n0,t,c,1,1.0,0.5,1.1\n0,t,c,2,0.9,0.6,1.0\n")
    new = tmp_path / "new.csv"
    new.write_text("run,task,cohort,step,val_loss,score,train_loss,family,lr\n"
                   "3,t-step,c,1,1.0,0.5,1.1,step,0.1\n3,t-step,c,2,nan,nan,nan,step,0.01\n")
    (a,), (b,) = load_curves(old), load_curves(new)
    assert (a.family, a.lr, list(a.val_loss)) == (CONSTANT_LR, None, [1.0, 0.9])
    assert (b.run, b.task, b.family, list(b.lr)) == (3, "t-step", "step", [0.1, 0.01])
    shapes = load_curves(SHAPES)
    assert {"step", "cosine"} <= {c.family for c in shapes}
    assert all(c.lr is not None and c.task.endswith("-" + c.family) for c in shapes)


def _digits_group(plan: Plan, runs: int = 2) -> np.ndarray:
    shape = next(s for s in generate_shapes.SHAPES if s.name == "digits-step")
    cfgs = generate_shapes.cohort_configs(shape, np.random.default_rng(0), runs)
    torch.set_num_threads(1)
    return fit_group(shape.data, make_split(shape.data), cfgs, plan)[0]


def test_step_and_cosine_schedules_set_the_learning_rate_per_evaluation() -> None:
    step = _digits_group(Plan(6, generate_shapes.step_schedule((3, 5))))
    base = step[:, 0, 3]
    # Evaluation e follows the last minibatch of epoch e: cut 10x after epochs 3 and 5.
    assert np.allclose(step[:, :, 3], base[:, None] * [1, 1, 1, 0.1, 0.1, 0.01], rtol=1e-6)
    cosine = _digits_group(Plan(4, generate_shapes.cosine_schedule(4)))[:, :, 3]
    assert (np.diff(cosine, axis=1) < 0).all() and (cosine[:, -1] < 0.01 * cosine[:, 0]).all()
    restarts = generate_shapes.sgdr_schedule(10, 2)
    assert [round(restarts(t), 3) for t in (0, 9.99, 10, 29.99, 30, 70)] == [1, 0, 1, 0, 1, 1]


def test_noisy_runs_report_many_times_per_epoch_on_a_validation_sample() -> None:
    whole = _digits_group(Plan(2, evals=1))
    noisy = _digits_group(Plan(2, evals=5, val_sample=32))
    assert noisy.shape[1] == 10 and whole.shape[1] == 2
    # Same training (the samples draw from their own generator): only the validation differs.
    assert np.allclose(noisy[:, 9, 1], whole[:, 1, 1]) and not np.allclose(noisy[:, 9, 0], whole[:, 1, 0])


def test_finetuning_starts_from_the_pretrained_body_ahead_of_scratch() -> None:
    shape = next(s for s in generate_shapes.SHAPES if s.name == "digits-finetune")
    cfgs = generate_shapes.cohort_configs(shape, np.random.default_rng(0), 3)
    split = make_split(shape.data)
    body = generate_shapes.pretrained_body(shape, cfgs[0])
    scratch, _ = fit_group(shape.data, split, cfgs, Plan(3))
    tuned, model = fit_group(shape.data, split, cfgs, Plan(3), body)
    assert body.numel() < model.flat.shape[1]  # the head is left out, and re-initialised per run
    assert tuned[:, -1, 0].mean() < scratch[:, -1, 0].mean()  # features from digits 0-4 help on 5-9


def test_overfit_and_finetune_shapes_on_a_tiny_run(tmp_path: Path) -> None:
    out = tmp_path / "s.csv.gz"
    generate_shapes.main(["--tasks", "digits-overfit,digits-finetune", "--runs", "2", "--cohorts", "1",
                          "--out", str(out)])
    runs = {c.run: c for c in load_curves(out)}
    overfit = [c for c in runs.values() if c.family == "overfit"]
    assert len(overfit) == 2 and all(c.planned == 150 for c in overfit)
    for c in overfit:  # val_loss turns up: it ends well above its best
        assert c.val_loss[-1] > 1.1 * np.nanmin(c.val_loss) and np.nanargmin(c.val_loss) < 135
    assert sum(c.family == "finetune" and c.planned == 80 for c in runs.values()) == 2
    again = tmp_path / "again.csv.gz"
    generate_shapes.main(["--tasks", "digits-overfit,digits-finetune", "--runs", "2", "--cohorts", "1",
                          "--out", str(again)])
    assert again.read_bytes() == out.read_bytes()


def test_stopping_quality_prints_the_presets_out_of_sample(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    from benchmarks import stopping_quality

    monkeypatch.setattr(calibrate, "CACHE", tmp_path / "cache")
    monkeypatch.setattr(candidates, "PROCESSES", 1)
    old, new = tmp_path / "old.csv", tmp_path / "new.csv"
    old.write_text("\n".join(subset(CURVES, 1)) + "\n")
    new.write_text("\n".join(subset(SHAPES, 1)) + "\n")
    stopping_quality.main(["--curves", str(old), "--curves", str(new), "--cv", "tasks", "--workers", "1"])
    out = capsys.readouterr().out
    assert "PRESETS BY LEAVE-ONE-TASK-OUT CROSS-VALIDATION" in out
    for preset in calibrate.CONSTRAINTS:
        assert f"== {preset}:" in out
    table = out[out.index("== balanced:"):out.index("== aggressive:")]
    oos = table[table.index("OUT OF SAMPLE"):table.index("IN SAMPLE")]
    # one row per family present, each with the clairvoyant's figures after the bar
    assert all(f"  {family} " in oos for family in ("all", "constant-lr", "step", "cosine"))
    assert all("|" in line for line in oos.splitlines()[2:])
