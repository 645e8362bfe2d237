"""The evaluation loop: one cycle evaluates every TrainingJob with a fixed number of queries.

A cycle reads the watched objects from the registry (kept current by kopf's watch), fetches
every running job's metrics and GPU utilisation in batched PromQL, runs the pure engine and
state machine per job, then applies the plans: workload actions first, then the status
write, then Events. Status changes that only move metrics are written at most every
`status_interval` per job; phase changes are written at once.
"""

from __future__ import annotations

import asyncio
import math
import logging
import time
from collections import defaultdict
from dataclasses import dataclass, field, replace
from operator import itemgetter
from typing import Any, Awaitable, Callable, Iterable, Optional

from pydantic import ValidationError

from plateau import api

from plateau.prometheus import promql
from plateau.engine.cohort import best_at, selector_matches
from plateau.controller.config import Settings
from plateau.api.durations import format_duration, parse_duration
from plateau.controller.heap import FrozenHeap
from plateau.controller.kube import ApiError, Kube
from plateau.controller.metrics import (
    CYCLE_SECONDS,
    GPU_HOURS_SAVED,
    GPU_HOURS_USED,
    JOBS,
    METRICS_MISSING,
    PROMETHEUS_ERRORS,
    STOPS,
    clear_job_gauges,
)
from plateau.engine.presets import resolve_metric_rule
from plateau.prometheus.client import PrometheusClient, PrometheusError, Sample
from plateau.api.errors import format_validation_error
from plateau.engine.rules import CohortView, Evaluation, GpuWindow, MetricTrack, Observation, decide, track
from plateau.engine.status import (
    GPU_METRICS_AVAILABLE,
    METRICS_AVAILABLE,
    SPEC_VALID,
    parse_rfc3339,
    set_condition,
)
from plateau.engine.stopflow import (
    CreateWorkload,
    Event,
    JobState,
    Plan,
    RequestStop,
    Resume,
    ShareSpec,
    Suspend,
    WorkloadState,
    accounting,
    rfc3339_at,
    transition,
)
from plateau.engine.history import MetricSpec, metric_spec_for
from plateau.prometheus.summaries import TRACK_READ_SERIES, SidecarTrack, track_from_series
from plateau.controller.trackread import TrackReads
from plateau.controller.workload_state import job_state, pod_waiting
from plateau.controller.children import LABEL, build_job, label_value
from plateau.controller.workloads import Workload
from plateau_sidecar import protocol

log = logging.getLogger("plateau.controller.evaluator")

REJECTED = (400, 422)  # the server refused the object itself: retrying the same spec cannot help
PENDING = api.Phase.PENDING.value
RUNNING = api.Phase.RUNNING.value
# The moved jobs' series are fetched in this many concurrent queries (promql.name_parts).
FETCH_PARTS = 4
# Status fields whose change alone does not need an immediate write.
PROGRESS_FIELDS = {"last_evaluation_time", "running_seconds", "gpu_hours", "metric", "evaluations"}
TRANSITION_FIELDS = tuple(f for f in api.TrainingJobStatus.model_fields if f not in PROGRESS_FIELDS)
CONDITION_KEY_FIELDS = tuple(f for f in api.Condition.model_fields if f != "message")
_transition_fields = itemgetter(*(f for f in TRANSITION_FIELDS if f != "conditions"))
_condition_key = itemgetter(*CONDITION_KEY_FIELDS)


# What the loop never reads and a real API server sends with every object: the field managers,
# and kubectl's copy of the whole applied manifest.
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


class Registry:
    """The latest watched objects, fed by kopf's watch-event handlers.

    At 10,000 jobs this is most of the operator's memory, so it keeps only what the loop reads:
    TrainingJobs without managedFields and kubectl's last-applied copy, and child Jobs as the
    WorkloadState the loop derives from them (a Job is mostly its pod template).
    """

    def __init__(self) -> None:
        self.trainingjobs: dict[tuple[str, str], dict[str, Any]] = {}
        self.child_jobs: dict[tuple[str, str], WorkloadState] = {}
        self.changed = asyncio.Event()

    def on_trainingjob(self, event: dict[str, Any]) -> None:
        meta = (event.get("object") or {}).get("metadata") or {}
        key = (meta.get("namespace", ""), meta.get("name", ""))
        before = (self.trainingjobs.get(key) or {}).get("metadata") or {}
        if event.get("type") == "DELETED":
            self.trainingjobs.pop(key, None)
        elif event.get("object"):
            self.trainingjobs[key] = _slim(event["object"])
        # Wake the loop for new, deleted or re-specified jobs, not for our own status writes.
        if event.get("type") != "MODIFIED" or before.get("generation") != meta.get("generation") \
                or before.get("deletionTimestamp") != meta.get("deletionTimestamp"):
            self.changed.set()

    def on_child_job(self, event: dict[str, Any]) -> None:
        meta = (event.get("object") or {}).get("metadata") or {}
        key = (meta.get("namespace", ""), (meta.get("labels") or {}).get(LABEL, ""))
        before = self.child_jobs.get(key)
        if event.get("type") == "DELETED":
            self.child_jobs.pop(key, None)
            self.changed.set()
        elif event.get("object"):
            state = self.child_jobs[key] = job_state(event["object"])
            if state != before:
                self.changed.set()


