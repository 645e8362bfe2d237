"""The monitored metric of a local run: read, folded by the engine, and kept for the curve."""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from plateau.api import MetricRule
from plateau.cohort import record_best
from plateau.local.scrape import MetricSource, SourceError
from plateau.rules import MetricTrack, track
from plateau.summaries import SidecarSummary, new_evaluations


@dataclass
class MetricReader:
    """Each `read` folds the evaluations reported since the last one, as the operator does."""

    rule: MetricRule
    source: MetricSource
    track: Optional[MetricTrack] = None
    seen_reports: int = 0
    seen_non_finite: int = 0
    # Real (step, value) pairs: every evaluation when reads outpace reports; in a burst only
    # the last value is known exactly (the file source's curve reads the JSONL instead).
    points: list[tuple[int, float]] = field(default_factory=list)
    best_history: list[list[float]] = field(default_factory=list)  # status.metric.bestHistory, as the operator keeps it
    # The MetricsAvailable condition: (status, reason, message), with the operator's reasons.
    availability: tuple[str, str, str] = ("Unknown", "NotReadYet", "the metrics have not been read yet")

    def read(self) -> None:
        try:
            summary = self.source.read(self.rule.name)
        except SourceError as exc:
            self.availability = ("False", exc.reason, str(exc))
            return
        self.fold(summary)

    def read_last(self) -> None:
        """A read while the sidecar shuts down: one that fails only means it has gone."""
        try:
            self.fold(self.source.read(self.rule.name))
        except SourceError:
            pass

    def settle(self, apart: float, timeout: float) -> None:
        """Read until two reads `apart` seconds apart count the same reports: once the trainer
        has exited, the sidecar has then taken in everything it reported."""
        deadline = time.monotonic() + timeout
        previous = None
        while time.monotonic() < deadline:
            self.read()
            if self.seen_reports == previous:
                return
            previous = self.seen_reports
            time.sleep(apart)

    def fold(self, summary: Optional[SidecarSummary]) -> None:
        if summary is None:
            self.availability = ("False", "NoSeries", f"no {self.rule.name} series from the sidecar yet")
            return
        self.availability = ("True", "SeriesFound", f"the sidecar reports {self.rule.name}")
        new = new_evaluations(summary, self.seen_reports, self.seen_non_finite, self.rule.mode)
        if new:
            self.track = track(self.track, self.rule, new)
            self.points.append((summary.step, summary.value))
            self.best_history = record_best(self.best_history, self.track.best_step, self.track.best)
        self.seen_reports, self.seen_non_finite = summary.reports, summary.non_finite


def jsonl_points(path: Path, metric: str) -> list[tuple[int, float]]:
    """Every report of `metric` in a trainer's JSONL file; lines the sidecar would reject are skipped."""
    points = []
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return []
    for line in lines:
        try:
            record = json.loads(line)
            step, value = int(record["step"]), float(record[metric])
        except (ValueError, KeyError, TypeError):
            continue
        points.append((step, value if math.isfinite(value) else math.nan))
    return points
