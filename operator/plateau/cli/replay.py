"""`plateau replay`: try a stop spec on past runs recorded in a CSV, one row per evaluation.

Each row goes through the same `plateau.engine.history.MetricHistory` the sidecar folds every report
with, and `rules.decide`, so a replayed stop is the stop the operator makes: at the same
evaluation, with the same evidence, read at the next scrape. A step that goes back is a resume.
"""

from __future__ import annotations

import bisect
import csv
import gzip
import io
import math
import os
import stat
import zlib
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional, Sequence

from pydantic import ValidationError

from plateau.api import StopSpec, TrainingJob
from plateau.api.errors import InputError, format_validation_error
from plateau.api.yamlfile import load_yaml_documents
from plateau.engine.presets import resolve_metric_rule
from plateau.engine.history import MetricHistory, metric_stop_spec
from plateau.engine.fold import MetricTrack
from plateau.engine.rules import CohortView, Decision, GpuWindow, Observation, decide
from plateau_sidecar.protocol import MAX_STEP

MAX_GPUS = 100_000  # a `gpus` cell above this is a typo, not a cluster
# A `time` beyond this many seconds either way (285 million years) is no clock reading; within
# it every span between two rows, and any sum of them replay makes, stays finite.
MAX_TIME = 2.0**53


# --- the stop spec ----------------------------------------------------------------------------


def load_stop_spec(path: Path) -> StopSpec:
    """A StopSpec from a TrainingJob manifest, a document with a `stop:` block, or a bare block."""
    docs = [d for d in load_yaml_documents(path) if d is not None]
    if len(docs) > 1:
        raise InputError(f"{path}: expected one YAML document, found {len(docs)}")
    doc = docs[0] if docs else None
    if not isinstance(doc, dict):
        raise InputError(f"{path}: expected a mapping (a TrainingJob or a stop block)")
    try:
        if doc.get("kind") == "TrainingJob":
            return TrainingJob.model_validate(doc).spec.stop
        if "stop" in doc:
            return StopSpec.model_validate(doc["stop"])
        return StopSpec.model_validate(doc)
    except ValidationError as exc:
        prefix = "" if doc.get("kind") == "TrainingJob" else ("stop" if "stop" in doc else "stop")
        raise InputError(f"{path}: {format_validation_error(exc, prefix)}") from exc


# --- the curves -------------------------------------------------------------------------------


@dataclass(slots=True)
class Row:
    step: int
    values: dict[str, float]  # an empty cell is missing data: its metric is absent here
    time: Optional[float]
    gpu_util: Optional[float]
    gpus: Optional[float] = None  # GPUs the run held at this row (column `gpus`)


@dataclass
class RunHistory:
    run: str
    cohort: Optional[str]
    rows: list[Row] = field(default_factory=list)


@contextmanager
def _open_text(path: Path) -> Iterator[io.TextIOWrapper]:
    """Only a regular file, as for a spec (`plateau.api.yamlfile.read_text`): a FIFO would
    block, a device such as /dev/zero never ends."""
    # O_NONBLOCK: a FIFO opens at once instead of waiting for a writer, and is refused below
    # (a directory already is, by open).
    with open(path, "rb", opener=lambda name, flags: os.open(name, flags | os.O_NONBLOCK)) as raw:
        if not stat.S_ISREG(os.fstat(raw.fileno()).st_mode):
            raise InputError(f"{path}: cannot read: not a regular file")
        binary = gzip.GzipFile(fileobj=raw) if path.suffix == ".gz" else raw
        # utf-8-sig: a byte-order mark (as spreadsheets write) is not part of the first column's name.
        with io.TextIOWrapper(binary, encoding="utf-8-sig", newline="") as text:
            yield text