def _slim(body: dict[str, Any]) -> dict[str, Any]:
    """The object less what the loop never reads (a copy: kopf owns the original)."""
    meta = body.get("metadata") or {}
    annotations = meta.get("annotations") or {}
    if "managedFields" not in meta and LAST_APPLIED not in annotations:
        return body
    meta = {k: v for k, v in meta.items() if k != "managedFields"}
    if LAST_APPLIED in annotations:
        meta["annotations"] = {k: v for k, v in annotations.items() if k != LAST_APPLIED}
    return {**body, "metadata": meta}


@dataclass
class Memory:
    """What this leader last computed and wrote for one job."""

    status: api.TrainingJobStatus
    written: api.TrainingJobStatus
    written_at: float
    # (generation, workload state) of the last plan, when it asked for nothing and its status
    # is recorded: while these and the metric stand still, the job's plan cannot change.
    steady: Optional[tuple[int, WorkloadState]] = None


@dataclass
class CycleReport:
    jobs: int = 0
    queries: int = 0
    writes: int = 0
    actions: int = 0
    steady: int = 0  # jobs with nothing new, not planned this cycle
    gpu_hours: float = 0.0  # GPU-hours accounted this cycle, added to the counter once
    errors: list[str] = field(default_factory=list)


@dataclass
class JobContext:
    body: dict[str, Any]
    spec: api.TrainingJobSpec
    stop: api.StopSpec
    status: api.TrainingJobStatus
    workload: Optional[Workload] = None
    state: WorkloadState = WorkloadState(exists=False)
    query_error: Optional[tuple[str, str]] = None  # its custom query's own Prometheus error, this cycle
    # Read several times per job and cycle: worked out once.
    key: tuple[str, str] = field(init=False)  # (namespace, name)
    uid: str = field(init=False)
    generation: int = field(init=False)
    rule: Optional[api.MetricRule] = field(init=False)  # the monitored metric, presets resolved
    metric_spec: Optional[MetricSpec] = field(init=False)  # what the sidecar folds the metric under

    def __post_init__(self) -> None:
        m = self.body["metadata"]
        self.key = m["namespace"], m["name"]
        self.uid = m.get("uid", "")
        self.generation = int(m.get("generation") or 1)
        self.rule = resolve_metric_rule(self.stop)
        self.metric_spec = metric_spec_for(self.stop)

    @property
    def spec_key(self) -> Optional[int]:
        return self.metric_spec.key if self.metric_spec else None


# Receives, as each part of the metrics arrives, the jobs to plan at once and the part's summaries.
OnPart = Callable[[list[JobContext], dict[tuple[str, str], SidecarTrack]], None]


