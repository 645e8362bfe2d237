"""From the sidecar's track series (read straight from it, or through Prometheus) to the
engine's state. Pure.

The sidecar folds every report of the monitored metric through `plateau.engine.history` and exports
the track, so a read here rebuilds nothing: the track is the engine's state after exactly the
sequence the trainer reported, however many reports fell between two scrapes.
"""

from __future__ import annotations

import math
from typing import Mapping, NamedTuple, Optional

from plateau.engine.fold import MetricTrack
from plateau_sidecar import protocol as p

# Every series a read needs, fetched in one query by name regex.
TRACK_READ_SERIES = (
    p.SERIES_REPORTS,
    p.SERIES_VALUE,
    p.SERIES_STEP,
    p.SERIES_TRACK_SPEC,
    p.SERIES_TRACK_RESUMES,
    *p.TRACK_SERIES,
    *p.STOPPED_SERIES,
)
_COUNTS = {"evaluations", "best_step", "since_improvement", "non_finite", "last_step", "regime_evaluations", "drop_step",
           "drop_gap"}
# Folded from finite values only: a NaN or an infinity here was never reported (a reported NaN
# moves the non-finite count instead), so it is missing data, never a value a rule may stop on.
_FINITE = {"best", "reference", "smoothed", "first", "forecast_level", "forecast_level_sd", "forecast_gain",
           "forecast_gain_sd"}


class SidecarTrack(NamedTuple):
    """One read of the monitored metric's track."""

    reports: int  # the sidecar's report counter: it moves with every report, resumes included
    spec_key: Optional[int]  # the metric stop spec the track was folded under
    current: Optional[MetricTrack]
    stopped: Optional[MetricTrack] = None  # the track at the first report that said stop
    resumes: int = 0


def track_from_series(values: Mapping[str, float], metric: str) -> Optional[SidecarTrack]:
    """One metric's series (series name -> value) as a track read; None before its first
    report, or when a count is not a whole number (which the sidecar never exports)."""
    get = values.get
    reports = _whole(get(p.SERIES_REPORTS))
    if reports is None:
        return None
    key = _whole(get(p.SERIES_TRACK_SPEC))
    if key is None:  # the sidecar folds under no spec yet
        return SidecarTrack(reports, None, None)
    current = _track(values, metric, p.TRACK_SERIES, {"last": get(p.SERIES_VALUE), "last_step": _whole(get(p.SERIES_STEP))})
    return SidecarTrack(reports, key, current, _track(values, metric, p.STOPPED_SERIES, {}),
                        _whole(get(p.SERIES_TRACK_RESUMES)) or 0)


# MetricsAvailable reasons of a read
NO_SERIES, SPEC_PENDING, SERIES_FOUND = "NoSeries", "SpecPending", "SeriesFound"


def availability(read: Optional[SidecarTrack], metric: str, spec_key: Optional[int],
                 seen: tuple[int, Optional[int]] = (0, None)) -> tuple[str, str, str]:
    """The MetricsAvailable condition a read gives: (status, reason, message). `seen`: the
    reports and last step of the reads before, which a read without series leaves standing."""
    if read is None:
        reports, step = seen
        if not reports:
            return "False", NO_SERIES, f"no {metric} series from the sidecar yet"
        return "False", NO_SERIES, (f"no {metric} series from the sidecar since its report {reports} (step {step}):"
                                    " its pod has ended, or Prometheus no longer scrapes it; the status keeps that read")
    if read.spec_key is None:
        return "False", SPEC_PENDING, (f"the sidecar exports {metric} but no track of it: its pod needs the downward-API"
                                       f" file {p.DEFAULT_SPEC_FILE} ({p.ENV_SPEC_FILE}), or the sidecar could not fold"
                                       " the spec (its log says why: bad_spec, history_lost)")
    if read.spec_key != spec_key:
        return "False", SPEC_PENDING, f"the sidecar has not folded {metric} under the current stop spec yet"
    return "True", SERIES_FOUND, f"the sidecar reports {metric}"


def _track(values: Mapping[str, float], metric: str, series: Mapping[str, str], known: dict[str, object]
           ) -> Optional[MetricTrack]:
    fields = dict(known)
    for name, field in series.items():
        value = values.get(name)
        if value is not None:
            fields[field] = _whole(value) if field in _COUNTS else (
                value if field not in _FINITE or math.isfinite(value) else None)
    if fields.get("evaluations") is None:
        return None
    for field in ("since_improvement", "non_finite"):
        if fields.get(field) is None:
            fields[field] = 0
    return MetricTrack(name=metric, **fields)  # type: ignore[arg-type]


# The largest count or step a sample carries exactly (the sidecar's steps are below it too). A
# sample beyond it, negative or fractional is no count: the read is unknown, never 1e12
# evaluations to account for, nor an integer the API server's int64 status fields would refuse.
MAX_COUNT = 2**53


def _whole(value: Optional[float]) -> Optional[int]:
    if value is None or not math.isfinite(value) or not 0 <= value <= MAX_COUNT or not float(value).is_integer():
        return None
    return int(value)
