"""The monitored metric of a local run: the track the sidecar folded, read as the operator reads it."""

from __future__ import annotations

import json
import math
import os
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Optional

from plateau.api import MetricRule
from plateau.engine.cohort import record_best
from plateau.local.scrape import MetricSource, SourceError
from plateau.engine.fold import MetricTrack
from plateau.prometheus.summaries import SidecarTrack, availability


@dataclass
class MetricReader:
    """Each `read` takes the sidecar's track, folded under the spec whose key is `spec_key`."""

    rule: MetricRule
    source: MetricSource
    spec_key: Optional[int]
    track: Optional[MetricTrack] = None
    stopped: Optional[MetricTrack] = None  # the track at the first report that said stop
    reports: int = 0
    resumes: int = 0
    # The last report at each read: every evaluation when reads outpace reports (the file
    # source's curve reads the JSONL instead).
    points: list[tuple[int, float]] = field(default_factory=list)
    # (step, smoothed, reference) as the engine had them at each read, for the curve.
    track_points: list[tuple[int, Optional[float], Optional[float]]] = field(default_factory=list)
    best_history: list[list[float]] = field(default_factory=list)  # status.metric.bestHistory, as the operator keeps it
    # The MetricsAvailable condition: (status, reason, message), with the operator's reasons.
    availability: tuple[str, str, str] = ("Unknown", "NotReadYet", "the metrics have not been read yet")

    @property
    def decision_track(self) -> Optional[MetricTrack]:
        """What the rules decide on: the first track that said stop, once there is one."""
        return self.stopped or self.track

    def read(self) -> None:
        try:
            read = self.source.read(self.rule.name)
        except SourceError as exc:
            self.availability = ("False", exc.reason, str(exc))
            return
        self.fold(read)

    def read_last(self) -> None:
        """A read while the sidecar shuts down: one that fails, or finds no series (Prometheus
        marks a vanished target's series stale), only means it has gone, and keeps what the
        reads before it found."""
        try:
            read = self.source.read(self.rule.name)
        except SourceError:
            return
        if read is not None:
            self.fold(read)

    def settle(self, apart: float, timeout: float) -> None:
        """Read until two reads `apart` seconds apart count the same reports: once the trainer
        has exited, the sidecar has then taken in everything it reported."""
        deadline = time.monotonic() + timeout
        previous = None
        while time.monotonic() < deadline:
            self.read()
            if self.reports == previous:
                return
            previous = self.reports
            time.sleep(apart)

    def fold(self, read: Optional[SidecarTrack]) -> None:
        self.availability = availability(read, self.rule.name, self.spec_key,
                                         (self.reports, self.track.last_step if self.track else None))
        if read is None or read.spec_key != self.spec_key or read.current is None:
            return
        current = read.current
        if read.reports != self.reports and current.last_step is not None and current.last is not None:
            self.points.append((current.last_step, current.last))
            self.track_points.append((current.last_step, current.smoothed, current.reference))
            self.best_history = record_best(self.best_history, current.best_step, current.best, current.last_step)
        self.track, self.stopped, self.reports, self.resumes = current, read.stopped, read.reports, read.resumes


# The curve reads at most this much of a trainer's JSONL file, a line at most MAX_LINE_BYTES
# (longer ones are skipped, as the sidecar skips them): a file that grows without end, or a
# device, costs bounded time and memory.
MAX_CURVE_BYTES = 64 * 1024 * 1024  # about two million reports
MAX_LINE_BYTES = 64 * 1024


def bounded_lines(path: Path, max_bytes: int = MAX_CURVE_BYTES) -> Iterator[str]:
    """The lines of a regular file, within `max_bytes`, each at most MAX_LINE_BYTES; nothing
    from a FIFO or a device (opening does not wait for a writer)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError:
        return
    with os.fdopen(fd, "rb") as file:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return
        read = 0
        while read < max_bytes and (line := file.readline(MAX_LINE_BYTES + 1)):
            read += len(line)
            if len(line) > MAX_LINE_BYTES:  # skip an over-long line to its end, then go on
                while not line.endswith(b"\n") and read < max_bytes and (line := file.readline(MAX_LINE_BYTES)):
                    read += len(line)
                continue
            yield line.decode("utf-8", errors="replace")


def jsonl_points(path: Path, metric: str) -> list[tuple[int, float]]:
    """Every report of `metric` in a trainer's JSONL file; lines the sidecar would reject are skipped."""
    points = []
    for line in bounded_lines(path):
        try:
            record = json.loads(line)
            step, value = int(record["step"]), float(record[metric])
        except (ValueError, KeyError, TypeError):
            continue
        points.append((step, value if math.isfinite(value) else math.nan))
    return points