class Evaluator:
    def __init__(self, settings: Settings, registry: Registry, kube: Kube, prometheus: PrometheusClient,
                 clock: Callable[[], float] = time.time, heap: Optional[FrozenHeap] = None) -> None:
        self.settings = settings
        self.registry = registry
        self.kube = kube
        self.prometheus = prometheus
        self.clock = clock
        self.heap = heap
        self.memory: dict[str, Memory] = {}
        self._specs: dict[tuple[str, int], api.TrainingJobSpec | str] = {}
        self.tracks = TrackReads()
        self._limit = asyncio.Semaphore(settings.concurrency)
        self._sidecar_answer = promql.SidecarDecoder(settings.prometheus_namespace_label)
        self._fetch_all = False  # most jobs had news in the last cycle: skip the counter query

    def forget(self) -> None:
        """Drop what this replica remembers; after a leadership change the API is the truth."""
        self.memory.clear()
        self.tracks.forget()
        self._fetch_all = False
        clear_job_gauges()

    # --- one cycle ------------------------------------------------------------------------

    async def cycle(self) -> CycleReport:
        started = time.perf_counter()
        report = CycleReport()
        now = self.clock()
        contexts = []
        for body in list(self.registry.trainingjobs.values()):
            if (body.get("metadata") or {}).get("deletionTimestamp"):
                continue  # being deleted: the garbage collector removes the child Job
            ctx = await self._context(body, now, report)
            if ctx is not None:
                contexts.append(ctx)
        report.jobs = len(contexts)
        referenced = [c for c in contexts if c.spec.template is None]
        for ctx in contexts:
            if ctx.spec.template is not None:
                ctx.state = self.registry.child_jobs.get((ctx.key[0], label_value(ctx.key[1])), WorkloadState(exists=False))
        await asyncio.gather(*(self._observe_reference(c) for c in referenced))
        await asyncio.gather(*(self._observe_waiting(c) for c in contexts
                               if c.status.phase == PENDING and c.state.active > 0 and c.state.running == 0))
        pending: list[Awaitable[None]] = []
        planned: set[tuple[str, str]] = set()

        def plan(jobs: Iterable[JobContext], summaries: dict[tuple[str, str], SidecarTrack],
                 metrics_error: Optional[tuple[str, str]], gpu: dict[tuple[str, str], GpuWindow],
                 gpu_error: Optional[tuple[str, str]]) -> None:
            for ctx in jobs:
                planned.add(ctx.key)
                pending.extend(self._plan_job(ctx, summaries, metrics_error, gpu, gpu_error, now, report))

        # Plans are pure and cheap; only jobs with actions or a due status write await the API.
        # Jobs whose plan needs nothing but their metric are planned as their part of the
        # metrics arrives, while Prometheus still answers for the others. A plan's actions start
        # at once; status writes wait until every job is planned, and queue behind them.
        try:
            tracks, metrics_condition, pods = await self._fetch_metrics(
                contexts, report, lambda jobs, summaries: plan(jobs, summaries, None, {}, None))
            gpu, gpu_condition = await self._fetch_gpu(contexts, pods, now, report)
            plan((c for c in contexts if c.key not in planned), tracks, metrics_condition, gpu, gpu_condition)
        finally:  # the plans made so far are carried out even if the rest of the cycle failed
            await asyncio.gather(*pending)
        GPU_HOURS_USED.inc(report.gpu_hours)
        self._forget_gone()
        self._export_phases()
        if self.heap is not None:
            self.heap.after_cycle()
        CYCLE_SECONDS.observe(time.perf_counter() - started)
        return report

    def _plan_job(self, ctx: JobContext, summaries: dict[tuple[str, str], SidecarTrack],
                  metrics_error: Optional[tuple[str, str]], gpu: dict[tuple[str, str], GpuWindow],
                  gpu_error: Optional[tuple[str, str]], now: float, report: CycleReport) -> list[Awaitable[None]]:
        """One job's plan; what it must still await of the API (only actions and due writes do)."""
        memory = self.memory.get(ctx.uid)
        if memory is not None and self._steady(ctx, memory, summaries, metrics_error, now):
            report.steady += 1
            return []
        if memory is not None:
            memory.steady = None
        plan = self._plan_safely(ctx, summaries, metrics_error, gpu, gpu_error, now, report)
        if plan is None:
            return []
        if plan.actions:  # a stop must not wait behind thousands of progress writes
            return [asyncio.create_task(self._safely(ctx, self._apply(ctx, plan, now, report), report))]
        if self._due(ctx.body, plan.status, now):
            return [self._safely(ctx, self._record(ctx, plan.status, now, report), report)]
        self.memory[ctx.uid].steady = (ctx.generation, ctx.state)
        return []

    async def _context(self, body: dict[str, Any], now: float, report: CycleReport) -> Optional[JobContext]:
        meta = body["metadata"]
        uid, generation = meta.get("uid", ""), int(meta.get("generation") or 1)
        status = self._current_status(body)
        parsed = self._specs.get((uid, generation))
        if parsed is None:
            try:
                parsed = api.TrainingJobSpec.model_validate(body.get("spec") or {})
            except ValidationError as exc:
                parsed = format_validation_error(exc, "spec")
            else:
                if parsed.metrics.queries and self.settings.custom_queries == "disabled":
                    parsed = "spec.metrics.queries: custom queries are disabled in this installation (Helm value customQueries)"
                elif parsed.stop.dry_run is None:  # the operator's default, once per generation
                    stop = parsed.stop.model_copy(update={"dry_run": self.settings.default_dry_run})
                    parsed = parsed.model_copy(update={"stop": stop})
            self._specs[(uid, generation)] = parsed
        if isinstance(parsed, str):
            text = rfc3339_at(now)
            invalid = status.model_copy(update={
                "observed_generation": generation,
                "conditions": set_condition(status.conditions, SPEC_VALID, "False", "InvalidSpec", parsed, text, generation),
            })
            await self._write(body, invalid, now, report, force=True)
            return None
        spec = parsed
        stop = spec.stop
        if status.conditions and any(c.type == SPEC_VALID and c.status == "False" for c in status.conditions):
            status = status.model_copy(update={"conditions": set_condition(
                status.conditions, SPEC_VALID, "True", "Valid", "", rfc3339_at(now), generation)})
        ctx = JobContext(body, spec, stop, status)
        ns = meta["namespace"]
        if spec.workload_ref is not None:
            ref = spec.workload_ref
            ctx.workload = Workload(self.kube, ns, ref.api_version, ref.kind, ref.name)
        else:
            ctx.workload = Workload(self.kube, ns, "batch/v1", "Job", meta["name"])
        return ctx

    def _current_status(self, body: dict[str, Any]) -> api.TrainingJobStatus:
        uid = body["metadata"].get("uid", "")
        if uid in self.memory:
            return self.memory[uid].status
        try:
            return api.TrainingJobStatus.model_validate(body.get("status") or {})
        except ValidationError:
            log.warning("ignoring unreadable status of %s/%s", body["metadata"].get("namespace"), body["metadata"].get("name"))
            return api.TrainingJobStatus()

    async def _observe_reference(self, ctx: JobContext) -> None:
        """A workloadRef's state, read from the API (child Jobs come from the watch)."""
        assert ctx.workload is not None
        async with self._limit:
            try:
                ctx.state = await ctx.workload.observe()
            except ApiError as exc:
                # Unknown is not "deleted": keep the last phase and try again next cycle.
                ctx.state = WorkloadState(exists=True, message=str(exc))

    async def _observe_waiting(self, ctx: JobContext) -> None:
        """Why a Pending job's pods do not run yet, from the pods themselves."""
        async with self._limit:
            try:
                pods = await self._pods_of(ctx)
            except ApiError:
                return  # unknown: the condition says what it said last
        ctx.state = replace(ctx.state, waiting=pod_waiting(pods))

    async def _pods_of(self, ctx: JobContext) -> list[dict[str, Any]]:
        assert ctx.workload is not None
        selector = await ctx.workload.pod_selector()
        return await self.kube.pods(ctx.key[0], selector) if selector else []

    # --- Prometheus ---------------------------------------------------------------------------

    async def _query(self, promql_text: str, report: CycleReport) -> list[Sample]:
        report.queries += 1
        return await self.prometheus.query(promql_text)

    async def _query_sidecar(self, promql_text: str, report: CycleReport) -> list[tuple[Any, float]]:
        """A `promql.sidecar_query`: (labels, value) per series, with only the labels read here."""
        report.queries += 1
        return await self.prometheus.query(promql_text, decode=self._sidecar_answer)

    async def _fetch_metrics(self, contexts: list[JobContext], report: CycleReport, on_part: OnPart
                             ) -> tuple[dict[tuple[str, str], SidecarTrack], Optional[tuple[str, str]], dict[tuple[str, str], set[str]]]:
        """Per job, the sidecar summary of its monitored metric; and each job's pods."""
        watched = [c for c in contexts if c.status.phase == RUNNING and c.rule]
        sidecar_jobs = [c for c in watched if not c.spec.metrics.queries]
        summaries: dict[tuple[str, str], SidecarTrack] = {}
        pods: dict[tuple[str, str], set[str]] = defaultdict(set)
        if not watched:
            return summaries, None, pods
        try:
            if sidecar_jobs:
                summaries, pods = await self._sidecar_summaries(sidecar_jobs, report, on_part)
        except PrometheusError as exc:
            self._count_prometheus_error(exc, report)
            return {}, (exc.reason, str(exc)), pods
        for ctx in watched:
            if ctx.spec.metrics.queries:
                try:
                    summary = await self._custom_metric(ctx, report)
                except PrometheusError as exc:  # one team's query fails alone, not every job's read
                    self._count_prometheus_error(exc, report)
                    ctx.query_error = (exc.reason, str(exc))
                    continue
                if summary is not None:
                    summaries[ctx.key] = summary
        return summaries, None, pods

    @staticmethod
    def _count_prometheus_error(exc: PrometheusError, report: CycleReport) -> None:
        PROMETHEUS_ERRORS.labels(reason=exc.reason).inc()
        report.errors.append(str(exc))

    async def _sidecar_summaries(self, jobs: list[JobContext], report: CycleReport, on_part: OnPart
                                 ) -> tuple[dict[tuple[str, str], SidecarTrack], dict[tuple[str, str], set[str]]]:
        """At most 1 + FETCH_PARTS queries whatever the number of jobs: every job's report
        counter, then the series of the jobs whose counter moved (all jobs, unfiltered, when
        most did), in concurrent parts. A job whose counter stands where the operator last read
        it has nothing new to fold. When most jobs had news in the last cycle, the counter
        query is skipped: the parts fetch every job's series, and name the pods.

        Each part's jobs that need nothing else are handed to `on_part` as the part arrives."""
        ns_label = self.settings.prometheus_namespace_label
        names = {c.rule.name for c in jobs}  # type: ignore[union-attr]
        summaries: dict[tuple[str, str], SidecarTrack] = {}
        pods: dict[tuple[str, str], set[str]] = defaultdict(set)
        fetch_all = self._fetch_all
        if fetch_all:
            moved, only = jobs, None
        else:
            wanted = {(c.key[0], c.key[1], c.rule.name) for c in jobs}  # type: ignore[union-attr]
            counters = await self._query_sidecar(
                promql.sidecar_query({c.key[0] for c in jobs}, names, ns_label, series=(protocol.SERIES_REPORTS,)), report)
            reports: dict[tuple[str, str], float] = {}
            for labels, value in counters:
                key = (labels.namespace, labels.trainingjob, labels.metric)
                if key in wanted:
                    reports[key[:2]] = max(value, reports.get(key[:2], value))  # the reporting replica
                    if labels.pod:
                        pods[key[:2]].add(labels.pod)
            moved = []
            for ctx in jobs:
                if ctx.key not in reports:
                    continue  # no series: the fold says NoSeries
                metric = ctx.status.metric
                if _has_news(ctx, reports[ctx.key]):
                    moved.append(ctx)
                else:
                    summaries[ctx.key] = SidecarTrack(metric.sidecar_reports, metric.spec_key, None)  # type: ignore[union-attr]
            only = None if 2 * len(moved) > len(jobs) else {c.key[1] for c in moved}
        if moved:
            fetch = TRACK_READ_SERIES
            wanted_moved = {(c.key[0], c.key[1], c.rule.name) for c in moved}  # type: ignore[union-attr]
            moved_namespaces = {c.key[0] for c in moved}
            # GPU windows and peers' values come later in the cycle.
            early = {c.key: c for c in moved if c.stop.gpu_idle is None and c.stop.cohort is None}

            async def fetch_part(part: str) -> dict[tuple[str, str], SidecarTrack]:
                query = promql.sidecar_query(moved_namespaces, names, ns_label, series=fetch, trainingjobs=only, part=part)
                fresh = self._assemble(await self._query_sidecar(query, report), wanted_moved, pods if fetch_all else None)
                on_part([early[k] for k in fresh if k in early], fresh)
                return fresh

            # Concurrent parts: Prometheus evaluates each on a core of its own, and each answer
            # is decoded and planned here while Prometheus still works on the others. Every part
            # is awaited before a failure is raised: none may plan its jobs after the cycle
            # has planned the rest.
            results = await asyncio.gather(*(fetch_part(p) for p in promql.name_parts(FETCH_PARTS)),
                                           return_exceptions=True)
            for result in results:
                if isinstance(result, BaseException):
                    raise result
                summaries.update(result)
        news = sum(1 for c in jobs if c.key in summaries and _has_news(c, summaries[c.key].reports))
        self._fetch_all = 2 * news > len(jobs)
        return summaries, pods

    @staticmethod
    def _assemble(answer: list[tuple[Any, float]], wanted: set[tuple[str, str, str]],
                  pods: Optional[dict[tuple[str, str], set[str]]] = None) -> dict[tuple[str, str], SidecarTrack]:
        """Per job, the summary of its reporting replica; and its pods into `pods`, if given."""
        series: dict[tuple[str, str, str, str, str], dict[str, float]] = defaultdict(dict)
        for labels, value in answer:
            # A pod scraped twice (PodMonitor and annotations) gives two copies: keep them apart.
            series[(labels.namespace, labels.trainingjob, labels.metric, labels.pod, labels.instance)][labels.name] = value
        best: dict[tuple[str, str], SidecarTrack] = {}
        for (ns, name, metric, pod, _instance), values in series.items():
            if (ns, name, metric) not in wanted:
                continue
            summary = track_from_series(values, metric)
            if summary is None:
                continue
            if pods is not None and pod:
                pods[(ns, name)].add(pod)
            current = best.get((ns, name))
            if current is None or summary.reports > current.reports:  # the reporting replica
                best[(ns, name)] = summary
        return best

    async def _custom_metric(self, ctx: JobContext, report: CycleReport) -> Optional[SidecarTrack]:
        """A user's PromQL for workloadRef jobs, folded here: each change of value read is one
        evaluation (no sidecar sees the reports, so the sequence is what the reads saw)."""
        rule = ctx.rule
        template = ctx.spec.metrics.queries.get(rule.name) if rule else None
        if template is None or rule is None:
            return None
        confine_label = None if self.settings.custom_queries == "unconfined" else self.settings.prometheus_namespace_label
        try:
            query = promql.custom_query(template, ctx.key[0], ctx.key[1], confine_label)
        except ValueError as exc:  # the spec's validation rejects such templates first
            log.warning("custom query of %s/%s not run: %s", *ctx.key, exc)
            return None
        samples = await self._query(query, report)
        if len(samples) != 1:
            return None
        value = samples[0].value
        previous = self.tracks.previous(ctx)
        reports = ctx.status.metric.sidecar_reports if ctx.status.metric else 0
        # A query's NaN (a 0/0 ratio, say) is no trainer's report of one: missing data, never a stop.
        if not math.isfinite(value) or (previous is not None and previous.last == value):
            return SidecarTrack(reports, ctx.spec_key, None)  # nothing new
        return SidecarTrack(reports + 1, ctx.spec_key, track(previous, rule, (Evaluation(int(samples[0].timestamp), value),)))

    async def _fetch_gpu(self, contexts: list[JobContext], pods: dict[tuple[str, str], set[str]], now: float,
                         report: CycleReport) -> tuple[dict[tuple[str, str], GpuWindow], Optional[tuple[str, str]]]:
        idle_jobs = [c for c in contexts if c.stop.gpu_idle and c.status.phase == RUNNING]
        windows: dict[str, list[JobContext]] = defaultdict(list)
        for ctx in idle_jobs:
            windows[format_duration(parse_duration(ctx.stop.gpu_idle.for_))].append(ctx)  # type: ignore[union-attr]
        for ctx in idle_jobs:
            # Sidecar series name the pods of jobs that report metrics; list the others.
            if not pods.get(ctx.key) and ctx.workload is not None:
                pods[ctx.key] |= await self._workload_pods(ctx)
        out: dict[tuple[str, str], GpuWindow] = {}
        d = self.settings.dcgm
        try:
            for window, members in windows.items():
                namespaces = {c.key[0] for c in members}
                highest = await self._query(promql.gpu_max_query(d, namespaces, window), report)
                oldest = await self._query(promql.gpu_since_query(d, namespaces, window), report)
                per_pod_max = {(s.labels.get(d.namespace_label, ""), s.labels.get(d.pod_label, "")): s.value for s in highest}
                per_pod_since = {(s.labels.get(d.namespace_label, ""), s.labels.get(d.pod_label, "")): s.value for s in oldest}
                for ctx in members:
                    keys = [(ctx.key[0], p) for p in pods.get(ctx.key, ()) if (ctx.key[0], p) in per_pod_max]
                    if not keys:
                        continue  # no GPU series for this job's pods: unknown, never idle
                    covered = min(now - per_pod_since.get(k, now) for k in keys)
                    out[ctx.key] = GpuWindow(max(per_pod_max[k] for k in keys), max(0.0, covered))
        except PrometheusError as exc:
            self._count_prometheus_error(exc, report)
            return {}, (exc.reason, str(exc))
        return out, None

    async def _workload_pods(self, ctx: JobContext) -> set[str]:
        async with self._limit:
            try:
                return {p["metadata"]["name"] for p in await self._pods_of(ctx)}
            except ApiError:
                return set()

    # --- per job ------------------------------------------------------------------------------

    def _plan_safely(self, ctx: JobContext, *args: Any) -> Optional[Plan]:
        """One job's failure must never cost the others their evaluation."""
        try:
            return self._plan(ctx, *args)
        except Exception as exc:  # noqa: BLE001 (logged with the job's name, retried next cycle)
            log.exception("%s/%s: evaluation failed; retrying next cycle", *ctx.key)
            args[-1].errors.append(f"{ctx.key}: {type(exc).__name__}")
            return None

    @staticmethod
    async def _safely(ctx: JobContext, io: Awaitable[None], report: CycleReport) -> None:
        try:
            await io
        except Exception as exc:  # noqa: BLE001 (logged with the job's name, retried next cycle)
            log.exception("%s/%s: applying the plan failed; retrying next cycle", *ctx.key)
            report.errors.append(f"{ctx.key}: {type(exc).__name__}")

    def _plan(self, ctx: JobContext, summaries: dict[tuple[str, str], SidecarTrack],
              metrics_error: Optional[tuple[str, str]], gpu: dict[tuple[str, str], GpuWindow],
              gpu_error: Optional[tuple[str, str]], now: float, report: CycleReport) -> Plan:
        generation = ctx.generation
        job = JobState(generation, ctx.spec.replicas, ctx.stop, ctx.status, ctx.state, ctx.spec.template is not None, now)
        update = accounting(job)
        report.gpu_hours += update.get("gpu_hours", ctx.status.gpu_hours) - ctx.status.gpu_hours
        decision = None
        if ctx.status.phase == RUNNING:
            # One copy of the status per job and cycle (this is the hot path): the fold and
            # the GPU condition add to the accounting's update.
            text_now = rfc3339_at(now)
            metric_track = self.tracks.take(ctx, update, summaries.get(ctx.key), metrics_error or ctx.query_error,
                                            text_now, generation)
            self._gpu_condition(ctx, update, gpu.get(ctx.key), gpu_error, text_now, generation)
            status = ctx.status.model_copy(update=update)
            obs = Observation(
                metric=metric_track,
                elapsed_seconds=status.running_seconds,
                gpu_hours=status.gpu_hours,
                gpu=gpu.get(ctx.key),
                cohort=self._cohort_view(ctx, metric_track),
            )
            decision = decide(ctx.stop, obs)
        else:
            status = ctx.status.model_copy(update=update) if update else ctx.status
        plan = transition(JobState(generation, ctx.spec.replicas, ctx.stop, status, ctx.state,
                                   ctx.spec.template is not None, now), decision)
        # What the read saw (a resume) happened before what the transition does about it.
        return plan._replace(actions=self.tracks.news(ctx, status) + plan.actions) if status is not ctx.status else plan

    def _gpu_condition(self, ctx: JobContext, update: dict[str, Any], window: Optional[GpuWindow],
                       error: Optional[tuple[str, str]], now: str, generation: int) -> None:
        """gpuIdle jobs: the GpuMetricsAvailable condition, added to `update`."""
        if ctx.stop.gpu_idle is None:
            return
        if error is not None:
            state, reason, message = "False", error[0], error[1]
        elif window is None:
            state, reason, message = "False", "NoDcgmSeries", "no dcgm-exporter series for the job's pods: GPU idle is unknown"
        else:
            state, reason, message = "True", "SeriesFound", f"utilisation known for {window.covered_seconds:.0f}s"
        update["conditions"] = set_condition(update.get("conditions", ctx.status.conditions), GPU_METRICS_AVAILABLE,
                                             state, reason, message, now, generation)

    def _cohort_view(self, ctx: JobContext, metric_track: Optional[MetricTrack]) -> Optional[CohortView]:
        cohort = ctx.stop.cohort
        if cohort is None or metric_track is None or metric_track.last_step is None:
            return None
        selector = cohort.selector.model_dump(by_alias=True)
        step = metric_track.last_step
        peers = []
        for (ns, name), body in self.registry.trainingjobs.items():
            if ns != ctx.key[0] or name == ctx.key[1]:
                continue
            if not selector_matches(selector, (body.get("metadata") or {}).get("labels") or {}):
                continue
            value = best_at(self._current_status(body).metric, step)
            if value is not None:
                peers.append(value)
        return CohortView(step, tuple(peers))

    # --- applying a plan ------------------------------------------------------------------------

    async def _apply(self, ctx: JobContext, plan: Plan, now: float, report: CycleReport) -> None:
        status = plan.status
        try:
            # One slot of the API concurrency for all the plan's actions: a suspension must not
            # queue behind the status writes that arrived while the stop request went out.
            async with self._limit:
                for action in plan.actions:
                    status = await self._act(ctx, action, status, report)
        except ApiError as exc:
            log.warning("%s/%s: %s; retrying next cycle", ctx.key[0], ctx.key[1], exc)
            report.errors.append(str(exc))
            return  # the transition is not recorded, so the next cycle plans it again
        if not await self._write(ctx.body, status, now, report):
            return  # events follow a recorded transition, never precede it
        self._count_transition(ctx, status)
        for action in plan.actions:
            if isinstance(action, Event):
                try:
                    async with self._limit:
                        await self.kube.post_event(ctx.body, action.type, action.reason, action.message)
                except ApiError as exc:
                    report.errors.append(str(exc))

    async def _act(self, ctx: JobContext, action: Any, status: api.TrainingJobStatus, report: CycleReport
                   ) -> api.TrainingJobStatus:
        assert ctx.workload is not None
        if isinstance(action, CreateWorkload):
            body = build_job(ctx.body, ctx.spec, self.settings.sidecar)
            try:
                await self.kube.create_job(ctx.key[0], body)
            except ApiError as exc:
                if exc.code in REJECTED:  # the spec builds a Job this server refuses: the spec is invalid
                    self._specs[(ctx.uid, ctx.generation)] = f"the API server rejected the Job: {exc.message}"
                    return status.model_copy(update={"conditions": set_condition(
                        status.conditions, SPEC_VALID, "False", "InvalidSpec",
                        self._specs[(ctx.uid, ctx.generation)], rfc3339_at(self.clock()), ctx.generation)})
                if exc.code != 409:  # AlreadyExists: a restart after creating it; fine
                    raise
            report.actions += 1
            return status.model_copy(update={"workload": f"Job/{body['metadata']['name']}",
                                             "selector": f"{LABEL}={label_value(ctx.key[1])}"})
        if isinstance(action, RequestStop):
            report.actions += await ctx.workload.request_stop(action.reason)
        elif isinstance(action, Suspend):
            await ctx.workload.suspend(ctx.state.kueue_uid)
            report.actions += 1
        elif isinstance(action, Resume):
            await ctx.workload.resume(action.replicas, child=ctx.spec.template is not None, kueue_uid=ctx.state.kueue_uid)
            report.actions += 1
        elif isinstance(action, ShareSpec):
            report.actions += await ctx.workload.share_spec(action.text)
        return status

    def _count_transition(self, ctx: JobContext, status: api.TrainingJobStatus) -> None:
        if status.would_stop is not None and ctx.status.would_stop is None:
            STOPS.labels(reason=str(status.would_stop.reason), dry_run="true").inc()
        if status.phase == ctx.status.phase:
            return
        if status.phase == api.Phase.STOPPING.value and status.reason:
            STOPS.labels(reason=str(status.reason), dry_run="false").inc()
        if status.phase in (api.Phase.STOPPED.value, api.Phase.SUCCEEDED.value) and status.gpu_hours_saved:
            GPU_HOURS_SAVED.inc(status.gpu_hours_saved)

    async def _write(self, body: dict[str, Any], status: api.TrainingJobStatus, now: float, report: CycleReport,
                     force: bool = False) -> bool:
        """Write the status if it changed and is due; False if the write failed."""
        return not self._due(body, status, now, force) or await self._patch(body, status, now, report)

    def _due(self, body: dict[str, Any], status: api.TrainingJobStatus, now: float, force: bool = False) -> bool:
        """Whether to write the status now: not when the API already has it, nor when only
        progress moved since the last write, less than status_interval ago."""
        uid = body["metadata"].get("uid", "")
        memory = self.memory.get(uid)
        if memory is None:  # first sight since start or leadership: compare with the API's copy
            if status.model_dump(by_alias=True, mode="json") == (body.get("status") or {}):
                self.memory[uid] = Memory(status, status, now)
                return False
            return True
        if _is_transition(memory.written, status):
            return True  # the status differs from the written one in more than progress
        # Only progress moved (the usual case): the full comparison waits until a write may go.
        if (force or now - memory.written_at >= self.settings.status_interval) and status != memory.written:
            return True
        memory.status = status
        return False

    async def _patch(self, body: dict[str, Any], status: api.TrainingJobStatus, now: float, report: CycleReport) -> bool:
        """Merge-patch the status subresource (nulls clear fields). The JSON is made only once
        a write may go: with thousands of writes due, their bodies do not all wait in memory."""
        meta = body["metadata"]
        try:
            async with self._limit:
                await self.kube.patch_status(meta["namespace"], meta["name"], status.model_dump(by_alias=True, mode="json"))
        except ApiError as exc:
            report.errors.append(str(exc))
            return False
        report.writes += 1
        self.memory[meta.get("uid", "")] = Memory(status, status, now)
        return True

    async def _record(self, ctx: JobContext, status: api.TrainingJobStatus, now: float, report: CycleReport) -> None:
        """A plan without actions: only its status to write."""
        if await self._patch(ctx.body, status, now, report):
            self._count_transition(ctx, status)
            self.memory[ctx.uid].steady = (ctx.generation, ctx.state)

    def _steady(self, ctx: JobContext, memory: Memory, summaries: dict[tuple[str, str], SidecarTrack],
                metrics_error: Optional[tuple[str, str]], now: float) -> bool:
        """Whether nothing the job's plan depends on moved since a plan that asked for nothing:
        same generation and workload state, no new report, no budget within reach, no progress
        write due. Its plan would be the same, so it is not made; the time in between is
        accounted at the next plan (account() adds everything since lastEvaluationTime)."""
        status = memory.status
        if memory.steady != (ctx.generation, ctx.state) or status.phase != RUNNING:
            return False
        if now - memory.written_at >= self.settings.status_interval:
            return False  # a progress write is due
        stop = ctx.stop
        if stop.gpu_idle is not None or stop.cohort is not None or ctx.spec.metrics.queries:
            return False  # GPU samples and peers' values move on their own
        rule = ctx.rule
        if rule is not None:
            metric, summary = status.metric, summaries.get(ctx.key)
            if metrics_error is not None or metric is None or summary is None or metric.name != rule.name \
                    or (summary.reports, summary.spec_key) != (metric.sidecar_reports, metric.spec_key):
                return False  # news, or no metric to compare with: checked first, as the cheapest
            if not any(c.type == METRICS_AVAILABLE and c.status == "True" for c in status.conditions):
                return False
        return not _budget_within_reach(stop, status, ctx.state.gpus, now, 2 * self.settings.interval)

    def _forget_gone(self) -> None:
        """Deleted jobs and superseded generations must not stay in memory forever."""
        live = {(b["metadata"].get("uid", ""), int(b["metadata"].get("generation") or 1))
                for b in self.registry.trainingjobs.values()}
        uids = {uid for uid, _ in live}
        for uid in [u for u in self.memory if u not in uids]:
            del self.memory[uid]
        self.tracks.forget(keep=uids)
        for key in [k for k in self._specs if k not in live]:
            del self._specs[key]

    def _export_phases(self) -> None:
        counts: dict[str, int] = {p.value: 0 for p in api.Phase}
        METRICS_MISSING.clear()
        for (namespace, name), body in self.registry.trainingjobs.items():
            status = self._current_status(body)
            counts[status.phase] = counts.get(status.phase, 0) + 1
            if status.phase != api.Phase.RUNNING.value:
                continue
            for c in status.conditions:
                if c.type in (METRICS_AVAILABLE, GPU_METRICS_AVAILABLE) and c.status == "False":
                    METRICS_MISSING.labels(namespace=namespace, trainingjob=name, condition=c.type, reason=c.reason).set(1)
        for phase, count in counts.items():
            JOBS.labels(phase=phase).set(count)


