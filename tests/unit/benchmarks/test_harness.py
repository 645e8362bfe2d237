"""Stopping-quality benchmark: definitions on hand-built curves, baselines' semantics,
cohort replay, the curve generator, and the committed curves checked against
independent re-computations from the definitions."""

from __future__ import annotations

import csv
import gzip
import json
import math
import sys
from pathlib import Path

import numpy as np
import optuna
import pytest
import torch

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))  # "benchmarks" is a folder of the repo, not an installed package

from benchmarks import baselines, generate_curves, harness, stopping_quality  # noqa: E402
from benchmarks.harness import PolicyResult, RunCurve  # noqa: E402

NAN, INF = math.nan, math.inf
CURVES = ROOT / "benchmarks" / "data" / "curves.csv.gz"
HOLDOUT = ROOT / "benchmarks" / "data" / "curves-holdout.csv.gz"


def curve(
    val: list[float],
    score: list[float] | None = None,
    train: list[float] | None = None,
    run: int = 0,
    cohort: str = "c",
) -> RunCurve:
    n = len(val)
    return RunCurve(
        run=run,
        task="t",
        cohort=cohort,
        steps=np.arange(1, n + 1),
        val_loss=np.array(val, dtype=float),
        score=np.array(score if score is not None else [0.5] * n, dtype=float),
        train_loss=np.array(train if train is not None else [1.0] * n, dtype=float),
    )


# --- saved / regret / restore-best -------------------------------------------------------


def test_saved_is_share_of_planned_epochs_not_run() -> None:
    c = curve([1.0] * 10)
    assert harness.saved(c, 3) == pytest.approx(0.7)
    assert harness.saved(c, 10) == 0.0


def test_regret_uses_restore_best_checkpoint_up_to_the_stop() -> None:
    c = curve([3, 2, 1, 2, 3], [0.1, 0.5, 0.9, 0.8, 0.7])
    assert harness.checkpoint(c, 5) == 2  # best over the whole run, not the last epoch
    assert harness.points(c, 5) == pytest.approx(90.0)
    assert harness.regret(c, 2) == pytest.approx(40.0)  # checkpoint at epoch 2: 50 points
    assert harness.regret(c, 3) == 0.0
    assert harness.regret(c, 5) == 0.0


def test_regret_is_clipped_at_zero_when_stopping_early_was_lucky() -> None:
    c = curve([1.0, 0.5, 0.8], [0.6, 0.5, 0.9])  # the val-selected epoch 2 scores worse than epoch 1
    assert harness.points(c, 1) == pytest.approx(60.0)
    assert harness.points(c, 3) == pytest.approx(50.0)
    assert harness.regret(c, 1) == 0.0


def test_negative_scores_are_floored_at_zero() -> None:
    c = curve([2.0, 1.0], [-0.5, 0.2])  # e.g. R^2 below 0
    assert harness.points(c, 1) == 0.0
    assert harness.regret(c, 1) == pytest.approx(20.0)


def test_ties_pick_the_earliest_epoch() -> None:
    c = curve([2.0, 1.0, 1.0], [0.1, 0.4, 0.9])
    assert harness.checkpoint(c, 3) == 1


def test_non_finite_losses_are_never_selected() -> None:
    c = curve([NAN, INF, 1.0, NAN], [NAN, NAN, 0.7, NAN])
    assert harness.checkpoint(c, 2) is None
    assert harness.checkpoint(c, 4) == 2
    # no finite val_loss before the stop but one later: the stopped run counts as 0
    assert harness.regret(c, 2) == pytest.approx(70.0)


def test_run_without_any_finite_loss_has_no_regret() -> None:
    c = curve([NAN, INF, NAN], [NAN, NAN, NAN])
    assert [harness.regret(c, s) for s in (1, 2, 3)] == [0.0, 0.0, 0.0]


def test_points_by_stop_matches_points_at_every_stop() -> None:
    c = curve([NAN, 3, 2, 2, INF, 1, 5], [NAN, 0.2, 0.3, 0.9, NAN, -0.1, 0.8])
    assert list(harness.points_by_stop(c)) == [harness.points(c, s) for s in range(1, 8)]


