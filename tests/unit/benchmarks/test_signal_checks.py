"""The checks of signals beyond the presets' candidates (benchmarks/signal_checks.py)."""

from __future__ import annotations

import numpy as np

from benchmarks.harness import RunCurve
from benchmarks.signal_checks import gap_stop, noise


def run(val_loss: np.ndarray, train_loss: np.ndarray) -> RunCurve:
    steps = np.arange(1, len(val_loss) + 1)
    return RunCurve(0, "t", "c", steps, val_loss, np.full(len(steps), 0.9), train_loss)


def test_the_train_loss_rule_stops_once_val_loss_no_longer_follows_train_loss() -> None:
    epochs = np.arange(1, 101, dtype=float)
    train = 1.0 / epochs
    overfits = run(np.where(epochs <= 40, 1.0 / epochs, 1.0 / 40), train)  # val flat from epoch 40
    stop = gap_stop(overfits, smoothing=0.0, window=0.2, ratio=0.1, first=8)
    assert 40 < stop < 60
    together = run(1.5 / epochs, train)  # val improves more than train, to the end
    assert gap_stop(together, smoothing=0.0, window=0.2, ratio=0.1, first=8) == 100
    diverged = run(np.where(epochs < 50, 1.0 / epochs, np.nan), train)
    assert gap_stop(diverged, smoothing=0.0, window=0.2, ratio=0.1, first=8) == 100


def test_the_noise_statistic_orders_noisy_runs_above_smooth_ones() -> None:
    epochs = np.arange(1, 21, dtype=float)
    smooth = run(1.0 / epochs, 1.0 / epochs)
    noisy = run(1.0 / epochs + 0.05 * np.random.default_rng(3).standard_normal(20), 1.0 / epochs)
    assert noise(smooth, 10) < noise(noisy, 10)
    assert noise(run(np.full(20, np.nan), epochs), 10) == np.inf  # too few finite values to tell
