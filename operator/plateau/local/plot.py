"""The learning curve of a local run as a PNG, with the best point, the stop point and the
rule's target, smoothed value and reference drawn."""

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
    target: Optional[float] = None,
    track_points: Sequence[tuple[int, Optional[float], Optional[float]]] = (),
    reported: Sequence[str] = (),
) -> list[str]:
    """`points` are (step, value) in report order; non-finite values are marked on the x axis.
    `track_points` are (step, smoothed, reference) as the engine had them at each read; a None
    breaks its line. `reported` names other metrics the trainer reported, for a curve without
    `metric`. Returns what the figure says (legend labels, then any note), which the PNG also
    carries as its Description."""
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=100)
    try:
        finite = [(s, v) for s, v in points if math.isfinite(v)]
        if finite:
            ax.plot(*zip(*finite), marker=".", linewidth=1.2, label=metric)
        broken = [s for s, v in points if not math.isfinite(v)]
        if broken:
            ax.plot(broken, [0] * len(broken), "x", color="tab:red", transform=ax.get_xaxis_transform(), clip_on=False, label="not finite")
        steps = [s for s, _, _ in track_points]
        smoothed = [math.nan if v is None else v for _, v, _ in track_points]
        if any(v is not None for _, v, _ in track_points):
            ax.plot(steps, smoothed, linewidth=1.5, color="tab:orange", label="smoothed")
        references = [math.nan if r is None else r for _, _, r in track_points]
        if any(r is not None for _, _, r in track_points):
            ax.step(steps, references, where="post", linewidth=1.0, color="tab:gray", label="reference")
        if target is not None:
            ax.axhline(target, color="tab:purple", linestyle=":", label=f"target {target:g}")
        if best is not None:
            ax.plot([best[0]], [best[1]], "*", markersize=14, color="tab:green", label=f"best {best[1]:.4g} at step {best[0]}")
        if stop is not None:
            ax.axvline(stop.step, color="tab:red", linestyle="--", label=f"{stop.label} at step {stop.step}")
        notes = [] if points else [_no_evaluations(metric, reported)]
        for note in notes:
            ax.text(0.5, 0.5, note, ha="center", va="center", transform=ax.transAxes)
        values = [v for _, v in finite] + [v for v in (*smoothed, *references, target) if v is not None and math.isfinite(v)]
        if values and min(values) > 0 and max(values) / min(values) > 20:
            ax.set_yscale("log")  # a loss falling by orders of magnitude
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.set_ylabel(metric or "metric")
        ax.grid(alpha=0.3)
        labels = ax.get_legend_handles_labels()[1]
        if labels:
            ax.legend(loc="best")
        fig.tight_layout()
        said = [*labels, *notes]
        fig.savefig(path, format="png", metadata={"Description": "\n".join(said)})
        return said
    finally:
        plt.close(fig)


def _no_evaluations(metric: Optional[str], reported: Sequence[str], shown: int = 3) -> str:
    if metric is None:
        return "no evaluations were reported"
    others = [name for name in reported if name != metric]
    text = f"no evaluations of {metric} were reported"
    if others:
        text += "\n(the trainer reported " + ", ".join(others[:shown]) + (", ..." if len(others) > shown else "") + ")"
    return text