def test_summary_mean_saved_regret_p99_and_share_above_one_point() -> None:
    runs = [
        curve([1.0, 2.0, 3.0, 4.0], [0.9, 0.9, 0.9, 0.9], run=0),  # stop 1: regret 0, saved 0.75
        curve([3.0, 2.0, 1.0, 4.0], [0.5, 0.6, 0.7, 0.1], run=1),  # stop 1: regret 20, saved 0.75
        curve([2.0, 1.0, 1.0, 1.0], [0.5, 0.505, 0.6, 0.6], run=2),  # stop 1: regret 0.5, saved 0.75
        curve([4.0, 3.0, 2.0, 1.0], [0.1, 0.2, 0.3, 0.5], run=3),  # never stops: regret 0, saved 0
    ]
    stops = {0: 1, 1: 1, 2: 1, 3: 4}
    res = harness.evaluate_policy(runs, "s", lambda c: stops[c.run])
    assert res.mean_saved == pytest.approx(0.75 * 3 / 4)
    assert res.mean_regret == pytest.approx((20 + 0.5) / 4)
    # numpy's linear percentile over sorted regrets [0, 0, 0.5, 20]: rank 0.99*3 = 2.97
    assert res.p99_regret == pytest.approx(0.5 + 0.97 * 19.5)
    assert res.share_regret_gt1 == pytest.approx(0.25)  # 0.5 points is not > 1


def test_policy_returning_an_epoch_outside_the_run_is_an_error() -> None:
    with pytest.raises(ValueError):
        harness.evaluate_policy([curve([1.0, 2.0])], "bad", lambda c: 3)
    with pytest.raises(ValueError):
        harness.evaluate_policy([curve([1.0, 2.0])], "bad", lambda c: 0)


def _result(saved: float, regret: float, name: str) -> PolicyResult:
    return PolicyResult(name, saved, regret, 0.0, 0.0, 1)


def test_s_at_picks_most_saved_within_the_regret_budget_inclusive() -> None:
    greedy, edge, best, lazy = (
        _result(0.9, 0.51, "greedy"),
        _result(0.6, 0.5, "edge"),
        _result(0.7, 0.2, "best"),
        _result(0.1, 0.0, "lazy"),
    )
    assert harness.s_at([greedy, edge, best, lazy]) is best
    assert harness.s_at([greedy, edge]) is edge  # exactly 0.5 points qualifies
    assert harness.s_at([greedy]) is None


def test_clairvoyant_stop_is_earliest_within_half_a_point() -> None:
    c = curve([3.0, 2.0, 1.0, 0.9], [0.1, 0.896, 0.9, 0.901])
    assert harness.clairvoyant_stop(c) == 2  # 89.6 vs 90.1 at the end: 0.5 points
    assert harness.clairvoyant_stop(curve([3.0, 2.0, 1.0], [0.1, 0.2, 0.9])) == 3


def test_metric_clairvoyant_stops_once_the_best_loss_is_within_tolerance_of_the_final_best() -> None:
    # Progress 10 -> 0 is 10; the best loss is 0.4 above the final best from epoch 3, 0 from epoch 5.
    c = curve([10.0, 2.0, 0.4, NAN, 0.0, 0.5], [0.1, 0.5, 0.8, NAN, 0.9, 0.6])
    assert harness.metric_clairvoyant_stop(c, 0.0) == 5  # the final best itself
    assert harness.metric_clairvoyant_stop(c, 0.04) == 3  # 0.4 <= 4% of 10
    assert harness.metric_clairvoyant_stop(c, 0.039) == 5
    assert harness.metric_clairvoyant_stop(c, 1.0) == 1  # everything is within the whole progress
    assert harness.metric_clairvoyant_stop(curve([NAN, INF]), 0.01) == 1  # nothing finite: nothing to wait for
    assert harness.metric_clairvoyant_stop(curve([1.0, 2.0, 3.0]), 0.0) == 1  # only got worse


