"""What `plateau run` shows: the live table's content, plain lines when stdout is not a TTY, and
the PNG of the learning curve."""

from __future__ import annotations

import io
import math
from dataclasses import replace
from pathlib import Path

from rich.console import Console

from plateau.local.plot import Marker, plot_curve
from plateau.local.progress import PLAIN_EVERY_SECONDS, Display, Snapshot, plain_line, render
from plateau.engine.fold import MetricTrack

SNAPSHOT = Snapshot(
    name="digits",
    phase="Running",
    elapsed=75.0,
    max_duration=600.0,
    gpu_hours=0.0,
    max_gpu_hours=None,
    gpus=0,
    gpu_utilisation=None,
    metric_name="val_loss",
    metric=MetricTrack("val_loss", evaluations=12, last=0.25, last_step=120, best=0.2, best_step=90, since_improvement=3),
    patience=10,
    note="going on",
)


def _text(renderable: object, terminal: bool = False) -> str:
    out = io.StringIO()
    Console(file=out, width=120, force_terminal=terminal).print(renderable)
    return out.getvalue()


def test_the_table_shows_metric_patience_gpu_and_budgets() -> None:
    text = _text(render(replace(SNAPSHOT, gpus=2, gpu_utilisation=0.37, max_gpu_hours=4.0, gpu_hours=0.04)))
    for expected in ("0.25 at step 120", "0.2 at step 90", "3 / 10", "37% (busiest of 2)", "1m15s / 10m", "0.0400 / 4"):
        assert expected in text


def test_plain_line_says_unknown_for_a_missing_gpu() -> None:
    line = plain_line(SNAPSHOT)
    assert "val_loss 0.25 at step 120, best 0.2 at step 90, patience 3 / 10" in line
    assert "gpu unknown (no GPU)" in line and "elapsed 1m15s / 10m" in line


def test_plain_output_prints_on_news_or_every_ten_seconds() -> None:
    out = io.StringIO()
    display = Display(Console(file=out, force_terminal=False))
    with display:
        display.update(SNAPSHOT)
        display.update(replace(SNAPSHOT, elapsed=76.0))  # nothing new: no line
        display.update(replace(SNAPSHOT, elapsed=75.0 + PLAIN_EVERY_SECONDS))  # a heartbeat
        display.output("epoch=3 step=66 val_loss=0.1")
        display.event(80.0, "stop requested (Plateau)")
    lines = out.getvalue().splitlines()
    assert len(lines) == 4 and "\x1b" not in out.getvalue()
    assert lines[0].startswith("[   75.0s] plateau: Running: going on")
    assert lines[2] == "epoch=3 step=66 val_loss=0.1"


def test_plot_writes_a_png_with_gaps_and_markers(tmp_path: Path) -> None:
    path = tmp_path / "curve.png"
    points = [(10, 2.0), (20, 0.5), (30, math.nan), (40, 0.05)]
    plot_curve(path, "digits: Stopped (NotFinite)", "val_loss", points, best=(40, 0.05), stop=Marker(40, "stop (NotFinite)"))
    assert path.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    empty = tmp_path / "empty.png"
    plot_curve(empty, "nothing", None, [], best=None, stop=None)
    assert empty.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
