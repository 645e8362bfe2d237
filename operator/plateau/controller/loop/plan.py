"""Each job's plan from what the cycle read: accounting, the fold, the decision, the transition. Pure.

A job is planned once per cycle, as soon as what its plan reads has arrived; a job whose inputs
stand where its last plan, which asked for nothing, saw them is not planned again (steady).
Each plan goes to `on_plan` as it is made; carrying it out is act's.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Iterable, NamedTuple, Optional

from plateau import api
from plateau.controller.config import Settings
from plateau.controller.loop.context import RUNNING, CycleReport, Failure, Gpu, JobContext, Key, Metrics
from plateau.controller.loop.memory import Memory, current_status
from plateau.controller.trackread import TrackReads
from plateau.engine.cohort import best_at, selector_matches
from plateau.engine.fold import MetricTrack
from plateau.engine.rules import CohortView, GpuWindow, Observation, decide, pods_named
from plateau.engine.status import GPU_METRICS_AVAILABLE, METRICS_AVAILABLE, parse_rfc3339, set_condition
from plateau.engine.stopflow import JobState, Plan, accounting, rfc3339_at, transition
from plateau.prometheus.summaries import SidecarTrack

log = logging.getLogger("plateau.controller.loop")


class Reads(NamedTuple):
    """What the cycle read for its plans so far: tracks, then GPU windows, and their errors."""

    tracks: dict[Key, SidecarTrack]
    metrics_error: Optional[Failure] = None
    gpu: Optional[dict[Key, GpuWindow]] = None  # None: not read (yet)
    gpu_error: Optional[Failure] = None


class Planner:
    """Plans a cycle's jobs, each once, and hands each plan to `on_plan` as it is made."""

    def __init__(self, memory: dict[str, Memory], tracks: TrackReads, peers: dict[Key, dict[str, Any]],
                 settings: Settings, now: float, report: CycleReport,
                 on_plan: Callable[[JobContext, Plan], None], plan_job: PlanJob) -> None:
        self.memory, self.tracks, self.peers, self.settings = memory, tracks, peers, settings
        self.now, self.report, self.on_plan, self.plan_job = now, report, on_plan, plan_job
        self.planned: set[Key] = set()

    def early(self, jobs: list[JobContext], tracks: dict[Key, SidecarTrack]) -> None:
        """Jobs whose plan needs nothing but their metric, as their part of the metrics arrives."""
        self._each(jobs, Reads(tracks))

    def rest(self, jobs: list[JobContext], metrics: Metrics, gpu: Gpu) -> None:
        """Every job not planned yet, once everything is read."""
        self._each((c for c in jobs if c.key not in self.planned),
                   Reads(metrics.tracks, metrics.error, gpu.windows, gpu.error))

    def _each(self, jobs: Iterable[JobContext], reads: Reads) -> None:
        for ctx in jobs:
            self.planned.add(ctx.key)
            memory = self.memory.get(ctx.uid)
            if memory is not None and steady(ctx, memory, reads, self.now, self.settings):
                self.report.steady += 1
                continue
            if memory is not None:
                memory.steady = None
            plan = self._safely(ctx, reads)
            if plan is not None:
                self.on_plan(ctx, plan)

    def _safely(self, ctx: JobContext, reads: Reads) -> Optional[Plan]:
        """One job's failure must never cost the others their evaluation."""
        try:
            return self.plan_job(self, ctx, reads)
        except Exception as exc:  # noqa: BLE001 (logged with the job's name, retried next cycle)
            log.exception("%s/%s: evaluation failed; retrying next cycle", *ctx.key)
            self.report.errors.append(f"{ctx.key}: {type(exc).__name__}")
            return None


def job(planner: Planner, ctx: JobContext, reads: Reads) -> Plan:
    """One job's plan: the time accounted, the metric folded, the decision, the transition."""
    generation, now, gpu = ctx.generation, planner.now, reads.gpu or {}
    update = accounting(JobState(generation, ctx.spec.replicas, ctx.stop, ctx.status, ctx.state,
                                 ctx.spec.template is not None, now))
    planner.report.gpu_hours += update.get("gpu_hours", ctx.status.gpu_hours) - ctx.status.gpu_hours
    decision = None
    if ctx.status.phase == RUNNING:
        # One copy of the status per job and cycle (this is the hot path): the fold and
        # the GPU condition add to the accounting's update.
        text_now = rfc3339_at(now)
        metric_track = planner.tracks.take(ctx, update, reads.tracks.get(ctx.key), reads.metrics_error or ctx.query_error,
                                           text_now, generation)
        gpu_condition(ctx, update, gpu.get(ctx.key), reads.gpu_error, text_now, generation)
        status = ctx.status.model_copy(update=update)
        obs = Observation(
            metric=metric_track,
            elapsed_seconds=status.running_seconds,
            gpu_hours=status.gpu_hours,
            gpu=gpu.get(ctx.key),
            cohort=cohort_view(ctx, metric_track, planner.peers, planner.memory),
        )
        decision = decide(ctx.stop, obs)
    else:
        status = ctx.status.model_copy(update=update) if update else ctx.status
    plan = transition(JobState(generation, ctx.spec.replicas, ctx.stop, status, ctx.state,
                               ctx.spec.template is not None, now), decision)
    # What the read saw (a resume) happened before what the transition does about it.
    return plan._replace(actions=planner.tracks.news(ctx, status) + plan.actions) if status is not ctx.status else plan