def test_load_curves_reads_rows_and_limit(tmp_path: Path) -> None:
    path = tmp_path / "c.csv.gz"
    with gzip.open(path, "wt") as fh:
        fh.write("run,task,cohort,step,val_loss,score,train_loss\n")
        fh.write("7,a,a-c0,1,1.5,0.5,2\n7,a,a-c0,2,nan,nan,inf\n8,b,b-c0,1,1,0.25,1\n")
    runs = harness.load_curves(path)
    assert [(r.run, r.task, r.cohort, r.planned) for r in runs] == [(7, "a", "a-c0", 2), (8, "b", "b-c0", 1)]
    assert math.isnan(runs[0].val_loss[1]) and runs[0].train_loss[1] == INF
    assert len(harness.load_curves(path, limit=1)) == 1


# --- Keras EarlyStopping --------------------------------------------------------------


class KerasEarlyStoppingTranscript:
    """tf.keras EarlyStopping (mode="min", baseline=None, start_from_epoch=0) as written
    there, kept independent from benchmarks.baselines to cross-check it."""

    def __init__(self, patience: int, min_delta: float) -> None:
        self.patience, self.monitor_op = patience, np.less
        self.min_delta = -abs(min_delta)  # Keras: "if self.monitor_op == np.less: self.min_delta *= -1"
        self.wait, self.best, self.stopped_epoch, self.stop_training = 0, np.inf, 0, False

    def on_epoch_end(self, epoch: int, current: float) -> None:
        self.wait += 1
        if self.monitor_op(current - self.min_delta, self.best):
            self.best = current
            self.wait = 0
            return
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            self.stop_training = True


def keras_reference_stop(values: np.ndarray, patience: int, min_delta: float) -> int:
    cb = KerasEarlyStoppingTranscript(patience, min_delta)
    for epoch, v in enumerate(values):
        cb.on_epoch_end(epoch, v)
        if cb.stop_training:
            return epoch + 1
    return len(values)


def test_keras_stops_patience_epochs_after_the_best() -> None:
    stop = baselines.keras_early_stopping(3)
    assert stop(curve([1.0, 2.0, 2.0, 2.0, 2.0, 0.1])) == 4
    assert stop(curve([3.0, 2.0, 1.0, 0.5, 0.4, 0.3])) == 6  # never stops


def test_keras_min_delta_is_absolute_and_strict() -> None:
    stop = baselines.keras_early_stopping(2, min_delta=0.25)
    # 0.5 -> 0.25 improves by exactly min_delta: not an improvement
    assert stop(curve([0.5, 0.25, 0.25, 0.0, 0.0])) == 3
    # 0.5 -> 0.125 beats it by more: wait restarts
    assert stop(curve([0.5, 0.125, 0.1, 0.1, 0.1])) == 4


def test_keras_nan_is_no_improvement() -> None:
    stop = baselines.keras_early_stopping(3)
    assert stop(curve([1.0, NAN, NAN, NAN, 0.5, 0.4])) == 4
    assert stop(curve([NAN, NAN, NAN, NAN, 1.0])) == 3  # best starts at +inf, never NaN


def test_keras_matches_the_callback_transcript_on_random_curves() -> None:
    rng = np.random.default_rng(0)
    for _ in range(300):
        values = np.cumsum(rng.normal(0, 0.05, 40)) + 1.0
        values[rng.random(40) < 0.1] = NAN
        values = np.round(values, 2)  # ties and exact-delta cases happen
        for patience in (1, 3, 5):
            for delta in (0.0, 0.01, 0.05):
                got = baselines.keras_early_stopping(patience, delta)(curve(list(values)))
                assert got == keras_reference_stop(values, patience, delta)


def test_relative_patience_uses_a_share_of_the_best() -> None:
    stop = baselines.relative_patience(2, 0.1)
    assert stop(curve([1.0, 0.95, 0.92, 0.5])) == 3  # 5% and 8% gains don't count
    assert stop(curve([1.0, 0.85, 0.85, 0.85])) == 4


# --- Prechelt -------------------------------------------------------------------------


def test_prechelt_gl_stops_when_generalization_loss_exceeds_alpha() -> None:
    c = curve([1.0, 0.8, 0.83, 0.9, 0.7])
    # GL(3) = 100*(0.83/0.8-1) = 3.75, GL(4) = 12.5
    assert baselines.prechelt_gl(3.0)(c) == 3
    assert baselines.prechelt_gl(5.0)(c) == 4
    assert baselines.prechelt_gl(20.0)(c) == 5
    assert baselines.prechelt_gl(20.0)(curve([1.0, 0.9, NAN, 0.5])) == 3  # non-finite: GL = inf


