"""The sidecar's state: per-metric aggregates in plain dicts, fed by every source, and the
monitored metric's track, folded report by report through the stop-rule engine.

Prometheus samples the sidecar once per scrape, so anything reported between two scrapes
would otherwise be invisible. The aggregates (report count, last value and step, running
min/max with their step and report number) are for dashboards and alerts. The sidecar is the
one place that sees every report, so it folds the monitored metric there
(`plateau.engine.history`), with the metric stop spec the operator hands it, and exports the track:
whatever the ratio of reports to scrapes, the operator reads the engine's state after exactly
the sequence the trainer reported. Each metric's reports are also kept (bounded), so a new spec
folds the same sequence again.

Ingest is the hot path (tens of thousands of records a second), so it uses attribute access on
`__slots__` objects and no prometheus_client calls; the collector reads a snapshot.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum
from array import array
from typing import NamedTuple

from plateau.api import RECORD_KEYS, StopSpec
from plateau.engine.history import MetricHistory, spec_key
from plateau.engine.fold import MetricTrack

from .kept import ReportArchive
from .ledger import PushLedger
from .protocol import MAX_STEP

log = logging.getLogger("plateau_sidecar")

# Keys of a record that are not metrics (a stop rule may not name one: the API refuses it).
STEP_KEY = "step"
NON_METRIC_KEYS = frozenset(RECORD_KEYS)

# JSON has no literal for NaN or infinity (Python's json module emits NaN/Infinity anyway);
# trainers in other languages may send them as strings, which are still non-finite reports.
_NON_FINITE_STRINGS = {s: float(s) for s in ("nan", "NaN", "inf", "+inf", "-inf", "Infinity", "+Infinity", "-Infinity")}

DEFAULT_MAX_METRICS = 1000
# Reports held for a refold from its start to its end: at most the kept bound over this.
LATE_SHARE = 10
MAX_METRIC_NAME_LENGTH = 200


class BadInput(StrEnum):
    """Kinds of input the sidecar rejects; each is a value of the `kind` label."""

    MALFORMED_JSON = "malformed_json"
    NOT_AN_OBJECT = "not_an_object"
    BAD_STEP = "bad_step"  # missing, not an integer, or outside [0, 2**53)
    NON_NUMERIC = "non_numeric"
    UNKNOWN_METRIC = "unknown_metric"  # not in the allow-list (PLATEAU_METRIC_NAMES)
    BAD_METRIC_NAME = "bad_metric_name"  # empty or too long
    TOO_MANY_METRICS = "too_many_metrics"  # cardinality bound reached
    LINE_TOO_LONG = "line_too_long"
    MISSING_FILE = "missing_file"  # once per episode of the file being absent
    TRUNCATED_FILE = "truncated_file"
    PUSH_TOO_LARGE = "push_too_large"  # HTTP 413
    READ_ERROR = "read_error"  # an unexpected failure in one poll of a followed file; it goes on
    JOURNAL_ERROR = "journal_error"  # a push could not be written to the push journal
    TOO_MANY_REQUESTS = "too_many_requests"  # HTTP 429: the bound on requests in flight
    BAD_SPEC = "bad_spec"  # the metric stop spec handed to the sidecar does not validate
    PATTERN_TIMEOUT = "pattern_timeout"  # the stdout pattern ran out of time on a line, which was skipped
    NOT_A_FILE = "not_a_file"  # a followed path is a FIFO, a device or a directory: never read


class RecordError(ValueError):
    """A record that cannot be ingested at all (as opposed to one bad field in it)."""

    def __init__(self, kind: BadInput, message: str) -> None:
        super().__init__(message)
        self.kind = kind


class Series:
    """Aggregates of one metric. Report numbers are 1-based; 0 means "no finite value yet"."""

    __slots__ = (
        "value",
        "step",
        "reports",
        "nonfinite",
        "min",
        "min_step",
        "min_report",
        "max",
        "max_step",
        "max_report",
        "record",
    )

    def __init__(self) -> None:
        self.value = math.nan
        self.step = 0
        self.reports = 0
        self.record = 0  # the number of the record that carried the last report
        self.nonfinite = 0
        self.min = math.inf
        self.min_step = 0
        self.min_report = 0
        self.max = -math.inf
        self.max_step = 0
        self.max_report = 0


class SeriesView(NamedTuple):
    """An immutable copy of a Series, for the collector and for tests (a NamedTuple: a scrape
    makes one per metric, and these are several times cheaper to build than dataclasses)."""

    value: float
    step: int
    reports: int
    nonfinite: int
    min: float | None
    min_step: int | None
    min_report: int | None
    max: float | None
    max_step: int | None
    max_report: int | None


class TrackView(NamedTuple):
    """The monitored metric's track, as folded under the spec whose key it carries."""

    metric: str
    spec_key: int
    current: MetricTrack
    stopped: MetricTrack | None
    resumes: int
    kept: bool


