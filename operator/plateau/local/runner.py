"""`plateau run MANIFEST`: the evaluation loop of one local run, and its final status.

Every interval: read the metric, sample the GPUs, and ask `plateau.engine.rules.decide`, exactly as
the operator does. A stop is the operator's handshake on local processes: the reason goes into
the stop file (what `client.should_stop()` reads), the trainer gets gracePeriod to exit, then
SIGTERM, then SIGKILL. Ctrl-C does the same with a shorter grace period.
"""

from __future__ import annotations

import itertools
import json
import signal
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from types import FrameType
from typing import Iterator, Optional

import yaml
from rich.console import Console

from plateau.api import Condition, MetricRule, MetricSummary, MetricsSource, Reason, TrainingJobStatus, WouldStop
from plateau.local.metrics import MetricReader, bounded_lines, jsonl_points
from plateau.local.nvml import GpuSampler, UtilisationWindow
from plateau.local.plan import CURVE_FILE, SIDECAR_LOG, STATUS_FILE, LocalPlan, RunOptions, plan_run
from plateau.local.processes import Handshake, Sidecar, Trainer, describe_exit, exit_status
from plateau.local.progress import Display, Snapshot
from plateau.local.scrape import MetricSource, PrometheusReader, SidecarScraper
from plateau.api.errors import InputError
from plateau.api.manifest import load_training_job
from plateau.engine.presets import resolve_metric_rule
from plateau.engine.rules import Decision, Observation, decide
from plateau.engine.status import (
    GPU_METRICS_AVAILABLE,
    METRICS_AVAILABLE,
    READY,
    SPEC_VALID,
    STOP_REQUESTED,
    final_phase,
    rfc3339,
    set_condition,
    summary_from_track,
    would_stop,
)
from plateau_sidecar.store import NON_METRIC_KEYS

# Ctrl-C asks the trainer to stop too, but waits at most this long before SIGTERM.
INTERRUPT_GRACE_SECONDS = 5.0
TICK_SECONDS = 0.05  # how often the loop looks at the trainer and at signals
# On SIGTERM the sidecar waits up to --linger for a scrape of its last reports: plateau run
# scrapes it itself every 0.1 s; through Prometheus it takes up to two scrape intervals.
SIDECAR_LINGER_SECONDS = 5.0
INTERRUPTS = (signal.SIGINT, signal.SIGTERM)
# After the trainer exits, reads this far apart must agree before the sidecar is stopped: more
# than its file poll interval, so it has read every line the trainer wrote.
SETTLE_SECONDS = 0.5
SETTLE_TIMEOUT_SECONDS = 5.0
# A failed trainer's last output line in the status message is cut to this, as much as the
# operator puts in an Event: the message is in the status twice (and in the Ready condition).
LAST_LINE_CHARS = 1024


def _now() -> str:
    return rfc3339(datetime.now(timezone.utc))


@contextmanager
def _caught(signals: tuple[signal.Signals, ...]) -> Iterator[list[int]]:
    """Signals become entries in a list the loop reads, never an exception in the middle of a
    step; the previous handlers come back afterwards."""
    received: list[int] = []

    def note(signum: int, _frame: Optional[FrameType]) -> None:
        received.append(signum)

    previous = {s: signal.signal(s, note) for s in signals}
    try:
        yield received
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


@dataclass
class Outcome:
    reason: Reason
    message: str
    exit_code: int


