"""Baseline stopping families, as policies over RunCurve (monitor val_loss, mode min).

Per-run families (a policy reads the curve only up to the epoch it stops at):
  keras            tf.keras/Keras EarlyStopping(monitor="val_loss", mode="min",
                   patience=P, min_delta=D, baseline=None, start_from_epoch=0).
  keras-relative   NOT Keras: the same patience loop, but "improved" means beating
                   the best by a fraction of it (like torch's ReduceLROnPlateau
                   threshold_mode="rel").
  prechelt-GL/PQ/UP  the three criterion classes of L. Prechelt, "Early stopping --
                   but when?" (1998), with training strips of k=5 epochs.
  fixed-budget     stop at a fixed share of the planned epochs.
Cohort families (real optuna studies replayed through harness.replay_cohort):
  optuna-median, optuna-percentile  MedianPruner / PercentilePruner.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable

import numpy as np
import optuna

from benchmarks.harness import CohortFamily, Family, Policy, RunCurve

STRIP = 5  # Prechelt's training-strip length k


# --- Keras ---------------------------------------------------------------------


def keras_early_stopping(patience: int, min_delta: float = 0.0) -> Policy:
    """Keras EarlyStopping.on_epoch_end, transcribed for mode="min".

    Keras negates min_delta for mode "min", so an improvement is
    `current - (-|min_delta|) < best`, i.e. current < best - |min_delta|; any
    comparison with NaN is False, so NaN never improves. `best` starts at +inf as
    in tf.keras 2.x (Keras 3 starts from None and would take a NaN first epoch as
    its best; the two agree whenever the first value is finite). The callback
    sets stop_training at the end of the epoch, so that epoch is the last one run.
    """
    delta = abs(min_delta)

    def policy(curve: RunCurve) -> int:
        best, wait = math.inf, 0
        for epoch, current in enumerate(curve.val_loss):  # Keras's 0-based epoch
            wait += 1
            if current + delta < best:
                best, wait = current, 0
                continue
            if wait >= patience and epoch > 0:
                return epoch + 1
        return curve.planned

    return policy


def relative_patience(patience: int, rel_delta: float) -> Policy:
    """Keras's loop with a relative threshold: improved iff current < best*(1-rel)."""

    def policy(curve: RunCurve) -> int:
        best, wait = math.inf, 0
        for epoch, current in enumerate(curve.val_loss):
            wait += 1
            threshold = best - rel_delta * abs(best) if math.isfinite(best) else math.inf
            if current < threshold and math.isfinite(current):
                best, wait = current, 0
                continue
            if wait >= patience and epoch > 0:
                return epoch + 1
        return curve.planned

    return policy


# --- Prechelt 1998 ---------------------------------------------------------------
# The paper's errors are always finite. Here a non-finite validation error counts
# as +inf, so GL is inf there and every criterion stops at the first such epoch.


def generalization_loss(current: float, best: float) -> float:
    """GL(t) = 100 * (E_va(t) / E_opt(t) - 1), with E_opt the lowest error so far."""
    if not math.isfinite(current):
        return math.inf
    if best == 0.0:
        return 0.0 if current == 0.0 else math.inf
    return 100.0 * (current / best - 1.0)


def training_progress(strip: np.ndarray) -> float:
    """P_k(t) = 1000 * (sum of the strip's training errors / (k * their min) - 1)."""
    low = float(strip.min())
    if low == 0.0:  # no error left: progress is 0 if it stayed at 0
        return 0.0 if float(strip.max()) == 0.0 else math.inf
    return 1000.0 * (float(strip.sum()) / (len(strip) * low) - 1.0)


def _gl_series(curve: RunCurve) -> list[float]:
    out, best = [], math.inf
    for current in curve.val_loss:
        if math.isfinite(current):
            best = min(best, float(current))
        out.append(generalization_loss(float(current), best))
    return out


def prechelt_gl(alpha: float) -> Policy:
    """GL_alpha: stop after the first epoch t with GL(t) > alpha."""

    def policy(curve: RunCurve) -> int:
        for t, gl in enumerate(_gl_series(curve), start=1):
            if gl > alpha:
                return t
        return curve.planned

    return policy


def prechelt_pq(alpha: float, k: int = STRIP) -> Policy:
    """PQ_alpha: stop after the first end-of-strip epoch t with GL(t) / P_k(t) > alpha.

    Written as GL > alpha * P so that P = 0 (a flat strip) stops on any GL > 0; a
    NaN training error makes P NaN and the quotient test False.
    """

    def policy(curve: RunCurve) -> int:
        for t, gl in enumerate(_gl_series(curve), start=1):
            if gl == math.inf:
                return t
            if t % k == 0 and gl > alpha * training_progress(curve.train_loss[t - k : t]):
                return t
        return curve.planned

    return policy