def test_prechelt_pq_uses_training_progress_over_strips() -> None:
    val = [1.0] * 4 + [0.9] + [0.99] * 10  # GL(5) = 0, GL(10) = GL(15) = 10
    steep = [10.0, 8.0, 6.0, 4.0, 2.0] * 3  # P_5 = 1000*(30/(5*2)-1) = 2000 at every strip end
    assert baselines.training_progress(np.array(steep[:5])) == pytest.approx(2000.0)
    assert baselines.prechelt_pq(0.004)(curve(val, train=steep)) == 10  # 10/2000 = 0.005 > 0.004
    assert baselines.prechelt_pq(0.006)(curve(val, train=steep)) == 15  # never
    flat = [1.0] * 15  # P = 0: any GL > 0 at a strip end stops
    assert baselines.prechelt_pq(100.0)(curve(val, train=flat)) == 10
    assert baselines.prechelt_pq(100.0)(curve([*val[:7], NAN, *val[8:]], train=flat)) == 8


def test_prechelt_up_needs_s_successive_rising_strips() -> None:
    # validation error at strip ends t=5,10,15,20: 1.0, 1.1, 1.2, 1.1
    val = [1.0] * 5 + [1.1] * 5 + [1.2] * 5 + [1.1] * 5
    assert baselines.prechelt_up(1)(curve(val)) == 10
    assert baselines.prechelt_up(2)(curve(val)) == 15
    assert baselines.prechelt_up(3)(curve(val)) == 20  # the run ended first
    assert baselines.prechelt_up(3)(curve([*val[:3], INF, *val[4:]])) == 4


def test_fixed_budget_rounds_up_and_runs_at_least_one_epoch() -> None:
    assert baselines.fixed_fraction(0.25)(curve([1.0] * 10)) == 3
    assert baselines.fixed_fraction(0.5)(curve([1.0] * 80)) == 40
    assert baselines.fixed_fraction(0.01)(curve([1.0] * 10)) == 1


# --- cohort view ----------------------------------------------------------------------


class Scripted:
    """Cohort session that stops given runs at given epochs and logs every call."""

    def __init__(self, stop_at: dict[int, int], log: list[tuple[object, ...]]) -> None:
        self.stop_at, self.log = stop_at, log

    def start(self, run: int) -> None:
        self.log.append(("start", run))

    def report(self, run: int, step: int, val_loss: float, train_loss: float) -> None:
        self.log.append(("report", run, step))

    def should_stop(self, run: int, step: int) -> bool:
        self.log.append(("ask", run, step))
        return self.stop_at.get(run) == step

    def finish(self, run: int, last_step: int, stopped: bool) -> None:
        self.log.append(("finish", run, last_step, stopped))


def test_replay_runs_waves_in_lockstep_and_decides_after_the_whole_wave_reported() -> None:
    runs = [curve([1.0] * 3, run=r) for r in (10, 11, 12)]
    log: list[tuple[object, ...]] = []
    stops = harness.replay_cohort(runs, lambda: Scripted({11: 1}, log), workers=2)
    assert stops == [3, 1, 3]
    assert log == [
        ("start", 10), ("start", 11),
        ("report", 10, 1), ("report", 11, 1), ("ask", 10, 1), ("ask", 11, 1), ("finish", 11, 1, True),
        ("report", 10, 2), ("ask", 10, 2),
        ("report", 10, 3), ("finish", 10, 3, False),  # not asked at its planned last epoch
        ("start", 12),  # the next wave starts once the first has finished
        ("report", 12, 1), ("ask", 12, 1), ("report", 12, 2), ("ask", 12, 2), ("report", 12, 3),
        ("finish", 12, 3, False),
    ]  # fmt: skip


def _sweep() -> list[RunCurve]:
    # Run 1 is best at its epoch 2 (val 0.2, 95 points) and then gets worse; run 0 ends at 0.3.
    return [
        curve([1.0, 0.5, 0.4, 0.3], [0.5, 0.6, 0.7, 0.8], run=0),
        curve([0.9, 0.2, 0.6, 0.7], [0.5, 0.95, 0.6, 0.5], run=1),
        curve([2.0, 1.5, 1.2, 1.1], [0.2, 0.3, 0.4, 0.4], run=2),
    ]