@dataclass
class LocalRun:
    plan: LocalPlan
    options: RunOptions
    console: Console
    reader: Optional[MetricReader] = None
    rule: Optional[MetricRule] = None  # the stop spec's metric rule, preset resolved
    sampler: Optional[GpuSampler] = None
    window: UtilisationWindow = field(default_factory=lambda: UtilisationWindow(0.0))
    started: float = 0.0
    decision: Optional[Decision] = None  # the decision that stopped the run
    would_stop: Optional[WouldStop] = None
    stop_step: Optional[int] = None
    handshake: Optional[Handshake] = None
    stop_requested_time: Optional[str] = None
    interrupted_by: Optional[int] = None
    ended: float = 0.0  # when the trainer exited
    note: str = "starting"

    def __post_init__(self) -> None:
        stop = self.plan.job.spec.stop
        if stop.gpu_idle is not None:
            self.window = UtilisationWindow(stop.gpu_idle.for_.seconds)
        self.rule = resolve_metric_rule(stop)
        # Without a metric rule, the first exported metric is still read and plotted; it takes
        # no part in decisions.
        names = self.plan.job.spec.metrics.names
        curve = self.rule or (MetricRule(name=names[0]) if names else None)
        if curve is not None:
            self.reader = MetricReader(curve, self._source(), self.plan.spec.key)

    def _source(self) -> MetricSource:
        if self.options.prometheus:
            return PrometheusReader(self.options.prometheus, self.plan.name, self.plan.job.metadata.namespace or "default")
        return SidecarScraper(self.plan.metrics_url, self.plan.name)

    # --- one evaluation ------------------------------------------------------------------------

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    @property
    def gpus(self) -> int:
        return self.sampler.gpus if self.sampler else 0

    def gpu_hours(self, elapsed: float) -> float:
        return self.gpus * elapsed / 3600.0

    def observation(self) -> Observation:
        elapsed = self.elapsed
        track = self.reader.decision_track if self.reader and self.rule else None
        return Observation(metric=track, elapsed_seconds=elapsed, gpu_hours=self.gpu_hours(elapsed), gpu=self.window.window(elapsed))

    def evaluate(self) -> Optional[Decision]:
        """Read and sample; once no stop is under way, decide."""
        if self.reader is not None:
            self.reader.read()
        self.window.add(self.elapsed, self.sampler.sample() if self.sampler else None)
        if self.handshake is not None:
            return None
        decision = decide(self.plan.job.spec.stop, self.observation())
        if decision.would_stop and self.would_stop is None and not decision.stop:
            self.would_stop = would_stop(decision, _now())
            self.stop_step = self.would_stop.step if self.would_stop else None
        return decision

    def snapshot(self, phase: str) -> Snapshot:
        stop = self.plan.job.spec.stop
        elapsed = self.elapsed
        return Snapshot(
            name=self.plan.name,
            phase=phase,
            elapsed=elapsed,
            max_duration=stop.max_duration.seconds if stop.max_duration else None,
            gpu_hours=self.gpu_hours(elapsed),
            max_gpu_hours=stop.max_gpu_hours,
            gpus=self.gpus,
            gpu_utilisation=self.window.latest,
            metric_name=self.reader.rule.name if self.reader else None,
            metric=self.reader.track if self.reader else None,
            patience=self.rule.patience if self.rule else None,
            note=self.note,
        )

    # --- the loop ------------------------------------------------------------------------------

    @property
    def last_step(self) -> Optional[int]:
        """The last step read so far: where curve.png marks a stop."""
        return self.reader.track.last_step if self.reader and self.reader.track else None

    def request_stop(self, trainer: Trainer, reason: Reason, grace: float, display: Display, message: str) -> None:
        self.handshake = Handshake.begin(trainer, self.plan.stop_file, reason.value, grace, self.plan.kill_after, time.monotonic())
        self.stop_requested_time = _now()
        self.note = f"{reason.value}; waiting up to {grace:g}s for the trainer to exit"
        display.event(self.elapsed, f"stop requested ({reason.value}): {message}")

    def loop(self, trainer: Trainer, display: Display, received: list[int]) -> int:
        """Until the trainer has exited; returns its exit code."""
        stop = self.plan.job.spec.stop
        grace = stop.grace_period.seconds
        next_evaluation = 0.0
        handled = 0
        while trainer.poll() is None:
            now = time.monotonic()
            if len(received) > handled:
                handled, signum = len(received), received[-1]
                name = signal.Signals(signum).name
                if self.handshake is None:
                    self.interrupted_by = signum
                    if self.stop_step is None:  # curve.png marks "Manual stop" here (a would-stop step stays)
                        self.stop_step = self.last_step
                    self.request_stop(trainer, Reason.MANUAL, min(grace, INTERRUPT_GRACE_SECONDS), display, f"interrupted by {name}")
                else:
                    self.interrupted_by = self.interrupted_by or signum
                    display.event(self.elapsed, f"{name} again: " + self.handshake.hurry(now))
            if now >= next_evaluation:
                next_evaluation = now + self.options.interval
                decision = self.evaluate()
                if decision is not None:
                    self.act(decision, trainer, grace, display)
            if self.handshake is not None and (done := self.handshake.advance(now)):
                display.event(self.elapsed, done)
            display.update(self.snapshot("Stopping" if self.handshake else "Running"))
            time.sleep(TICK_SECONDS)
        self.ended = time.monotonic()
        return trainer.reap()

    def act(self, decision: Decision, trainer: Trainer, grace: float, display: Display) -> None:
        if decision.stop:
            assert decision.reason is not None
            self.decision = decision
            # The evaluation the rule fired at (reports may have come since, within one read).
            self.stop_step = decision.step if decision.step is not None else self.last_step
            self.request_stop(trainer, decision.reason, grace, display, decision.message)
        elif self.would_stop is not None:
            self.note = f"dry run: would have stopped ({self.would_stop.reason}) at step {self.would_stop.step}"
        else:
            self.note = "going on"

    def outcome(self, returncode: int, tail: list[str]) -> Outcome:
        if self.interrupted_by is not None and self.decision is None:
            name = signal.Signals(self.interrupted_by).name
            return Outcome(Reason.MANUAL, f"stopped by {name} to plateau run", exit_status(-self.interrupted_by))
        if self.decision is not None:
            assert self.decision.reason is not None
            code = exit_status(-self.interrupted_by) if self.interrupted_by else 0
            return Outcome(self.decision.reason, self.decision.message, code)
        message = f"the trainer {describe_exit(returncode)}"
        if returncode == 0:
            return Outcome(Reason.COMPLETED, message, 0)
        if last := next((line.strip() for line in reversed(tail) if line.strip()), ""):
            message += f": {last[:LAST_LINE_CHARS]}" + ("…" if len(last) > LAST_LINE_CHARS else "")
        if self.plan.unmapped_note:
            message += f"; {self.plan.unmapped_note}"
        return Outcome(Reason.WORKLOAD_FAILED, message, exit_status(returncode))

    # --- the end -------------------------------------------------------------------------------

    def conditions(self, outcome: Outcome, returncode: int, now: str) -> list[Condition]:
        """The operator's conditions; StopRequested also says how the trainer took the request."""
        conditions = set_condition([], SPEC_VALID, "True", "Valid", "", now)
        if self.reader is not None:
            conditions = set_condition(conditions, METRICS_AVAILABLE, *self.reader.availability, now)
        if self.plan.job.spec.stop.gpu_idle is not None:
            if self.gpus and self.window.latest is not None:
                gpu = ("True", "NvmlSamples", f"utilisation of {self.gpus} GPUs from NVML")
            elif self.gpus:
                gpu = ("False", "NoNvmlData", "NVML has no utilisation for the trainer's GPUs: GPU idle is unknown")
            else:
                gpu = ("False", "NoGpu", "no GPU visible to the trainer (no NVML, or CUDA_VISIBLE_DEVICES empty): GPU idle is unknown")
            conditions = set_condition(conditions, GPU_METRICS_AVAILABLE, *gpu, now)
        if self.handshake is not None:
            taken = f"{outcome.message}; {self.handshake.summary(returncode, self.ended)}"
            conditions = set_condition(conditions, STOP_REQUESTED, "True", outcome.reason.value, taken, now)
        return set_condition(conditions, READY, "False", outcome.reason.value, outcome.message, now)

    def status(self, outcome: Outcome, returncode: int, start_time: str, pid: int) -> TrainingJobStatus:
        elapsed = self.ended - self.started
        now = _now()
        track = self.reader.track if self.reader else None
        return TrainingJobStatus(
            phase=final_phase(outcome.reason),
            reason=outcome.reason,
            message=outcome.message,
            start_time=start_time,
            stop_time=now,
            stop_requested_time=self.stop_requested_time,
            conditions=self.conditions(outcome, returncode, now),
            metric=self.metric_summary(),
            evaluations=track.evaluations if track and self.rule else 0,
            running_seconds=round(elapsed, 3),
            gpu_hours=self.gpu_hours(elapsed),
            gpu_hours_saved=self.decision.gpu_hours_saved if self.decision else None,
            replicas=0,
            workload=f"Process/{pid}",
            would_stop=self.would_stop,
        )

    def metric_summary(self) -> Optional[MetricSummary]:
        if self.rule is None or self.reader is None or self.reader.track is None:
            return None
        summary = summary_from_track(self.reader.track, self.reader.reports, self.reader.spec_key, self.reader.resumes)
        return summary.model_copy(update={"best_history": self.reader.best_history})

    def curve(self) -> list[tuple[int, float]]:
        assert self.reader is not None
        if self.plan.job.spec.metrics.source == MetricsSource.FILE.value and self.plan.metrics_file is not None:
            return jsonl_points(self.plan.metrics_file, self.reader.rule.name)
        return self.reader.points

    def stop_mark(self, reason: Optional[str]) -> Optional[tuple[int, str]]:
        """Where curve.png marks the stop, and the label: the would-stop step of a dry run, the
        step a rule stopped at, or for Ctrl-C the last step read then (or since, if none had been)."""
        if self.would_stop is not None:
            step, label = self.stop_step, f"would stop ({self.would_stop.reason})"
        elif self.decision is not None:
            step, label = self.stop_step, f"stop ({reason})"
        elif self.interrupted_by is not None:
            step, label = self.last_step if self.stop_step is None else self.stop_step, "Manual stop"
        else:
            return None
        return None if step is None else (step, label)

    def write_results(self, status: TrainingJobStatus) -> list[Path]:
        # allow_unicode: a forecast's ± and a metric named in any script stay readable
        text = yaml.safe_dump(status.model_dump(mode="json", by_alias=True, exclude_none=True), sort_keys=False,
                              width=200, allow_unicode=True)
        written = [self.plan.run_dir / STATUS_FILE] + ([self.options.status_out] if self.options.status_out else [])
        for path in written:
            try:
                path.write_text(text, encoding="utf-8")
            except OSError as exc:  # --status-out was tried before the run; it may have gone since
                raise InputError(f"{path}: cannot write the status: {exc.strerror}") from None
        # Imported here: matplotlib takes a second or more to import, and only the end needs it.
        from plateau.local.plot import Marker, plot_curve

        png = self.plan.run_dir / CURVE_FILE
        track = self.reader.track if self.reader else None
        points = self.curve() if self.reader else []
        plot_curve(
            png,
            title=f"{self.plan.name}: {status.phase} ({status.reason})",
            metric=self.reader.rule.name if self.reader else None,
            points=points,
            best=(track.best_step, track.best) if track and track.best is not None and track.best_step is not None else None,
            stop=Marker(*mark) if (mark := self.stop_mark(status.reason)) else None,
            target=self.rule.target if self.rule else None,
            track_points=self.reader.track_points if self.reader else (),
            reported=_reported_names(self.plan.metrics_file) if not points and self.plan.metrics_file else (),
        )
        self.console.print(text, markup=False, highlight=False, soft_wrap=True, end="")
        return [*written, png]

    # --- everything ----------------------------------------------------------------------------

    def execute(self) -> int:
        plan = self.plan
        for note in plan.notes:
            self.console.print(f"plateau: note: {note}", markup=False, highlight=False, soft_wrap=True)
        scrape_interval = plan.job.spec.metrics.scrape_interval.seconds
        linger = 2 * scrape_interval if self.options.prometheus else SIDECAR_LINGER_SECONDS
        sidecar = Sidecar(plan.sidecar_env, plan.metrics_url, plan.run_dir / SIDECAR_LOG, linger)
        trainer: Optional[Trainer] = None
        try:
            sidecar.wait_ready()
            self.sampler = GpuSampler.open(plan.trainer_env.get("CUDA_VISIBLE_DEVICES"))
            with _caught(INTERRUPTS) as received:
                with Display(self.console) as display:
                    trainer = Trainer(plan.command, plan.trainer_env, plan.output_file, display.output)
                    self.started, start_time = time.monotonic(), _now()
                    display.event(0.0, f"started the trainer (pid {trainer.pid}) in {Path.cwd()}: {' '.join(plan.command)}")
                    display.event(0.0, f"run directory {plan.run_dir}; metrics from {self.options.prometheus or plan.metrics_url}")
                    returncode = self.loop(trainer, display, received)
                    display.event(self.elapsed, f"the trainer {describe_exit(returncode)}")
                    self.note = "reading the last reports"
                    display.update(self.snapshot("Stopping"))
                    if self.reader is not None:
                        self.reader.settle(SETTLE_SECONDS, SETTLE_TIMEOUT_SECONDS)
                    sidecar.drain(self.reader.read_last if self.reader else lambda: None, linger + 5)
                if self.reader is not None:
                    self.reader.read_last()  # through Prometheus, the sidecar's last scrape is visible now
                if self.plan.job.spec.stop.dry_run and self.would_stop is None:
                    self.evaluate()
                outcome = self.outcome(returncode, list(trainer.tail))
                status = self.status(outcome, returncode, start_time, trainer.pid)
                for path in self.write_results(status):
                    self.console.print(f"plateau: wrote {path}", markup=False, highlight=False, soft_wrap=True)
            return outcome.exit_code
        finally:
            if trainer is not None and trainer.poll() is None:
                trainer.signal(signal.SIGKILL)
                trainer.reap()
            sidecar.kill()
            if self.reader is not None:
                self.reader.source.close()
            if self.sampler is not None:
                self.sampler.close()


def _reported_names(path: Path, lines: int = 100) -> list[str]:
    """The metric names a trainer's JSONL file reports, from its first lines: what curve.png lists when
    the monitored metric is not among them."""
    names: dict[str, None] = {}
    for line in itertools.islice(bounded_lines(path), lines):
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            names.update(dict.fromkeys(key for key in record if key not in NON_METRIC_KEYS))
    return list(names)


def run(manifest: Path, options: RunOptions, console: Optional[Console] = None) -> int:
    """Run one TrainingJob locally; returns the exit code for the shell."""
    plan = plan_run(load_training_job(manifest), options)
    return LocalRun(plan, options, console or Console()).execute()
