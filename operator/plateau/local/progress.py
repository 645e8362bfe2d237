"""What `plateau run` shows while it runs: a live rich table on a terminal, plain lines elsewhere.

The trainer's output and the runner's events scroll above the table (rich's Live keeps the
table at the bottom); when stdout is not a terminal, a plain status line is printed when new
evaluations arrive, and at least every PLAIN_EVERY_SECONDS.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Optional

from rich.console import Console
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from plateau.api.durations import format_duration
from plateau.engine.fold import MetricTrack

PLAIN_EVERY_SECONDS = 10.0
BAR_WIDTH = 30


@dataclass(frozen=True)
class Snapshot:
    """The state of a run, as shown."""

    name: str
    phase: str
    elapsed: float
    max_duration: Optional[float]
    gpu_hours: float
    max_gpu_hours: Optional[float]
    gpus: int
    gpu_utilisation: Optional[float]
    metric_name: Optional[str]
    metric: Optional[MetricTrack]
    patience: Optional[int]
    note: str


def _number(value: Optional[float]) -> str:
    return "n/a" if value is None else f"{value:.4g}"


def metric_text(s: Snapshot) -> tuple[str, str, str]:
    """(last, best, patience) as shown in both forms."""
    m = s.metric
    if m is None or m.evaluations == 0:
        return "no reports yet", "n/a", "n/a"
    last = f"{_number(m.last)} at step {m.last_step}"
    best = f"{_number(m.best)} at step {m.best_step}" if m.best is not None else "no finite value"
    patience = f"{m.since_improvement} / {s.patience}" if s.patience else f"{m.since_improvement} / (no patience rule)"
    return last, best, patience


def gpu_text(s: Snapshot) -> str:
    if s.gpu_utilisation is None:
        return f"unknown ({s.gpus} GPUs)" if s.gpus else "unknown (no GPU)"
    return f"{s.gpu_utilisation:.0%} (busiest of {s.gpus})"


def budget_text(used: float, limit: Optional[float], unit: str) -> str:
    if unit == "time":
        return format_duration(used) + (f" / {format_duration(limit)}" if limit is not None else "")
    return f"{used:.4f}" + (f" / {limit:g}" if limit is not None else "")


def plain_line(s: Snapshot) -> str:
    parts = [f"{s.phase}: {s.note}"]
    if s.metric_name:
        last, best, patience = metric_text(s)
        parts.append(f"{s.metric_name} {last}, best {best}, patience {patience}")
    parts.append(f"gpu {gpu_text(s)}")
    parts.append(f"elapsed {budget_text(s.elapsed, s.max_duration, 'time')}")
    parts.append(f"gpu-hours {budget_text(s.gpu_hours, s.max_gpu_hours, 'gpu')}")
    return "; ".join(parts)


def _budget_row(table: Table, label: str, used: float, limit: Optional[float], unit: str) -> None:
    text = Text(budget_text(used, limit, unit))
    if limit:
        row = Table.grid(padding=(0, 1))
        row.add_row(ProgressBar(total=limit, completed=min(used, limit), width=BAR_WIDTH), text)
        table.add_row(label, row)
    else:
        table.add_row(label, text)


def render(s: Snapshot) -> Table:
    table = Table(title=f"plateau run {s.name}", title_justify="left", show_header=False, box=None, padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    table.add_row("phase", Text(f"{s.phase}: {s.note}"))
    if s.metric_name:
        last, best, patience = metric_text(s)
        table.add_row(f"{s.metric_name} last", last)
        table.add_row(f"{s.metric_name} best", best)
        table.add_row("patience", patience)
    table.add_row("GPU utilisation", gpu_text(s))
    _budget_row(table, "elapsed", s.elapsed, s.max_duration, "time")
    _budget_row(table, "GPU-hours", s.gpu_hours, s.max_gpu_hours, "gpu")
    return table


class Display:
    """Use as a context manager; `update` with each new snapshot, `event` for what happened."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self._live: Optional[Live] = Live(console=console, refresh_per_second=4) if console.is_terminal else None
        self._lock = threading.Lock()  # trainer output arrives on another thread
        self._printed: Optional[tuple[int, str]] = None
        self._printed_at = float("-inf")

    def __enter__(self) -> Display:
        if self._live is not None:
            self._live.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.stop()

    def _print(self, text: str, style: Optional[str] = None) -> None:
        with self._lock:
            self.console.print(text, style=style, markup=False, highlight=False, soft_wrap=True)

    def output(self, line: str) -> None:
        """A line of the trainer's output."""
        self._print(line, style="dim")

    def event(self, elapsed: float, text: str) -> None:
        self._print(f"[{elapsed:7.1f}s] plateau: {text}", style="bold")

    def update(self, s: Snapshot) -> None:
        if self._live is not None:
            self._live.update(render(s))
            return
        key = (s.metric.evaluations if s.metric else 0, s.phase)
        if key != self._printed or s.elapsed - self._printed_at >= PLAIN_EVERY_SECONDS:
            self._printed, self._printed_at = key, s.elapsed
            self.event(s.elapsed, plain_line(s))
