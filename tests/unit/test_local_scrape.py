"""Reading the sidecar's series for `plateau run`, the pure parts: series to summary, the PromQL
selector, and the curve points from a JSONL file."""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

from plateau.local.metrics import MAX_LINE_BYTES, bounded_lines, jsonl_points
from plateau.local.scrape import prometheus_selector
from plateau.rules import MetricTrack
from plateau.summaries import SidecarTrack, track_from_series
from plateau_sidecar import protocol as p


def test_a_read_needs_the_report_count_and_a_track_needs_its_spec() -> None:
    assert track_from_series({p.SERIES_VALUE: 1.0, p.SERIES_STEP: 3.0}, "m") is None
    assert track_from_series({p.SERIES_REPORTS: math.nan, p.SERIES_VALUE: 1.0, p.SERIES_STEP: 3.0}, "m") is None
    without_spec = {p.SERIES_REPORTS: 2.0, p.SERIES_VALUE: math.inf, p.SERIES_STEP: 3.0, "plateau_track_evaluations": 2.0}
    assert track_from_series(without_spec, "m") == SidecarTrack(reports=2, spec_key=None, current=None)
    read = track_from_series({**without_spec, p.SERIES_TRACK_SPEC: 7.0, "plateau_track_non_finite": 1.0}, "m")
    assert read is not None and read.spec_key == 7 and read.stopped is None
    assert read.current == MetricTrack("m", evaluations=2, last=math.inf, last_step=3, non_finite=1)


def test_prometheus_selector_escapes_label_values() -> None:
    selector = prometheus_selector('job "a"\\b', "val_loss")
    assert 'trainingjob="job \\"a\\"\\\\b"' in selector
    assert 'metric="val_loss"' in selector and p.SERIES_REPORTS in selector


def test_jsonl_points_skip_what_the_sidecar_would_reject(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1, "val_loss": 0.5}\nnot json\n{"step": 2}\n{"step": 3, "val_loss": NaN}\n[1]\n')
    points = jsonl_points(path, "val_loss")
    assert points[0] == (1, 0.5) and points[1][0] == 3 and math.isnan(points[1][1]) and len(points) == 2
    assert jsonl_points(tmp_path / "missing.jsonl", "val_loss") == []


def test_jsonl_points_read_a_bounded_part_of_a_file_and_nothing_of_a_device(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    long_line = '{"step": 0, "val_loss": 9, "pad": "' + "x" * (MAX_LINE_BYTES + 10) + '"}\n'
    path.write_text(long_line + "".join(f'{{"step": {i}, "val_loss": {1 / i}}}\n' for i in range(1, 2001)))
    assert [s for s, _ in jsonl_points(path, "val_loss")] == list(range(1, 2001))  # the long line skipped
    assert len(list(bounded_lines(path, max_bytes=len(long_line) + 10 * 30))) < 20
    started = time.monotonic()
    assert jsonl_points(Path("/dev/urandom"), "val_loss") == []
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    assert jsonl_points(fifo, "val_loss") == []
    assert time.monotonic() - started < 5
