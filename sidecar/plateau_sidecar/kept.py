"""Every metric's reports in order, kept within a bound so that a new spec folds the run again,
and which metrics' runs are no longer whole (reports dropped at the bound, or refused a
series). No lock of its own: the store's covers it."""

from __future__ import annotations

import bisect
import math
from array import array
from collections.abc import Iterator

from plateau.engine.history import MAX_EVALUATIONS

MAX_REFUSED = 1000  # refused metric names remembered, so a spec reading one is not folded short


class KeptReports:
    """One metric's kept reports in order: step, value, and the number of the record that
    carried each (which orders them against other metrics' reports, a learning rate's)."""

    __slots__ = ("steps", "values", "records")

    def __init__(self) -> None:
        self.steps: array[int] = array("q")
        self.values: array[float] = array("d")
        self.records: array[int] = array("q")


class ReportArchive:
    """The kept reports of every metric, `bound` in all."""

    def __init__(self, bound: int = MAX_EVALUATIONS) -> None:
        self.bound = bound
        self.count = 0
        self.reports: dict[str, KeptReports] = {}
        self._incomplete: set[str] = set()  # reports dropped at the bound
        # Names refused a series (not allowed, too many). Up to MAX_REFUSED; past it, any name
        # the store has no series of counts as refused.
        self._refused: set[str] = set()
        self._refused_overflow = False

    def keep(self, name: str, step: int, value: float, record: int) -> bool:
        """Keep one report; False when the bound drops `name`'s reports now (they are gone)."""
        if name in self._incomplete:
            return True
        if self.count >= self.bound:
            self._incomplete.add(name)
            self.reports.pop(name, None)
            return False
        kept = self.reports.get(name)
        if kept is None:
            kept = self.reports[name] = KeptReports()
        kept.steps.append(step)
        kept.values.append(value)
        kept.records.append(record)
        self.count += 1
        return True

    def refused(self, name: str) -> None:
        if len(self._refused) < MAX_REFUSED:
            self._refused.add(name)
        else:
            self._refused_overflow = True

    def whole(self, name: str, has_series: bool) -> bool:
        """Whether every report of `name` so far is kept: none dropped at the bound, none refused."""
        if name in self._incomplete or name in self._refused:
            return False
        return not self._refused_overflow or has_series

    def in_force(self, name: str, rate_name: str | None) -> Iterator[tuple[int, float, float | None]]:
        """`name`'s reports kept so far, each with the learning rate in force at its record (the
        rate's last kept report up to and including it, as the store's live fold reads it;
        None where unknown). Read off the live arrays, not a copy: ingest only appends to them,
        past the count taken now and at higher record numbers, each read and append under the GIL."""
        reports = self.reports.get(name) or KeptReports()
        rates = self.reports.get(rate_name) if rate_name else None
        return _in_force(reports, len(reports.steps), rates)


def _in_force(reports: KeptReports, count: int, rates: KeptReports | None) -> Iterator[tuple[int, float, float | None]]:
    steps, values, records = reports.steps, reports.values, reports.records
    for i in range(count):
        rate = None
        if rates is not None and (at := bisect.bisect_right(rates.records, records[i])):
            rate = rates.values[at - 1]
        yield steps[i], values[i], None if rate is None or math.isnan(rate) else rate
