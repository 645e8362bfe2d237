"""The loop's own figures for Prometheus: stops and GPU-hours counted, jobs by phase, missing metrics, cycle time."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from plateau import api
from plateau.controller.loop.context import CycleReport, JobContext
from plateau.controller.loop.memory import current_status
from plateau.controller.metrics import (
    CYCLE_SECONDS,
    GPU_HOURS_SAVED,
    GPU_HOURS_USED,
    JOBS,
    METRICS_MISSING,
    PROMETHEUS_ERRORS,
    STOPS,
)
from plateau.engine.status import GPU_METRICS_AVAILABLE, METRICS_AVAILABLE
from plateau.prometheus.promql import PrometheusError

if TYPE_CHECKING:
    from plateau.controller.loop.cycle import Loop


def transition(ctx: JobContext, status: api.TrainingJobStatus) -> None:
    """Count a recorded status's stop (or dry-run would-stop) and the GPU-hours a stop saved."""
    if status.would_stop is not None and ctx.status.would_stop is None:
        STOPS.labels(reason=str(status.would_stop.reason), dry_run="true").inc()
    if status.phase == ctx.status.phase:
        return
    if status.phase == api.Phase.STOPPING.value and status.reason:
        STOPS.labels(reason=str(status.reason), dry_run="false").inc()
    if status.phase in (api.Phase.STOPPED.value, api.Phase.SUCCEEDED.value) and status.gpu_hours_saved:
        GPU_HOURS_SAVED.inc(status.gpu_hours_saved)


def prometheus_error(exc: PrometheusError, report: CycleReport) -> None:
    PROMETHEUS_ERRORS.labels(reason=exc.reason).inc()
    report.errors.append(str(exc))


def cycle(loop: Loop, report: CycleReport, started: float) -> None:
    """What a finished cycle adds: its GPU-hours, every job's phase and missing metrics, its
    time since `started` (time.perf_counter)."""
    GPU_HOURS_USED.inc(report.gpu_hours)
    phases(loop)
    if loop.heap is not None:
        loop.heap.after_cycle()
    CYCLE_SECONDS.observe(time.perf_counter() - started)


def phases(loop: Loop) -> None:
    """Jobs by phase, and the running jobs whose metrics or GPU samples are missing, with why."""
    counts: dict[str, int] = {p.value: 0 for p in api.Phase}
    METRICS_MISSING.clear()
    for (namespace, name), body in loop.registry.trainingjobs.items():
        status = current_status(loop.memory, body)
        counts[status.phase] = counts.get(status.phase, 0) + 1
        if status.phase != api.Phase.RUNNING.value:
            continue
        for c in status.conditions:
            if c.type in (METRICS_AVAILABLE, GPU_METRICS_AVAILABLE) and c.status == "False":
                METRICS_MISSING.labels(namespace=namespace, trainingjob=name, condition=c.type, reason=c.reason).set(1)
    for phase, count in counts.items():
        JOBS.labels(phase=phase).set(count)

