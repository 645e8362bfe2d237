"""Reading the sidecar's series for `plateau run`, the pure parts: series to summary, the PromQL
selector, and the curve points from a JSONL file."""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

import pytest

from plateau.api import StopSpec
from plateau.local.metrics import MAX_LINE_BYTES, bounded_lines, jsonl_points
from plateau.local.scrape import pick_track
from plateau.prometheus.promql import SidecarDecoder, sidecar_query
from plateau.engine.fold import MetricTrack
from plateau.engine.rules import Observation, decide
from plateau.prometheus.summaries import TRACK_READ_SERIES, SidecarTrack, track_from_series
from plateau_sidecar import protocol as p


def test_a_read_needs_the_report_count_and_a_track_needs_its_spec() -> None:
    assert track_from_series({p.SERIES_VALUE: 1.0, p.SERIES_STEP: 3.0}, "m") is None
    assert track_from_series({p.SERIES_REPORTS: math.nan, p.SERIES_VALUE: 1.0, p.SERIES_STEP: 3.0}, "m") is None
    without_spec = {p.SERIES_REPORTS: 2.0, p.SERIES_VALUE: math.inf, p.SERIES_STEP: 3.0, "plateau_track_evaluations": 2.0}
    assert track_from_series(without_spec, "m") == SidecarTrack(reports=2, spec_key=None, current=None)
    read = track_from_series({**without_spec, p.SERIES_TRACK_SPEC: 7.0, "plateau_track_non_finite": 1.0}, "m")
    assert read is not None and read.spec_key == 7 and read.stopped is None
    assert read.current == MetricTrack("m", evaluations=2, last=math.inf, last_step=3, non_finite=1)


def answer(*series: tuple[dict[str, str], float]) -> bytes:
    result = [{"metric": labels, "value": [1.0, repr(value) if math.isfinite(value) else "NaN"]} for labels, value in series]
    return json.dumps({"status": "success", "data": {"resultType": "vector", "result": result}}).encode()


def sidecar_series(namespace: str | None, job: str, metric: str, best: float, reports: float = 3.0) -> list[tuple[dict[str, str], float]]:
    labels = {"trainingjob": job, "metric": metric, "pod": "", "instance": "127.0.0.1:1"}
    if namespace is not None:
        labels["namespace"] = namespace
    values = {p.SERIES_REPORTS: reports, p.SERIES_TRACK_SPEC: 7.0, p.SERIES_VALUE: best, p.SERIES_STEP: reports,
              "plateau_track_evaluations": reports, "plateau_track_best": best, "plateau_track_best_step": reports}
    return [({**labels, "__name__": name}, value) for name, value in values.items()]


def test_a_local_prometheus_read_takes_only_this_jobs_series_as_the_operator_does() -> None:
    query = sidecar_query(("research", ""), ["val_loss"], "namespace", trainingjobs=['job "a"\\b'])
    assert 'namespace=~"|research"' in query and 'metric=~"val_loss"' in query and 'trainingjob=~"job\\\\ \\"a' in query
    decoded = SidecarDecoder()(answer(
        *sidecar_series("other", "job", "val_loss", 0.01, reports=9),  # another namespace, same name
        *sidecar_series("research", "job-2", "val_loss", 0.02, reports=9),  # another job
        *sidecar_series("research", "job", "accuracy", 0.03, reports=9),  # another metric
        *sidecar_series(None, "job", "val_loss", 0.5),  # plateau run's own sidecar, no namespace label
    ))
    read = pick_track(decoded, ("research", ""), "job", "val_loss")
    assert read is not None and read.current is not None and read.current.best == 0.5
    assert pick_track(decoded, ("elsewhere", ""), "job-2", "val_loss") is None


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


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize("mode, target", [("min", 0.01), ("max", 0.99)])
def test_a_non_finite_sample_the_sidecar_never_reported_stops_nothing(bad: float, mode: str, target: float) -> None:
    """Any one series read as NaN or an infinity, while the non-finite count stands at 0, is
    missing data: no rule stops on it (the operator and plateau run read through this)."""
    stop = StopSpec.model_validate({"metric": {"name": "m", "mode": mode, "target": target, "patience": 3}})
    good = {p.SERIES_REPORTS: 5.0, p.SERIES_TRACK_SPEC: 7.0, p.SERIES_VALUE: 0.5, p.SERIES_STEP: 5.0,
            "plateau_track_evaluations": 5.0, "plateau_track_best": 0.5, "plateau_track_best_step": 5.0,
            "plateau_track_reference": 0.5, "plateau_track_first": 0.4, "plateau_track_since_improvement": 0.0,
            "plateau_track_non_finite": 0.0}
    for name in [*TRACK_READ_SERIES]:
        read = track_from_series({**good, name: bad}, "m")
        if read is None or read.current is None:
            continue
        decision = decide(stop, Observation(read.stopped or read.current, 1.0, 0.0, None))
        assert not decision.stop, (name, decision.reason, decision.message)
