"""The evaluation loop: one cycle evaluates every TrainingJob with a fixed number of queries.

A cycle reads the watched objects from the registry (kept current by kopf's watch), fetches
every running job's metrics and GPU utilisation in batched PromQL, runs the pure engine and
state machine per job, then carries out the plans: workload actions first, then the status
write, then Events. Status changes that only move metrics are written at most every
`status_interval` per job; phase changes are written at once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Awaitable, Callable, NamedTuple, Optional

from plateau import api
from plateau.controller.config import Settings
from plateau.controller.heap import FrozenHeap
from plateau.controller.kube import Kube
from plateau.controller.loop import act, assemble, export, fetch, gather, memory, plan
from plateau.controller.loop.context import CycleReport, JobContext, Key, Metrics, OnPart
from plateau.controller.loop.memory import Memory
from plateau.controller.loop.registry import Registry
from plateau.controller.metrics import clear_job_gauges
from plateau.controller.trackread import TrackReads
from plateau.prometheus import promql
from plateau.prometheus.client import PrometheusClient
from plateau.prometheus.summaries import SidecarTrack

log = logging.getLogger("plateau.controller.loop")


class Stages(NamedTuple):
    """The stages a cycle reaches through its Loop, so that the benchmark can time them and
    put its naive fetch in (benchmarks/operator_bench.py), and tests can watch them."""

    fetch_metrics: Callable[[Loop, list[JobContext], CycleReport, OnPart], Awaitable[Metrics]] = fetch.metrics
    query_sidecar: Callable[[Loop, str, CycleReport], Awaitable[assemble.Answer]] = fetch.query_sidecar
    assemble: Callable[[assemble.Answer, set[tuple[str, str, str]], Optional[dict[Key, set[str]]]],
                       dict[Key, SidecarTrack]] = assemble.tracks
    plan_job: plan.PlanJob = plan.job


class Loop:
    """What the loop keeps from cycle to cycle: its clients, and what this leader remembers."""

    def __init__(self, settings: Settings, registry: Registry, kube: Kube, prometheus: PrometheusClient,
                 clock: Callable[[], float] = time.time, heap: Optional[FrozenHeap] = None) -> None:
        self.settings = settings
        self.registry = registry
        self.kube = kube
        self.prometheus = prometheus
        self.clock = clock
        self.heap = heap
        self.stages = Stages()
        self.memory: dict[str, Memory] = {}
        self.specs: dict[tuple[str, int], api.TrainingJobSpec | str] = {}  # parsed, by (uid, generation)
        self.tracks = TrackReads()
        self.limit = asyncio.Semaphore(settings.concurrency)  # of API requests in flight
        self.query_limit = asyncio.Semaphore(settings.query_concurrency)  # of fetch.query's in flight
        self.decode_sidecar = promql.SidecarDecoder(settings.prometheus_namespace_label)
        self.fetch_all = False  # most jobs had news in the last cycle: skip the counter query

    def forget(self) -> None:
        """Drop what this replica remembers; after a leadership change the API is the truth."""
        self.memory.clear()
        self.tracks.forget()
        self.fetch_all = False
        clear_job_gauges()


async def cycle(loop: Loop) -> CycleReport:
    """One evaluation of every TrainingJob. Plans are pure and cheap; only jobs with actions or
    a due status write await the API. Jobs whose plan needs nothing but their metric are planned
    as their part of the metrics arrives, while Prometheus still answers for the others."""
    started, now, report = time.perf_counter(), loop.clock(), CycleReport()
    # 1. The jobs, with their workloads' states.
    jobs = await gather.jobs(loop, now, report)
    # 2. Each plan is carried out as it is made: its actions start at once; status writes wait
    #    until every job is planned, and queue behind them.
    shell = act.Shell(loop, now, report)
    planner = plan.Planner(loop.memory, loop.tracks, loop.registry.trainingjobs, loop.settings, now, report,
                           on_plan=shell.start, plan_job=loop.stages.plan_job)
    try:
        # 3. The metrics, in parts; the jobs that need nothing else are planned as theirs arrives.
        metrics = await loop.stages.fetch_metrics(loop, jobs, report, planner.early)
        # 4. The GPU windows, then the other jobs' plans.
        gpu = await fetch.gpu(loop, jobs, metrics.pods, now, report)
        planner.rest(jobs, metrics, gpu)
    finally:  # 5. The plans made so far are carried out even if the rest of the cycle failed.
        await shell.finish()
    # 6. Forget the jobs that are gone; export the figures.
    memory.forget_gone(loop)
    export.cycle(loop, report, started)
    return report


async def run_forever(loop: Loop, interval: float, is_leader: Callable[[], bool],
                      on_pass: Callable[[], None] = lambda: None) -> None:
    """Start a cycle every `interval` while leader (back to back if one takes longer). A watch
    event starts the next cycle early: a second after it arrives, or after the cycle it arrived
    during ends, whichever is later. `on_pass` is called after each pass, led or not, but not
    after a cycle that raised: it evaluated nothing, and liveness must say so once they all do."""
    events = asyncio.get_running_loop()
    was_leader = False
    failure: Optional[tuple[type, str]] = None  # what the last cycle raised, if it did
    while True:
        started = events.time()
        leading = is_leader()
        if leading != was_leader:
            loop.forget()
            failure = None
        was_leader = leading
        # Cleared before the cycle, not after: a watch event that arrives while a cycle runs
        # (a new generation, a child Job's change) must wake the next one, not wait `interval`.
        loop.registry.changed.clear()
        if leading:
            try:
                await cycle(loop)
                failure = None
            except Exception as exc:  # never let one bad cycle end the loop
                # The next cycles most likely fail alike: the traceback once per distinct error.
                if (type(exc), str(exc)) != failure:
                    log.exception("evaluation cycle failed (logged once while cycles fail alike)")
                failure = (type(exc), str(exc))
        if failure is None:  # a standby's pass, or a cycle that ended
            on_pass()
        # Timed from the cycle's start: a long cycle (many status writes due) must not add its
        # length to the time until the next one, and so to the decision latency.
        try:
            await asyncio.wait_for(loop.registry.changed.wait(), timeout=max(0.0, started + interval - events.time()))
            await asyncio.sleep(1.0)
        except asyncio.TimeoutError:
            pass
