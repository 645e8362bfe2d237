"""From the sidecar's cumulative series to the evaluations the engine folds. Pure.

The sidecar exports, per metric, the report count, the last value and step, the non-finite
count, and the running min and max with the step and report number where each was seen.
Between two reads, `new = reports - seen` evaluations happened:

- new == 1 (reports slower than reads): the last value *is* that evaluation; exact.
- new > 1 (reports faster): only the last value and the extremes are known. The best
  extreme is placed at its report number, so the patience counter restarts exactly where the
  best value was seen; the other evaluations are filled with the worst extreme, which is never
  an improvement. Every exact improvement happened at or before the best extreme, and if any
  happened the best extreme is one too, so the counter is never larger than the exact one.
  Which evaluation improved last is unknown, so from then on improvements are measured
  against a reference that is never stricter than the exact one (`Evaluation.exact=False`,
  `MetricTrack.reference_exact`). A stop may come later than an exact count, never earlier. (With smoothing
  this holds only for one report per read, where the sequence is exact.)
"""

from __future__ import annotations

import math
from typing import Mapping, NamedTuple, Optional

from plateau.rules import Evaluation
from plateau_sidecar import protocol as p


class SidecarSummary(NamedTuple):
    """One read of one metric's series from the sidecar (or from Prometheus)."""

    reports: int
    value: float
    step: int
    non_finite: int = 0
    min: Optional[float] = None
    min_step: Optional[int] = None
    min_report: Optional[int] = None
    max: Optional[float] = None
    max_step: Optional[int] = None
    max_report: Optional[int] = None


def new_evaluations(now: SidecarSummary, seen_reports: int, seen_non_finite: int, mode: str) -> list[Evaluation]:
    """Evaluations reported since the counter read `seen_reports`, in report order."""
    if now.reports < seen_reports:  # the sidecar restarted: its counters start again from 0
        seen_reports, seen_non_finite = 0, 0
    new = now.reports - seen_reports
    if new <= 0:
        return []
    exact = new == 1
    slots: dict[int, Evaluation] = {now.reports: Evaluation(now.step, now.value, exact)}
    if mode == "min":
        best, best_step, best_report, worst = now.min, now.min_step, now.min_report, now.max
    else:
        best, best_step, best_report, worst = now.max, now.max_step, now.max_report, now.min
    if best is not None and best_step is not None and best_report is not None and seen_reports < best_report <= now.reports:
        slots.setdefault(best_report, Evaluation(best_step, best, exact))
    filler_value = worst if worst is not None else now.value
    missing_non_finite = max(0, now.non_finite - seen_non_finite - (0 if math.isfinite(now.value) else 1))
    out = []
    for report in range(seen_reports + 1, now.reports + 1):
        ev = slots.get(report)
        if ev is None:
            if missing_non_finite:
                ev, missing_non_finite = Evaluation(now.step, math.nan, exact), missing_non_finite - 1
            else:
                ev = Evaluation(now.step, filler_value, exact)
        out.append(ev)
    return out


def summary_from_series(values: Mapping[str, float]) -> Optional[SidecarSummary]:
    """One metric's series (series name -> value) as a summary; None before its first report,
    or when a count or step is not a number (which the sidecar never exports)."""
    get = values.get  # ten reads per job with news, every cycle
    reports, step, value = get(p.SERIES_REPORTS), get(p.SERIES_STEP), get(p.SERIES_VALUE)
    if reports is None or step is None or value is None or not (math.isfinite(reports) and math.isfinite(step)):
        return None
    return SidecarSummary(int(reports), value, int(step), _whole(get(p.SERIES_NONFINITE)) or 0,
                          get(p.SERIES_MIN), _whole(get(p.SERIES_MIN_STEP)), _whole(get(p.SERIES_MIN_REPORT)),
                          get(p.SERIES_MAX), _whole(get(p.SERIES_MAX_STEP)), _whole(get(p.SERIES_MAX_REPORT)))


def _whole(value: Optional[float]) -> Optional[int]:
    return int(value) if value is not None and math.isfinite(value) else None
