"""Reading Prometheus for a cycle: the sidecars' tracks in concurrent parts, workloadRefs' own queries, GPU windows.

Queries whose number grows with the spec (one per custom query, one per distinct gpuIdle
window) run concurrently, at most `query_concurrency` at a time: one after the other, 200
windows at 50 ms each would hold the cycle for 20 s.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Awaitable, Iterable
from typing import TYPE_CHECKING, Optional, TypeVar

from plateau.api.durations import format_duration
from plateau.controller.loop import assemble, export, gather
from plateau.controller.loop.context import RUNNING, CycleReport, Gpu, JobContext, Key, Metrics, OnPart
from plateau.engine.rules import GpuWindow
from plateau.prometheus import promql
from plateau.prometheus.client import PrometheusError, Sample
from plateau.prometheus.summaries import TRACK_READ_SERIES, SidecarTrack
from plateau_sidecar import protocol

if TYPE_CHECKING:
    from plateau.controller.loop.cycle import Loop

log = logging.getLogger("plateau.controller.loop")
T = TypeVar("T")

# The moved jobs' series are fetched in this many concurrent queries (promql.name_parts).
FETCH_PARTS = 4


# A custom query answers one series: a larger answer (label_join can grow one label to any
# size) is refused before it is decoded, every cycle, into the operator's memory.
CUSTOM_ANSWER_BYTES = 2**20


async def query(loop: Loop, promql_text: str, report: CycleReport, max_bytes: Optional[int] = None) -> list[Sample]:
    report.queries += 1
    async with loop.query_limit:
        return await loop.prometheus.query(promql_text, max_bytes=max_bytes)


async def _all(calls: Iterable[Awaitable[T]]) -> list[T]:
    """Every call's result, the calls run concurrently. At the first failure the others are
    cancelled and it is raised (a bug before a PrometheusError): a Prometheus that times out is
    not asked every other query first. Whatever ends the wait, even a cancel of the cycle, no
    call is left running behind it."""
    tasks = [asyncio.ensure_future(call) for call in calls]
    try:
        if tasks:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
    finally:
        for task in tasks:
            task.cancel()  # a task already done ignores it
        await asyncio.gather(*tasks, return_exceptions=True)
    failures = [e for task in tasks if not task.cancelled() and (e := task.exception()) is not None]
    if failures:
        raise next((e for e in failures if not isinstance(e, PrometheusError)), failures[0])
    return [task.result() for task in tasks]


async def _each(calls: Iterable[Awaitable[T]]) -> list[T | PrometheusError]:
    """Await every call concurrently; a PrometheusError is its call's result, any other
    failure is raised once every call has ended (none is left running behind the cycle)."""
    results = await asyncio.gather(*calls, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException) and not isinstance(result, PrometheusError):
            raise result
    return results  # type: ignore[return-value]


async def query_sidecar(loop: Loop, promql_text: str, report: CycleReport) -> assemble.Answer:
    """A `promql.sidecar_query`: (labels, value) per series, with only the labels read here."""
    report.queries += 1
    return await loop.prometheus.query(promql_text, decode=loop.decode_sidecar)


async def metrics(loop: Loop, jobs: list[JobContext], report: CycleReport, on_part: OnPart) -> Metrics:
    """Per job, the sidecar summary of its monitored metric; and each job's pods."""
    watched = [c for c in jobs if c.status.phase == RUNNING and c.rule]
    sidecar_jobs = [c for c in watched if not c.spec.metrics.queries]
    summaries: dict[Key, SidecarTrack] = {}
    pods: dict[Key, set[str]] = defaultdict(set)
    if not watched:
        return Metrics(summaries, None, pods)
    try:
        if sidecar_jobs:
            summaries, pods = await sidecar_tracks(loop, sidecar_jobs, report, on_part)
    except PrometheusError as exc:
        export.prometheus_error(exc, report)
        return Metrics({}, (exc.reason, str(exc)), pods)
    custom = [c for c in watched if c.spec.metrics.queries]
    for ctx, read in zip(custom, await _each(custom_metric(loop, c, report) for c in custom), strict=True):
        if isinstance(read, PrometheusError):  # one team's query fails alone, not every job's read
            export.prometheus_error(read, report)
            ctx.query_error = (read.reason, str(read))
        elif read is not None:
            summaries[ctx.key] = read
    return Metrics(summaries, None, pods)


async def sidecar_tracks(loop: Loop, jobs: list[JobContext], report: CycleReport, on_part: OnPart
                         ) -> tuple[dict[Key, SidecarTrack], dict[Key, set[str]]]:
    """At most 1 + FETCH_PARTS queries whatever the number of jobs: every job's report
    counter, then the series of the jobs whose counter moved (all jobs, unfiltered, when
    most did), in concurrent parts. A job whose counter stands where the operator last read
    it has nothing new to fold. When most jobs had news in the last cycle, the counter
    query is skipped: the parts fetch every job's series, and name the pods.

    Each part's jobs that need nothing else are handed to `on_part` as the part arrives."""
    names = {c.rule.name for c in jobs}  # type: ignore[union-attr]
    summaries: dict[Key, SidecarTrack] = {}
    pods: dict[Key, set[str]] = defaultdict(set)
    fetch_all = loop.fetch_all
    if fetch_all:
        moved, only = jobs, None
    else:
        counters = await loop.stages.query_sidecar(loop, promql.sidecar_query(
            {c.key[0] for c in jobs}, names, loop.settings.prometheus_namespace_label,
            series=(protocol.SERIES_REPORTS,)), report)
        moved = assemble.moved(jobs, counters, pods, summaries)
        only = None if 2 * len(moved) > len(jobs) else {c.key[1] for c in moved}
    if moved:
        summaries.update(await _parts(loop, moved, names, only, pods if fetch_all else None, report, on_part))
    news = sum(1 for c in jobs if c.key in summaries and assemble.has_news(c, summaries[c.key].reports))
    loop.fetch_all = 2 * news > len(jobs)
    return summaries, pods


