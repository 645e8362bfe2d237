"""The learning curve of a local run as a PNG, with the best point and the stop point marked."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import matplotlib

matplotlib.use("Agg")  # no display: files only, also on a headless box

import matplotlib.pyplot as plt  # noqa: E402 (after the backend is chosen)


@dataclass(frozen=True)
class Marker:
    step: int
    label: str


def plot_curve(
    path: Path,
    title: str,
    metric: Optional[str],
    points: Sequence[tuple[int, float]],
    best: Optional[tuple[int, float]],
    stop: Optional[Marker],
) -> None:
    """`points` are (step, value) in report order; non-finite values are marked on the x axis."""
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=100)
    try:
        finite = [(s, v) for s, v in points if math.isfinite(v)]
        if finite:
            ax.plot(*zip(*finite), marker=".", linewidth=1.2, label=metric)
        broken = [s for s, v in points if not math.isfinite(v)]
        if broken:
            ax.plot(broken, [0] * len(broken), "x", color="tab:red", transform=ax.get_xaxis_transform(), clip_on=False, label="not finite")
        if best is not None:
            ax.plot([best[0]], [best[1]], "*", markersize=14, color="tab:green", label=f"best {best[1]:.4g} at step {best[0]}")
        if stop is not None:
            ax.axvline(stop.step, color="tab:red", linestyle="--", label=f"{stop.label} at step {stop.step}")
        if not points:
            ax.text(0.5, 0.5, "no evaluations were reported", ha="center", va="center", transform=ax.transAxes)
        values = [v for _, v in finite]
        if values and min(values) > 0 and max(values) / min(values) > 20:
            ax.set_yscale("log")  # a loss falling by orders of magnitude
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.set_ylabel(metric or "metric")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="best")
        fig.tight_layout()
        fig.savefig(path, format="png")
    finally:
        plt.close(fig)