def test_cohort_keep_best_vs_pruned_lost() -> None:
    runs = _sweep()
    assert harness.sweep_points(runs, [4, 4, 4], "keep-best") == pytest.approx(95.0)
    stops = [4, 2, 1]  # run 1 stopped right after its best epoch, run 2 at once
    assert harness.sweep_regret(runs, stops, "keep-best") == 0.0
    # pruned-lost: run 1 can't win any more; run 0 (val 0.3, 80 points) does
    assert harness.sweep_points(runs, stops, "pruned-lost") == pytest.approx(80.0)
    assert harness.sweep_regret(runs, stops, "pruned-lost") == pytest.approx(15.0)
    res = harness.cohort_results("s", 1, [runs], [stops])
    assert [r.semantics for r in res] == ["keep-best", "pruned-lost"]
    assert [r.mean_regret for r in res] == [0.0, pytest.approx(15.0)]
    assert all(r.compute_saved == pytest.approx(1 - 7 / 12) for r in res)
    # stopped at epoch 1, run 1 keeps only its epoch-1 checkpoint (0.9): run 0 wins instead
    assert harness.sweep_regret(runs, [4, 1, 4], "keep-best") == pytest.approx(15.0)


def test_cohort_regret_is_clipped_and_an_all_pruned_sweep_scores_zero() -> None:
    runs = _sweep()
    assert harness.sweep_regret(runs, [1, 4, 4], "pruned-lost") == 0.0  # run 1 still wins
    assert harness.sweep_points(runs, [1, 1, 1], "pruned-lost") == 0.0
    lucky = [curve([1.0, 0.5], [0.9, 0.1], run=0), curve([0.8, 0.8], [0.5, 0.5], run=1)]
    assert harness.sweep_regret(lucky, [1, 2], "keep-best") == 0.0  # found 50 beats full's 10


def test_optuna_median_pruner_sees_only_finished_trials() -> None:
    runs = [curve([1.0, 1.0, 1.0, 1.0], run=0), curve([2.0, 2.0, 2.0, 2.0], run=1)]
    policy = baselines.optuna_policy(lambda: optuna.pruners.MedianPruner(n_startup_trials=1, n_warmup_steps=2))
    # one worker: run 0 completes first; run 1 is worse than the median once warm-up ends
    assert harness.replay_cohort(runs, policy, workers=1) == [4, 2]
    # two workers in lockstep: nothing has completed while they run, so nothing is pruned
    assert harness.replay_cohort(runs, policy, workers=2) == [4, 4]


# --- curve generator ------------------------------------------------------------------


def test_batched_mlp_gradients_match_autograd_with_dropout() -> None:
    cfgs = [
        generate_curves.Config("adam", 1e-3, 8, 2, 0.0, dropout, 4, 1.0, 0.0, seed)
        for dropout, seed in ((0.0, 1), (0.5, 2), (0.3, 3))
    ]
    model = generate_curves.BatchedMLP(5, 3, cfgs)
    x, y = torch.randn(3, 6, 5), torch.randint(0, 3, (3, 6))
    task = generate_curves.TASKS[0]
    pred, acts = model.forward(x, torch.Generator().manual_seed(7))
    _, grad = generate_curves._loss_and_grad(task, pred, y)
    model.backward(grad, acts)

    flat = model.flat.clone().requires_grad_(True)
    model.params = model._views(flat)
    pred, _ = model.forward(x, torch.Generator().manual_seed(7))  # same dropout masks
    loss, _ = generate_curves._loss_and_grad(task, pred, y)
    loss.sum().backward()  # runs are independent: the sum's gradient is each run's own
    assert flat.grad is not None
    assert torch.allclose(model.grad, flat.grad, atol=1e-6)