async def _parts(loop: Loop, moved: list[JobContext], names: set[str], only: Optional[set[str]],
                 pods: Optional[dict[Key, set[str]]], report: CycleReport, on_part: OnPart) -> dict[Key, SidecarTrack]:
    """The moved jobs' series in FETCH_PARTS concurrent queries; their pods into `pods`, if given."""
    wanted = {(c.key[0], c.key[1], c.rule.name) for c in moved}  # type: ignore[union-attr]
    namespaces = {c.key[0] for c in moved}
    # GPU windows and peers' values come later in the cycle.
    early = {c.key: c for c in moved if c.stop.gpu_idle is None and c.stop.cohort is None}

    async def part(name: str) -> dict[Key, SidecarTrack]:
        text = promql.sidecar_query(namespaces, names, loop.settings.prometheus_namespace_label,
                                    series=TRACK_READ_SERIES, trainingjobs=only, part=name)
        fresh = loop.stages.assemble(await loop.stages.query_sidecar(loop, text, report), wanted, pods)
        on_part([early[k] for k in fresh if k in early], fresh)
        return fresh

    # Concurrent parts: Prometheus evaluates each on a core of its own, and each answer is
    # decoded and planned here while Prometheus still works on the others. Every part is
    # awaited before a failure is raised: none may plan its jobs after the cycle has planned
    # the rest.
    results = await asyncio.gather(*(part(p) for p in promql.name_parts(FETCH_PARTS)), return_exceptions=True)
    summaries: dict[Key, SidecarTrack] = {}
    for result in results:
        if isinstance(result, BaseException):
            raise result
        summaries.update(result)
    return summaries


async def custom_metric(loop: Loop, ctx: JobContext, report: CycleReport) -> Optional[SidecarTrack]:
    """A user's PromQL for workloadRef jobs, folded by assemble.custom_track."""
    rule = ctx.rule
    template = ctx.spec.metrics.queries.get(rule.name) if rule else None
    if template is None or rule is None:
        return None
    settings = loop.settings
    confine_label = None if settings.custom_queries == "unconfined" else settings.prometheus_namespace_label
    try:
        text = promql.custom_query(template, ctx.key[0], ctx.key[1], confine_label)
    except ValueError as exc:  # the spec's validation rejects such templates first
        log.warning("custom query of %s/%s not run: %s", *ctx.key, exc)
        return None
    return assemble.custom_track(ctx, await query(loop, text, report, CUSTOM_ANSWER_BYTES), loop.tracks)


async def gpu(loop: Loop, jobs: list[JobContext], pods: dict[Key, set[str]], now: float, report: CycleReport) -> Gpu:
    """Per gpuIdle job, the busiest of its pods' GPUs over its window, and how far back that is known."""
    idle_jobs = [c for c in jobs if c.stop.gpu_idle and c.status.phase == RUNNING]
    windows: dict[str, list[JobContext]] = defaultdict(list)
    for ctx in idle_jobs:
        windows[format_duration(ctx.stop.gpu_idle.for_.seconds)].append(ctx)  # type: ignore[union-attr]
    # Sidecar series name the pods of jobs that report metrics; list the others (within loop.limit).
    unnamed = [c for c in idle_jobs if not pods.get(c.key) and c.workload is not None]
    for ctx, names in zip(unnamed, await _all(gather.pod_names(loop, c) for c in unnamed), strict=True):
        pods[ctx.key] |= names
    d = loop.settings.dcgm

    async def window_read(window: str, members: list[JobContext]) -> dict[Key, GpuWindow]:
        namespaces = {c.key[0] for c in members}
        highest, oldest = _per_pod(d, await query(loop, promql.gpu_window_query(d, namespaces, window), report))
        out: dict[Key, GpuWindow] = {}
        for ctx in members:
            job_pods = sorted((ctx.key[0], p) for p in pods.get(ctx.key, ()))
            keys = [k for k in job_pods if k in highest]
            if not keys:
                continue  # no GPU series for this job's pods: unknown, never idle
            covered = min(now - oldest.get(k, now) for k in keys)
            unseen = tuple(pod for namespace, pod in job_pods if (namespace, pod) not in highest)
            out[ctx.key] = GpuWindow(max(highest[k] for k in keys), max(0.0, covered), unseen)
        return out

    try:
        reads = await _all(window_read(w, members) for w, members in windows.items())
    except PrometheusError as exc:  # every window unknown: none is judged on part of the answers
        export.prometheus_error(exc, report)
        return Gpu({}, (exc.reason, str(exc)))
    return Gpu({key: window for read in reads for key, window in read.items()}, None)


def _per_pod(d: promql.DcgmConfig, answer: list[Sample]) -> tuple[dict[tuple[str, str], float], ...]:
    """A window query's answer split by read (promql.GPU_READS), each keyed by (namespace, pod)."""
    reads: dict[str, dict[tuple[str, str], float]] = {read: {} for read in promql.GPU_READS}
    for s in answer:
        per_pod = reads.get(s.labels.get(promql.GPU_READ_LABEL, ""))
        if per_pod is not None:
            per_pod[(s.labels.get(d.namespace_label, ""), s.labels.get(d.pod_label, ""))] = s.value
    return tuple(reads.values())