def _number(text: str, where: str, column: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise InputError(f"{where}: column {column!r}: {text!r} is not a number") from None


def _finite(text: str, where: str, column: str) -> float:
    """A time or a utilisation: a measurement, so NaN or infinity is bad input, never a reading."""
    value = _number(text, where, column)
    if not math.isfinite(value):
        raise InputError(f"{where}: column {column!r}: {text!r} is not a finite number")
    return value


def _header_index(path: Path, header: list[str]) -> dict[str, int]:
    index: dict[str, int] = {}
    for i, name in enumerate(header):
        name = name.strip()
        if name in index:
            raise InputError(f"{path}:1: column {name!r} appears twice (fields {index[name] + 1} and {i + 1})")
        index[name] = i
    return index


def read_runs(
    path: Path,
    metrics: Sequence[str],
    run_column: str = "run",
    step_column: str = "step",
    cohort_column: Optional[str] = None,
) -> list[RunHistory]:
    """Runs in order of first appearance; rows of a run may be interleaved with others'."""
    runs: dict[str, RunHistory] = {}
    lineno = 1
    try:
        with _open_text(path) as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            if header is None:
                raise InputError(f"{path}: empty file")
            index = _header_index(path, header)
            required = [run_column, step_column, *metrics] + ([cohort_column] if cohort_column else [])
            missing = [c for c in required if c not in index]
            if missing:
                raise InputError(f"{path}:1: missing column(s) {', '.join(map(repr, missing))}; header has {', '.join(index)}")
            width = len(header)
            step_at, run_at = index[step_column], index[run_column]
            cohort_at = index[cohort_column] if cohort_column else None
            metric_at = [(m, index[m]) for m in metrics]
            time_at, util_at, gpus_at = index.get("time"), index.get("gpu_util"), index.get("gpus")
            lineno = reader.line_num + 1  # the line a record starts on (a quoted field may span lines)
            for record in reader:
                start, lineno = lineno, reader.line_num + 1
                if not record:
                    continue
                where = f"{path}:{start}"
                if len(record) != width:
                    raise InputError(f"{where}: expected {width} fields, found {len(record)}")
                step_text = record[step_at]
                try:
                    step = int(step_text)
                except ValueError:
                    step_f = _number(step_text, where, step_column)
                    if not step_f.is_integer():
                        raise InputError(f"{where}: column {step_column!r}: {step_text!r} is not a non-negative whole number") from None
                    step = int(step_f)
                if step < 0:
                    raise InputError(f"{where}: column {step_column!r}: {step_text!r} is not a non-negative whole number")
                if step >= MAX_STEP:  # the sidecar refuses it, so the cluster never decides on it
                    raise InputError(f"{where}: column {step_column!r}: {step_text!r} is above {MAX_STEP - 1},"
                                     " the largest step the sidecar accepts")
                # An empty cell is a value not recorded: missing data, skipped and counted, never a NaN report.
                values = {m: _number(record[i], where, m) for m, i in metric_at if record[i] != ""}
                time = None if time_at is None or record[time_at] == "" else _finite(record[time_at], where, "time")
                if time is not None and not -MAX_TIME <= time <= MAX_TIME:
                    raise InputError(f"{where}: column 'time': {time:g} is outside -{MAX_TIME:g}..{MAX_TIME:g} seconds")
                util = None if util_at is None or record[util_at] == "" else _finite(record[util_at], where, "gpu_util")
                if util is not None and not 0 <= util <= 1:
                    raise InputError(f"{where}: column 'gpu_util': {util} is outside 0..1")
                gpus = None if gpus_at is None or record[gpus_at] == "" else _finite(record[gpus_at], where, "gpus")
                if gpus is not None and not 0 <= gpus <= MAX_GPUS:
                    raise InputError(f"{where}: column 'gpus': {gpus:g} is outside 0..{MAX_GPUS}")
                name = record[run_at]
                history = runs.get(name)
                if history is None:
                    history = runs[name] = RunHistory(name, None if cohort_at is None else record[cohort_at])
                history.rows.append(Row(step, values, time, util, gpus))
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    except (EOFError, zlib.error) as exc:
        raise InputError(f"{path}: not a readable gzip file: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 text: byte 0x{exc.object[exc.start:exc.start + 1].hex()} at or after line {lineno}") from exc
    except csv.Error as exc:
        raise InputError(f"{path}:{lineno}: not a CSV record: {exc}") from exc
    return list(runs.values())


# --- replaying one run ------------------------------------------------------------------------


@dataclass
class RunResult:
    run: str
    stopped: bool
    stop_step: Optional[int]
    reason: Optional[str]
    best_step: Optional[int]
    best_value: Optional[float]
    evaluations: int
    planned: int
    message: str
    resumes: int = 0
    missing: int = 0  # rows with no value of the metric (an empty cell): skipped
    hours_saved: Optional[float] = None  # recorded time after the stop; None without `time`
    gpu_hours_saved: Optional[float] = None  # the same x GPUs held; None without `gpus`/`gpu_util`

    def as_json(self) -> dict[str, Any]:
        best = self.best_value if self.best_value is None or math.isfinite(self.best_value) else None
        return {
            "run": self.run,
            "stopped": self.stopped,
            "stop_step": self.stop_step,
            "reason": self.reason,
            "best_step": self.best_step,
            "best_value": best,
            "evaluations": self.evaluations,
            "planned": self.planned,
            "resumes": self.resumes,
            "missing": self.missing,
            "hours_saved": self.hours_saved,
            "gpu_hours_saved": self.gpu_hours_saved,
        }


class RunReplay:
    """One run fed to the engine row by row, the way the operator would see it."""

    def __init__(self, history: RunHistory, stop: StopSpec) -> None:
        self.history = history
        self.stop = stop
        self.rule = resolve_metric_rule(stop)
        metric_spec = metric_stop_spec(stop)
        self.folded = MetricHistory(metric_spec) if metric_spec is not None else None
        self.metric: Optional[MetricTrack] = None
        self.position = 0
        self.missing = 0  # rows without a value of the metric
        self._lr_name = self.rule.schedule.learning_rate if self.rule is not None and self.rule.schedule is not None else None
        self._lr: Optional[float] = None
        self.decision: Optional[Decision] = None
        self._start_time: Optional[float] = None
        self._idle_window = stop.gpu_idle.for_.seconds if stop.gpu_idle else 0.0
        self._gpu_samples: deque[tuple[float, float]] = deque()
        self._best_steps: list[int] = []  # best-so-far trajectory, for cohort peers
        self._best_values: list[float] = []

    @property
    def done(self) -> bool:
        return (self.decision is not None and self.decision.would_stop) or self.position >= len(self.history.rows)

    def advance(self) -> Row:
        """Consume the next evaluation (row) and fold it into the metric state."""
        row = self.history.rows[self.position]
        self.position += 1
        # The learning rate in force: its last value up to and including this row, as the
        # sidecar reads it (a rate on a row without the metric is in force at the next).
        self._lr = row.values.get(self._lr_name, self._lr) if self._lr_name else None
        value = row.values.get(self.rule.name) if self.rule is not None else None
        if self.rule is not None and value is None:
            self.missing += 1  # not recorded: nothing to fold, and never a NaN report
        elif self.folded is not None and value is not None:
            self.folded.add(row.step, value, None if self._lr is None or math.isnan(self._lr) else self._lr)
            self.metric = self.folded.track
            if self._best_steps and row.step <= self._best_steps[-1]:  # a resume: its purged evaluations go
                keep = bisect.bisect_left(self._best_steps, row.step)
                del self._best_steps[keep:], self._best_values[keep:]
            if self.metric is not None and self.metric.best is not None:
                self._best_steps.append(row.step)
                self._best_values.append(self.metric.best)
        if row.time is not None:
            if self._start_time is None:
                self._start_time = row.time
            if row.gpu_util is not None and math.isfinite(row.gpu_util):
                self._gpu_samples.append((row.time, row.gpu_util))
                while self._gpu_samples and self._gpu_samples[0][0] < row.time - self._idle_window:
                    self._gpu_samples.popleft()
        return row

    def observation(self, row: Row, cohort: Optional[CohortView] = None) -> Observation:
        elapsed = None if row.time is None or self._start_time is None else row.time - self._start_time
        gpu = None
        if self._gpu_samples and row.time is not None:
            covered = row.time - self._gpu_samples[0][0]
            gpu = GpuWindow(max(u for _, u in self._gpu_samples), covered)
        # One GPU per run unless the CSV says otherwise: GPU-hours are allocated time.
        gpu_hours = None if elapsed is None else elapsed / 3600.0
        return Observation(self.metric, elapsed, gpu_hours, gpu, cohort)

    def decide(self, row: Row, cohort: Optional[CohortView] = None) -> Decision:
        self.decision = decide(self.stop, self.observation(row, cohort))
        return self.decision

    def best_at(self, step: int) -> Optional[float]:
        """Best value so far at `step`, if this run has reached it."""
        if not self._best_steps or self.history.rows[self.position - 1].step < step:
            return None
        i = bisect.bisect_right(self._best_steps, step) - 1
        return self._best_values[i] if i >= 0 else None

    def result(self) -> RunResult:
        d = self.decision
        stopped = bool(d and d.would_stop)
        last_step = self.history.rows[self.position - 1].step if self.position else None
        m = self.metric
        return RunResult(
            run=self.history.run,
            stopped=stopped,
            stop_step=last_step,
            reason=d.reason.value if stopped and d and d.reason else None,
            best_step=m.best_step if m else None,
            best_value=m.best if m else None,
            evaluations=self.position,
            resumes=self.folded.resumes if self.folded else 0,
            missing=self.missing,
            planned=len(self.history.rows),
            message=d.message if d else "no evaluations",
            **dict(zip(("hours_saved", "gpu_hours_saved"), time_saved(self.history.rows, self.position))),
        )


def time_saved(rows: Sequence[Row], consumed: int) -> tuple[Optional[float], Optional[float]]:
    """Hours and GPU-hours the recorded rows after the first `consumed` took: what stopping
    there would have saved. Each interval between two rows is charged to the later row and its
    GPUs: the `gpus` column, else one GPU when the row has `gpu_util` (one GPU per run, as the
    budget rules assume). None where a row lacks the time, or the GPUs are not known."""
    if not rows or any(r.time is None for r in rows):
        return None, None
    gpus = [r.gpus if r.gpus is not None else (1.0 if r.gpu_util is not None else None) for r in rows]
    hours = gpu_hours = 0.0
    for i in range(max(consumed, 1), len(rows)):
        # A clock that steps back (a resumed run's restarted timer) charges nothing.
        span = max(0.0, rows[i].time - rows[i - 1].time) / 3600.0  # type: ignore[operator]
        hours += span
        gpu_hours += span * (gpus[i] or 0.0)
    return hours, None if None in gpus else gpu_hours


def replay_run(history: RunHistory, stop: StopSpec) -> RunResult:
    replay = RunReplay(history, stop)
    while not replay.done:
        replay.decide(replay.advance())
    return replay.result()


def replay_cohort(histories: Sequence[RunHistory], stop: StopSpec, parallel: int) -> list[RunResult]:
    """Runs start in waves of `parallel`, in file order, and advance in lockstep; each run is
    compared at every step with the peers that have reached that step (finished or running)."""
    finished: list[RunReplay] = []
    for start in range(0, len(histories), parallel):
        wave = [RunReplay(h, stop) for h in histories[start : start + parallel]]
        while any(not r.done for r in wave):
            moved = [(r, r.advance()) for r in wave if not r.done]
            for replay, row in moved:
                peers = [v for p in finished + wave if p is not replay and (v := p.best_at(row.step)) is not None]
                replay.decide(row, CohortView(row.step, tuple(peers)))
        finished.extend(wave)
    return [r.result() for r in finished]


def replay(
    histories: Sequence[RunHistory],
    stop: StopSpec,
    parallel: int = 1,
) -> Iterator[RunResult]:
    if stop.cohort is None:
        for history in histories:
            yield replay_run(history, stop)
        return
    groups: dict[Optional[str], list[RunHistory]] = {}
    for history in histories:
        groups.setdefault(history.cohort, []).append(history)
    for members in groups.values():
        yield from replay_cohort(members, stop, parallel)


def metric_columns(stop: StopSpec) -> list[str]:
    rule = stop.metric
    if rule is None:
        return []
    lr = rule.schedule.learning_rate if rule.schedule is not None else None
    return [rule.name] + ([lr] if lr and lr != rule.name else [])


def summarise(results: Iterable[RunResult]) -> dict[str, Optional[float]]:
    """Totals; hours_saved and gpu_hours_saved only when every run has them (else None)."""
    items = list(results)
    consumed = sum(r.evaluations for r in items)
    planned = sum(r.planned for r in items)
    hours = [r.hours_saved for r in items]
    gpu_hours = [r.gpu_hours_saved for r in items]
    return {
        "runs": len(items),
        "stopped": sum(r.stopped for r in items),
        "evaluations_saved": 0.0 if not planned else 1 - consumed / planned,
        "missing": sum(r.missing for r in items),
        "hours_saved": sum(h for h in hours if h is not None) if items and None not in hours else None,
        "gpu_hours_saved": sum(g for g in gpu_hours if g is not None) if items and None not in gpu_hours else None,
    }