# One job's plan; the loop's is `job` (cycle.Stages.plan_job).
PlanJob = Callable[[Planner, JobContext, Reads], Plan]


def gpu_condition(ctx: JobContext, update: dict[str, Any], window: Optional[GpuWindow],
                  error: Optional[Failure], now: str, generation: int) -> None:
    """gpuIdle jobs: the GpuMetricsAvailable condition, added to `update`."""
    if ctx.stop.gpu_idle is None:
        return
    if error is not None:
        state, reason, message = "False", error[0], error[1]
    elif window is None:
        state, reason, message = "False", "NoDcgmSeries", "no dcgm-exporter series for the job's pods: GPU idle is unknown"
    elif window.unseen:
        state, reason = "False", "NoDcgmSeries"
        message = f"no dcgm-exporter series for {pods_named(window.unseen)}: GPU idle is unknown"
    else:
        state, reason, message = "True", "SeriesFound", f"utilisation known for {window.covered_seconds:.0f}s"
    update["conditions"] = set_condition(update.get("conditions", ctx.status.conditions), GPU_METRICS_AVAILABLE,
                                         state, reason, message, now, generation)


def cohort_view(ctx: JobContext, metric_track: Optional[MetricTrack], peers: dict[Key, dict[str, Any]],
                memory: dict[str, Memory]) -> Optional[CohortView]:
    """The cohort's values at the job's last step: its peers' in the namespace, by the selector."""
    cohort = ctx.stop.cohort
    if cohort is None or metric_track is None or metric_track.last_step is None:
        return None
    selector = cohort.selector.model_dump(by_alias=True)
    step = metric_track.last_step
    values = []
    for (ns, name), body in peers.items():
        if ns != ctx.key[0] or name == ctx.key[1]:
            continue
        if not selector_matches(selector, (body.get("metadata") or {}).get("labels") or {}):
            continue
        value = best_at(current_status(memory, body).metric, step)
        if value is not None:
            values.append(value)
    return CohortView(step, tuple(values))


def steady(ctx: JobContext, memory: Memory, reads: Reads, now: float, settings: Settings) -> bool:
    """Whether nothing the job's plan depends on moved since a plan that asked for nothing:
    same generation and workload state, no new report, no budget within reach, no progress
    write due. Its plan would be the same, so it is not made; the time in between is
    accounted at the next plan (account() adds everything since lastEvaluationTime)."""
    status = memory.status
    if memory.steady != (ctx.generation, ctx.state) or status.phase != RUNNING:
        return False
    if now - memory.written_at >= settings.status_interval:
        return False  # a progress write is due
    stop = ctx.stop
    if stop.gpu_idle is not None or stop.cohort is not None or ctx.spec.metrics.queries:
        return False  # GPU samples and peers' values move on their own
    rule = ctx.rule
    if rule is not None:
        metric, summary = status.metric, reads.tracks.get(ctx.key)
        if reads.metrics_error is not None or metric is None or summary is None or metric.name != rule.name \
                or (summary.reports, summary.spec_key) != (metric.sidecar_reports, metric.spec_key):
            return False  # news, or no metric to compare with: checked first, as the cheapest
        if not any(c.type == METRICS_AVAILABLE and c.status == "True" for c in status.conditions):
            return False
    return not budget_within_reach(stop, status, ctx.state.gpus, now, 2 * settings.interval)


def budget_within_reach(stop: api.StopSpec, status: api.TrainingJobStatus, gpus: int, now: float, margin: float) -> bool:
    """Whether maxDuration or maxGpuHours could be reached by `margin` seconds from now."""
    last = parse_rfc3339(status.last_evaluation_time)
    if last is None:
        return True
    ahead = now - last.timestamp() + margin
    if stop.max_duration is not None and status.running_seconds + ahead >= stop.max_duration.seconds:
        return True
    return stop.max_gpu_hours is not None and status.gpu_hours + ahead * gpus / 3600.0 >= stop.max_gpu_hours