def prechelt_up(s: int, k: int = STRIP) -> Policy:
    """UP_s: stop after end-of-strip epoch t when the validation error grew over each
    of the last s strips: E_va(t) > E_va(t-k) > ... > E_va(t-s*k)."""

    def policy(curve: RunCurve) -> int:
        rises = 0
        for t in range(1, curve.planned + 1):
            current = float(curve.val_loss[t - 1])
            if not math.isfinite(current):
                return t
            if t % k == 0 and t > k:
                rises = rises + 1 if current > curve.val_loss[t - k - 1] else 0
                if rises >= s:
                    return t
        return curve.planned

    return policy


# --- fixed budgets ---------------------------------------------------------------


def fixed_fraction(share: float) -> Policy:
    return lambda curve: max(1, math.ceil(share * curve.planned))


# --- Optuna pruners (cohort view) -----------------------------------------------------


class OptunaSession:
    """One optuna study per cohort; each run is a trial driven with ask/report/should_prune/tell.

    A completed trial is told its best finite val_loss (restore-best), or FAIL when it
    never had one, which is what optuna does with a NaN objective. The pruners only
    look at COMPLETE trials, so only finished runs steer them, as in a real study.
    Hence keep-best and pruned-lost score these pruners alike: a pruned trial's best
    so far is worse than some completed trial's value at that step, so its kept
    checkpoint could never have been the sweep's winner.
    """

    def __init__(self, make_pruner: Callable[[], optuna.pruners.BasePruner]) -> None:
        # A replay makes thousands of trials; optuna's per-trial INFO lines would drown the report.
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.study = optuna.create_study(
            storage=optuna.storages.InMemoryStorage(),
            direction="minimize",
            pruner=make_pruner(),
            sampler=optuna.samplers.RandomSampler(seed=0),  # nothing is sampled; avoids TPE setup
        )
        self.trials: dict[int, optuna.Trial] = {}
        self.best: dict[int, float] = {}

    def start(self, run: int) -> None:
        self.trials[run] = self.study.ask()
        self.best[run] = math.inf

    def report(self, run: int, step: int, val_loss: float, train_loss: float) -> None:
        self.trials[run].report(val_loss, step)
        if math.isfinite(val_loss):
            self.best[run] = min(self.best[run], val_loss)

    def should_stop(self, run: int, step: int) -> bool:
        with warnings.catch_warnings():
            # Diverged trials feed NaN/inf into optuna's np.nanmin/np.nanpercentile; the
            # NaN results are part of optuna's rule (all-NaN trial: prune; NaN
            # percentile: don't), so numpy's RuntimeWarnings about them are only noise.
            warnings.simplefilter("ignore", RuntimeWarning)
            return self.trials[run].should_prune()

    def finish(self, run: int, last_step: int, stopped: bool) -> None:
        trial = self.trials.pop(run)
        if stopped:
            self.study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        elif math.isfinite(self.best[run]):
            self.study.tell(trial, self.best[run])
        else:
            self.study.tell(trial, state=optuna.trial.TrialState.FAIL)


def optuna_policy(make_pruner: Callable[[], optuna.pruners.BasePruner]) -> Callable[[], OptunaSession]:
    return lambda: OptunaSession(make_pruner)


# --- the families --------------------------------------------------------------------


def run_families() -> list[tuple[str, Family]]:
    patiences = (3, 5, 10, 20)
    return [
        (
            "keras",
            [(f"patience={p},min_delta={d:g}", keras_early_stopping(p, d)) for p in patiences for d in (0, 1e-3, 1e-2)],
        ),
        (
            "keras-relative (not Keras)",
            [(f"patience={p},rel_delta={r:g}", relative_patience(p, r)) for p in patiences for r in (1e-3, 1e-2)],
        ),
        ("prechelt-GL", [(f"GL{a:g}", prechelt_gl(a)) for a in (1, 2, 3, 5, 10, 20)]),
        ("prechelt-PQ", [(f"PQ{a:g}", prechelt_pq(a)) for a in (0.5, 0.75, 1, 2, 3)]),
        ("prechelt-UP", [(f"UP{s}", prechelt_up(s)) for s in (1, 2, 3, 4)]),
        ("fixed-budget", [(f"{share:.0%}", fixed_fraction(share)) for share in (0.25, 0.5, 0.75, 1.0)]),
    ]


def cohort_families() -> list[tuple[str, CohortFamily]]:
    def median(startup: int, warmup: int) -> Callable[[], optuna.pruners.BasePruner]:
        return lambda: optuna.pruners.MedianPruner(n_startup_trials=startup, n_warmup_steps=warmup)

    def percentile(q: float, startup: int, warmup: int) -> Callable[[], optuna.pruners.BasePruner]:
        return lambda: optuna.pruners.PercentilePruner(q, n_startup_trials=startup, n_warmup_steps=warmup)

    return [
        (
            "optuna-median",
            [(f"startup={s},warmup={w}", optuna_policy(median(s, w))) for s, w in ((2, 0), (5, 0), (5, 10), (5, 20))],
        ),
        (
            "optuna-percentile",
            [
                (f"q={q},startup={s},warmup={w}", optuna_policy(percentile(q, s, w)))
                for q, s, w in ((25, 5, 10), (75, 5, 10), (90, 5, 10), (75, 2, 0))
            ],
        ),
    ]