@pytest.mark.parametrize("kind", ["sgd", "adam", "adamw", "rmsprop"])
def test_batched_optimizers_follow_torch_optim(kind: str) -> None:
    cfgs = [
        generate_curves.Config(kind, lr, 4, 1, wd, 0.0, 4, 1.0, 0.0, seed)
        for lr, wd, seed in ((0.01, 0.0, 1), (0.1, 0.01, 2))
    ]
    model = generate_curves.BatchedMLP(3, 2, cfgs)
    ref = [model.flat[r].clone().requires_grad_(True) for r in range(2)]
    make = {
        "sgd": lambda p, c: torch.optim.SGD([p], lr=c.lr, momentum=0.9, weight_decay=c.weight_decay),
        "adam": lambda p, c: torch.optim.Adam([p], lr=c.lr, weight_decay=c.weight_decay),
        "adamw": lambda p, c: torch.optim.AdamW([p], lr=c.lr, weight_decay=c.weight_decay),
        "rmsprop": lambda p, c: torch.optim.RMSprop([p], lr=c.lr, weight_decay=c.weight_decay),
    }[kind]
    opts = [make(p, c) for p, c in zip(ref, cfgs)]
    gen = torch.Generator().manual_seed(0)
    for _ in range(5):
        g = torch.randn(model.flat.shape, generator=gen)
        model.grad.copy_(g)
        model.step()
        for r, (p, opt) in enumerate(zip(ref, opts)):
            p.grad = g[r].clone()
            opt.step()
    assert torch.allclose(model.flat, torch.stack([p.detach() for p in ref]), atol=1e-6)


def test_generator_is_deterministic_and_writes_the_documented_format(tmp_path: Path) -> None:
    args = ["--tasks", "wine", "--runs-per-task", "3", "--seed", "5"]
    generate_curves.main([*args, "--out", str(tmp_path / "a.csv.gz")])
    generate_curves.main([*args, "--out", str(tmp_path / "b.csv.gz")])
    assert (tmp_path / "a.csv.gz").read_bytes() == (tmp_path / "b.csv.gz").read_bytes()
    with gzip.open(tmp_path / "a.csv.gz", "rt") as fh:
        assert fh.readline().strip() == "run,task,cohort,step,val_loss,score,train_loss"
    runs = harness.load_curves(tmp_path / "a.csv.gz")
    assert [r.run for r in runs] == [0, 1, 2]
    assert {r.planned for r in runs} == {120}
    assert {r.cohort for r in runs} == {"wine-s5-c00"}


# --- the committed curves, against independent re-computation --------------------------


def _raw_runs(path: Path) -> dict[int, dict[str, list[str]]]:
    """The CSV read with nothing from the benchmark package: run -> column -> strings."""
    runs: dict[int, dict[str, list[str]]] = {}
    with gzip.open(path, "rt", newline="") as fh:
        for row in csv.DictReader(fh):
            cols = runs.setdefault(int(row["run"]), {k: [] for k in row})
            for k, v in row.items():
                cols[k].append(v)
    return runs


@pytest.fixture(scope="module")
def raw() -> dict[int, dict[str, list[str]]]:
    return _raw_runs(CURVES)


def _ref_points(val: list[float], score: list[float], stop: int) -> float:
    """Restore-best by hand: lowest finite val_loss among epochs <= stop, earliest on ties."""
    best_i = None
    for i in range(stop):
        if math.isfinite(val[i]) and (best_i is None or val[i] < val[best_i]):
            best_i = i
    if best_i is None or not math.isfinite(score[best_i]):
        return 0.0
    return 100.0 * max(score[best_i], 0.0)


def _floats(cols: dict[str, list[str]], key: str) -> list[float]:
    return [float(v) for v in cols[key]]


def test_committed_curves_shape_and_mix(raw: dict[int, dict[str, list[str]]]) -> None:
    assert len(raw) >= 500
    assert list(raw) == list(range(len(raw)))  # ordered by run
    tasks: dict[str, set[int]] = {}
    cohorts: dict[str, int] = {}
    for cols in raw.values():
        steps = [int(s) for s in cols["step"]]
        assert steps == list(range(1, len(steps) + 1))
        assert len(set(cols["task"])) == 1 and len(set(cols["cohort"])) == 1
        tasks.setdefault(cols["task"][0], set()).add(len(steps))
        cohorts[cols["cohort"][0]] = cohorts.get(cols["cohort"][0], 0) + 1
        for key in ("val_loss", "score", "train_loss"):
            for v in cols[key]:
                assert v in ("nan", "inf") or len(v.lstrip("-").split("e")[0].replace(".", "").lstrip("0")) <= 6
    assert len(tasks) >= 5
    assert all(len(planned) == 1 for planned in tasks.values())  # fixed planned epochs per task
    assert all(10 <= n <= 20 for n in cohorts.values())
    diverged = sum(any(not math.isfinite(float(v)) for v in cols["val_loss"]) for cols in raw.values())
    assert 0.03 * len(raw) < diverged < 0.3 * len(raw)