def _has_news(ctx: JobContext, reports: float) -> bool:
    """Whether the sidecar's report counter moved from the one recorded in status.metric."""
    metric = ctx.status.metric
    return metric is None or metric.name != ctx.rule.name or metric.sidecar_reports != reports \
        or metric.spec_key != ctx.spec_key  # type: ignore[union-attr]


def _budget_within_reach(stop: api.StopSpec, status: api.TrainingJobStatus, gpus: int, now: float, margin: float) -> bool:
    """Whether maxDuration or maxGpuHours could be reached by `margin` seconds from now."""
    last = parse_rfc3339(status.last_evaluation_time)
    if last is None:
        return True
    ahead = now - last.timestamp() + margin
    if stop.max_duration is not None and status.running_seconds + ahead >= parse_duration(stop.max_duration):
        return True
    return stop.max_gpu_hours is not None and status.gpu_hours + ahead * gpus / 3600.0 >= stop.max_gpu_hours


def _is_transition(before: api.TrainingJobStatus, after: api.TrainingJobStatus) -> bool:
    """Whether more than progress changed. Condition messages count reports and seconds, so
    they change every cycle: a condition changes when anything but its message does.
    (Run for every job with news each cycle: one C-level tuple comparison in the usual case.)"""
    if _transition_fields(before.__dict__) != _transition_fields(after.__dict__):
        return True
    old, new = before.conditions, after.conditions
    return old is not new and [_condition_key(c.__dict__) for c in old] != [_condition_key(c.__dict__) for c in new]