@dataclass(frozen=True)
class Snapshot:
    series: Mapping[str, SeriesView]
    bad_input: Mapping[BadInput, int]
    generation: int  # bumped by every change to what is exported: for caching, and for shutdown
    track: TrackView | None = None


def step_of(record: object) -> int:
    """The step of a decoded JSON record; raises RecordError when it cannot be ingested.

    A step is a whole number in [0, MAX_STEP): a larger one is not exact as a float (and one
    beyond the largest float would break every scrape), and a negative one is no training step."""
    if type(record) is not dict:
        raise RecordError(BadInput.NOT_AN_OBJECT, f"a record must be a JSON object, got {type(record).__name__}")
    step = record.get(STEP_KEY)
    if type(step) is float and step.is_integer():
        step = int(step)
    if type(step) is int and 0 <= step < MAX_STEP:
        return step
    raise RecordError(BadInput.BAD_STEP, f"'step' must be an integer in [0, 2**53), got {step!r:.80}")


def _no_late() -> tuple[array[int], array[float], array[float]]:
    return array("q"), array("d"), array("d")




class MetricStore:
    """Thread-safe aggregates. Sources hold `with store.lock:` for a whole batch of records."""

    def __init__(
        self,
        trainingjob: str,
        allowed: Iterable[str] | None = None,
        max_metrics: int = DEFAULT_MAX_METRICS,
    ) -> None:
        self.trainingjob = trainingjob
        self.allowed = frozenset(allowed) if allowed else None
        self.max_metrics = max_metrics
        self.lock = threading.Lock()
        self._series: dict[str, Series] = {}
        # Every kind is exported from the start, at 0, so rate() works on the first increment.
        self._bad: dict[BadInput, int] = dict.fromkeys(BadInput, 0)
        self._logged: set[str] = set()
        self.generation = 0
        self._record = 0  # records taken so far: the order of reports across metrics
        # Every metric's reports in order, while their total stays within the bound: a new spec
        # is folded over them again. A metric missing here (bound reached) cannot be refolded.
        self.kept = ReportArchive()
        self.spec_text: str | None = None
        self.history: MetricHistory | None = None
        self._spec_key = 0
        self._ruled: frozenset[str] = frozenset()  # the names the spec's metric rule reads
        self.pushes = PushLedger()  # which pushes were taken, so that a resend is not taken twice
        # While a new spec's fold runs outside the lock: its metric and learning rate, and the
        # reports that came since its copy was made, each with the rate in force (NaN: none),
        # up to a LATE_SHARE-th of the kept bound (None past it: the fold is given up).
        self._folding: str | None = None
        self._folding_lr: str | None = None
        self._fold: object | None = None  # the fold under way: a newer spec's _prepare replaces it
        self._late: tuple[array[int], array[float], array[float]] | None = _no_late()

    # --- bad input --------------------------------------------------------------------------

    def log_once(self, kind: str, detail: str) -> None:
        """Log the first occurrence of each kind; later ones are only counted."""
        if kind not in self._logged:
            self._logged.add(kind)
            log.warning("%s: %s (further occurrences are counted, not logged)", kind, detail)

    def count_bad(self, kind: BadInput, detail: str) -> None:
        """Count one bad input. Callers hold the lock, or use `report_bad` instead."""
        self._bad[kind] += 1
        self.generation += 1
        self.log_once(kind, detail)

    def report_bad(self, kind: BadInput, detail: str) -> None:
        with self.lock:
            self.count_bad(kind, detail)

    # --- ingest (callers hold the lock) -----------------------------------------------------

    def add_record(self, step: int, record: Mapping[str, object]) -> None:
        """Ingest the metrics of a JSON record whose step was checked by `step_of`."""
        self.generation += 1
        self._record += 1
        for name, raw in record.items():
            if name in NON_METRIC_KEYS:
                continue
            kind = type(raw)
            if kind is float or kind is int:  # bool is excluded: its type is bool, not int
                try:
                    value = float(raw)  # type: ignore[arg-type]
                except OverflowError:  # JSON integers are unbounded; floats end near 1.8e308
                    self.count_bad(BadInput.NON_NUMERIC, f"metric {name!r} has an integer too large for a float")
                    continue
                self._observe(step, name, value)
            elif kind is str and raw in _NON_FINITE_STRINGS:
                self._observe(step, name, _NON_FINITE_STRINGS[raw])  # type: ignore[index]
            else:
                self.count_bad(BadInput.NON_NUMERIC, f"metric {name!r} has non-numeric value {raw!r:.80}")
        self._fold_record(step)

    def add_strings(self, step: int, values: Mapping[str, str | None]) -> None:
        """Ingest metrics parsed from text (the stdout pattern's named groups)."""
        self.generation += 1
        self._record += 1
        for name, text in values.items():
            if text is None or name in NON_METRIC_KEYS:  # a group that did not take part
                continue
            try:
                value = float(text)
            except ValueError:
                self.count_bad(BadInput.NON_NUMERIC, f"metric {name!r} has non-numeric value {text!r:.80}")
                continue
            self._observe(step, name, value)
        self._fold_record(step)

    def _observe(self, step: int, name: str, value: float) -> None:
        """One report of one metric, within the record being ingested (`_record`)."""
        series = self._series.get(name)
        if series is None:
            series = self._new_series(name)
            if series is None:
                return
        series.reports += 1
        series.value = value
        series.step = step
        series.record = self._record
        if not self.kept.keep(name, step, value, self._record):
            self.log_once("history_bound", f"more than {self.kept.bound} reports: {name!r} can no longer be refolded under a new spec")
        if value - value != 0.0:  # NaN or ±inf: counted, but never a min or max
            series.nonfinite += 1
            self.log_once("non_finite", f"metric {name!r} reported {value} at step {step}")
            return
        # Strict comparisons keep the first report of a tie: a repeat is not an improvement.
        if value < series.min:
            series.min, series.min_step, series.min_report = value, step, series.reports
        if value > series.max:
            series.max, series.max_step, series.max_report = value, step, series.reports

    def _fold_record(self, step: int) -> None:
        """Fold the monitored metric, if the record just taken reported it, once the whole
        record is in: the learning rate in force is its last report up to and including this
        record, whatever the order of the record's keys (as replay reads a row)."""
        history = self.history
        if history is not None and (value := self._reported_now(history.rule.name)) is not None:
            lr = self._reported_lr(history.lr_name)
            history.add(step, value, None if math.isnan(lr) else lr)
        late, folding = self._late, self._folding
        if folding is not None and late is not None and (value := self._reported_now(folding)) is not None:
            late_steps, late_values, late_lrs = late
            if len(late_steps) >= self.kept.bound // LATE_SHARE:
                self._late = None  # more reports than a fold may hold on to: this one is given up
                log.warning("history_lost: %d reports of %r came during a refold: no track under the new spec",
                            len(late_steps), folding)
                return
            late_steps.append(step)
            late_values.append(value)
            late_lrs.append(self._reported_lr(self._folding_lr))

    def _reported_now(self, name: str) -> float | None:
        """The value of `name` in the record just taken; None if it had none."""
        series = self._series.get(name)
        return series.value if series is not None and series.record == self._record else None

    def _reported_lr(self, lr_name: str | None) -> float:
        """The learning rate in force (schedule.learningRate): its last report; NaN if none,
        which the engine reads as not known, as it does a None."""
        series = self._series.get(lr_name) if lr_name else None
        return series.value if series is not None else math.nan

    # --- the monitored metric ------------------------------------------------------------------

    def set_spec(self, text: str) -> None:
        """Fold the monitored metric under a new metric stop spec (canonical JSON, as
        `plateau.engine.history.spec_text` writes it), over every report it has had so far.
        Callers do not hold the lock: the fold (some 12 s for 40,000 reports) runs outside it,
        so scrapes and pushes go on meanwhile, the track still the old spec's; the reports that
        arrive meanwhile are folded under the lock, then the new track takes its place."""
        with self.lock:
            prepared = self._prepare(text)
        if prepared is None:
            return
        spec, name, kept, fold = prepared
        try:
            history = MetricHistory.folded(spec, kept)
        except BaseException:
            with self.lock:
                if self._fold is fold:  # else a newer spec's fold is under way: its late reports stay
                    self._stop_folding()
            raise
        with self.lock:  # the reports that came meanwhile, then the swap: no report falls between
            if self._fold is not fold:
                return  # superseded meanwhile (even by the same text again): the newer fold takes over
            late = self._stop_folding()
            self.generation += 1
            if late is None:
                self.history = None
                return
            for step, value, lr in zip(*late):
                history.add(step, value, None if math.isnan(lr) else lr)
            self.history = history
            self._spec_key = spec_key(text)
        log.info("folded %s under spec %x (%d reports)", name, self._spec_key, history.track.evaluations if history.track else 0)

    def _prepare(self, text: str) -> tuple[StopSpec, str, Iterator[tuple[int, float, float | None]], object] | None:
        """The spec, its metric, that metric's kept reports with the learning rate in force at
        each, to fold outside the lock, and the fold's token; None when there is nothing to
        fold (the same spec, or one refused). Any fold under way is superseded."""
        if text == self.spec_text:
            return None
        self.spec_text = text
        self.generation += 1
        self._stop_folding()
        try:
            spec = StopSpec.model_validate_json(text)
        except ValueError as exc:
            self.history = None
            self.count_bad(BadInput.BAD_SPEC, f"the metric stop spec does not validate: {exc}")
            return None
        if spec.metric is None or spec.preset is not None:
            self.history = None
            self.count_bad(BadInput.BAD_SPEC, "the metric stop spec has no resolved metric rule")
            return None
        name = spec.metric.name
        lr_name = spec.metric.schedule.learning_rate if spec.metric.schedule else None
        self._ruled = frozenset(n for n in (name, lr_name) if n is not None)
        lost = next((n for n in (name, lr_name) if n is not None and not self.kept.whole(n, n in self._series)), None)
        if lost is not None:
            self.history = None
            log.warning("history_lost: the reports of %r were not all kept: no track under the new spec", lost)
            return None
        kept = self.kept.in_force(name, lr_name)
        fold = object()
        self._folding, self._folding_lr, self._late, self._fold = name, lr_name, _no_late(), fold  # last: the fold's try clears it
        return spec, name, kept, fold

    def _stop_folding(self) -> tuple[array[int], array[float], array[float]] | None:
        """The reports of the metric being folded that came since its copy (None: too many);
        none kept from now."""
        late, self._folding, self._folding_lr, self._late, self._fold = self._late, None, None, _no_late(), None
        return late


    def _new_series(self, name: str) -> Series | None:
        """A series for a metric not seen before; None if refused. The names the spec's rule
        reads (its metric, its learning rate) pass the allow-list and the count."""
        ruled = name in self._ruled
        if self.allowed is not None and name not in self.allowed and not ruled:
            self.count_bad(BadInput.UNKNOWN_METRIC, f"metric {name!r} is not in {sorted(self.allowed)}")
            self.kept.refused(name)
            return None
        if not name or len(name) > MAX_METRIC_NAME_LENGTH or not _encodable(name):
            self.count_bad(BadInput.BAD_METRIC_NAME, f"metric name {name[:40]!r}... is empty, too long or not UTF-8")
            return None
        if len(self._series) >= self.max_metrics and not ruled:
            self.count_bad(BadInput.TOO_MANY_METRICS, f"metric {name!r} exceeds the limit of {self.max_metrics}")
            self.kept.refused(name)
            return None
        series = self._series[name] = Series()
        return series

    # --- read side ----------------------------------------------------------------------------

    def snapshot(self) -> Snapshot:
        with self.lock:
            series = {name: _view(s) for name, s in self._series.items()}
            history, track = self.history, None
            if history is not None and history.track is not None:
                track = TrackView(history.rule.name, self._spec_key, history.track, history.stopped,
                                  history.resumes, history.kept)
            return Snapshot(series=series, bad_input=dict(self._bad), generation=self.generation, track=track)


def _encodable(name: str) -> bool:
    """False for a lone surrogate (JSON's "\\ud800"): it would make every scrape fail to encode."""
    try:
        name.encode()
    except UnicodeEncodeError:
        return False
    return True


def _view(s: Series) -> SeriesView:
    has_min, has_max = s.min_report > 0, s.max_report > 0
    return SeriesView(
        value=s.value,
        step=s.step,
        reports=s.reports,
        nonfinite=s.nonfinite,
        min=s.min if has_min else None,
        min_step=s.min_step if has_min else None,
        min_report=s.min_report if has_min else None,
        max=s.max if has_max else None,
        max_step=s.max_step if has_max else None,
        max_report=s.max_report if has_max else None,
    )