def test_loader_matches_the_raw_file(raw: dict[int, dict[str, list[str]]]) -> None:
    runs = harness.load_curves(CURVES)
    assert [r.run for r in runs] == list(raw)
    for r in runs[::37]:
        cols = raw[r.run]
        assert r.task == cols["task"][0] and r.cohort == cols["cohort"][0]
        np.testing.assert_array_equal(r.val_loss, np.array(_floats(cols, "val_loss")))
        np.testing.assert_array_equal(r.score, np.array(_floats(cols, "score")))


def test_keras_family_on_committed_curves_matches_independent_computation(
    raw: dict[int, dict[str, list[str]]],
) -> None:
    runs = harness.load_curves(CURVES)
    family = dict(baselines.run_families())["keras"]
    results = {r.setting: r for r in harness.evaluate_family(runs, family)}
    expected = {}
    for patience in (3, 5, 10, 20):
        for delta in (0.0, 1e-3, 1e-2):
            saved, regrets = [], []
            for cols in raw.values():
                val, score = _floats(cols, "val_loss"), _floats(cols, "score")
                stop = keras_reference_stop(np.array(val), patience, delta)
                saved.append(1 - stop / len(val))
                regrets.append(max(0.0, _ref_points(val, score, len(val)) - _ref_points(val, score, stop)))
            name = f"patience={patience},min_delta={delta:g}"
            expected[name] = (sum(saved) / len(saved), sum(regrets) / len(regrets))
            got = results[name]
            assert got.mean_saved == pytest.approx(expected[name][0], abs=1e-12)
            assert got.mean_regret == pytest.approx(expected[name][1], abs=1e-9)
            assert got.share_regret_gt1 == pytest.approx(sum(r > 1 for r in regrets) / len(regrets))
    eligible = {k: v for k, v in expected.items() if v[1] <= 0.5 + 1e-9}  # float noise, as documented
    best = harness.s_at(results.values())
    if eligible:
        assert best is not None and best.setting == max(eligible, key=lambda k: eligible[k][0])
    else:
        assert best is None


def test_clairvoyant_and_fixed_budget_on_committed_curves(raw: dict[int, dict[str, list[str]]]) -> None:
    runs = harness.load_curves(CURVES)
    by_run = {r.run: r for r in runs}
    for run, cols in list(raw.items())[::5]:
        val, score = _floats(cols, "val_loss"), _floats(cols, "score")
        full = _ref_points(val, score, len(val))
        expected = next(s for s in range(1, len(val) + 1) if full - _ref_points(val, score, s) <= 0.5)
        assert harness.clairvoyant_stop(by_run[run]) == expected
    half = harness.evaluate_policy(runs, "50%", baselines.fixed_fraction(0.5))
    planned = [len(cols["step"]) for cols in raw.values()]
    assert half.mean_saved == pytest.approx(sum(1 - math.ceil(p / 2) / p for p in planned) / len(planned))


