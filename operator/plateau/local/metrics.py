"""The monitored metric of a local run: read, folded by the engine, and kept for the curve."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from plateau.api import MetricRule
from plateau.local.scrape import MetricSource, SourceError
from plateau.rules import MetricTrack, track
from plateau.summaries import new_evaluations


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
    # The MetricsAvailable condition: (status, reason, message).
    availability: tuple[str, str, str] = ("Unknown", "NotReadYet", "the metrics have not been read yet")

    def read(self) -> None:
        try:
            summary = self.source.read(self.rule.name)
        except SourceError as exc:
            self.availability = ("False", exc.reason, str(exc))
            return
        if summary is None:
            self.availability = ("False", "NoReports", f"no reports of {self.rule.name} yet")
            return
        self.availability = ("True", "ReportsSeen", f"{summary.reports} reports of {self.rule.name}")
        new = new_evaluations(summary, self.seen_reports, self.seen_non_finite, self.rule.mode)
        if new:
            self.track = track(self.track, self.rule, new)
            self.points.append((summary.step, summary.value))
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