async def run_forever(evaluator: Evaluator, interval: float, is_leader: Callable[[], bool],
                      on_pass: Callable[[], None] = lambda: None) -> None:
    """Start a cycle every `interval` while leader (back to back if one takes longer). A watch
    event starts the next cycle early: a second after it arrives, or after the cycle it arrived
    during ends, whichever is later. `on_pass` is called after each pass, led or not (liveness)."""
    loop = asyncio.get_running_loop()
    was_leader = False
    while True:
        started = loop.time()
        leading = is_leader()
        if leading != was_leader:
            evaluator.forget()
        was_leader = leading
        # Cleared before the cycle, not after: a watch event that arrives while a cycle runs
        # (a new generation, a child Job's change) must wake the next one, not wait `interval`.
        evaluator.registry.changed.clear()
        if leading:
            try:
                await evaluator.cycle()
            except Exception:  # never let one bad cycle end the loop
                log.exception("evaluation cycle failed")
        on_pass()
        # Timed from the cycle's start: a long cycle (many status writes due) must not add its
        # length to the time until the next one, and so to the decision latency.
        try:
            await asyncio.wait_for(evaluator.registry.changed.wait(), timeout=max(0.0, started + interval - loop.time()))
            await asyncio.sleep(1.0)
        except asyncio.TimeoutError:
            pass