def test_fixed_budget_cohort_view_matches_independent_sweep_winner(raw: dict[int, dict[str, list[str]]]) -> None:
    runs = harness.load_curves(CURVES)
    results = harness.evaluate_policy_in_cohorts(runs, "50%", baselines.fixed_fraction(0.5))
    cohorts: dict[str, list[dict[str, list[str]]]] = {}
    for cols in raw.values():
        cohorts.setdefault(cols["cohort"][0], []).append(cols)

    def winner(members: list[dict[str, list[str]]], stop_of: list[int], allowed: list[bool]) -> float:
        best = (math.inf, 0.0)
        for cols, stop, ok in zip(members, stop_of, allowed):
            val, score = _floats(cols, "val_loss")[:stop], _floats(cols, "score")
            finite = [(v, i) for i, v in enumerate(val) if math.isfinite(v)]
            if ok and finite and min(finite)[0] < best[0]:
                best = (min(finite)[0], _ref_points(_floats(cols, "val_loss"), score, stop))
        return best[1]

    planned_all = [len(cols["step"]) for cols in raw.values()]
    saved = 1 - sum(math.ceil(p / 2) for p in planned_all) / sum(planned_all)
    for semantics, result in zip(("keep-best", "pruned-lost"), results):
        regrets = []
        for members in cohorts.values():
            planned = [len(c["step"]) for c in members]
            stops = [math.ceil(p / 2) for p in planned]
            full = winner(members, planned, [True] * len(members))
            found = winner(members, stops, [semantics == "keep-best"] * len(members))
            regrets.append(max(0.0, full - found))
        assert result.semantics == semantics
        assert result.mean_regret == pytest.approx(sum(regrets) / len(regrets), abs=1e-9)
        assert result.compute_saved == pytest.approx(saved)


def test_optuna_replay_on_committed_cohorts_matches_the_median_rule() -> None:
    cohorts = harness.group_cohorts(harness.load_curves(CURVES))
    diverging = next(runs for runs in cohorts if any(not np.isfinite(r.val_loss).all() for r in runs))
    policy = baselines.optuna_policy(lambda: optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=5))
    for runs in (cohorts[1], diverging):
        expected = _median_rule_stops(runs, startup=3, warmup=5)
        assert any(stop < run.planned for stop, run in zip(expected, runs))  # the check is not vacuous
        assert harness.replay_cohort(runs, policy, workers=1) == expected


def _median_rule_stops(runs: list[RunCurve], startup: int, warmup: int) -> list[int]:
    """MedianPruner's documented rule with one worker: once `startup` trials completed,
    and from step `warmup` on, prune when the run's best value so far is worse than the
    median (NaN-ignoring) of the completed trials' values at that step; a run whose
    values so far are all NaN is pruned. Completed runs without a finite value fail."""
    completed: list[np.ndarray] = []
    stops = []
    for run in runs:
        stop = run.planned
        for step in range(max(warmup, 1), run.planned):
            if len(completed) < startup:
                break
            seen = run.val_loss[:step]
            if np.isnan(seen).all():
                stop = step
                break
            median = np.nanpercentile(np.array([c[step - 1] for c in completed]), 50)
            if not math.isnan(median) and np.nanmin(seen) > median:
                stop = step
                break
        if stop == run.planned and np.isfinite(run.val_loss).any():
            completed.append(run.val_loss)
        stops.append(stop)
    return stops


def test_stopping_quality_smoke_json(capsys: pytest.CaptureFixture[str]) -> None:
    stopping_quality.main(["--smoke", "--json", "--workers", "1"])
    report = json.loads(capsys.readouterr().out)
    assert report["runs"] == stopping_quality.SMOKE_RUNS
    families = {f["family"] for f in report["per_run"]}
    assert {"keras", "prechelt-GL", "prechelt-PQ", "prechelt-UP", "fixed-budget"} <= families
    cohort_rows = {(e["family"], e["workers"], e["semantics"]) for e in report["cohort"]}
    assert ("optuna-median", 1, "pruned-lost") in cohort_rows and ("optuna-median", 1, "keep-best") in cohort_rows
    assert 0 < report["clairvoyant"]["mean_saved"] < 1


def test_register_family_rejects_duplicates_and_shows_up(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stopping_quality, "RUN_FAMILIES", list(stopping_quality.RUN_FAMILIES))
    stopping_quality.register_family("never-stop", [("planned", lambda c: c.planned)])
    with pytest.raises(ValueError):
        stopping_quality.register_family("keras", [])
    report = stopping_quality.evaluate(harness.load_curves(CURVES, limit=5), workers=[1])
    entry = next(f for f in report["per_run"] if f["family"] == "never-stop")
    assert entry["s_at"]["mean_saved"] == 0.0 and entry["s_at"]["mean_regret"] == 0.0


def test_holdout_curves_are_a_different_sweep() -> None:
    holdout = harness.load_curves(HOLDOUT)
    assert len(holdout) >= 200
    assert not {r.cohort for r in holdout} & {r.cohort for r in harness.load_curves(CURVES, limit=100)}
