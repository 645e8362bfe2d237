"""What a cycle knows of each job (JobContext), what it read (Metrics, Gpu) and counts (CycleReport). Pure."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, NamedTuple, Optional

from plateau import api
from plateau.engine.history import MetricSpec, metric_spec_for
from plateau.engine.presets import resolve_metric_rule
from plateau.engine.rules import GpuWindow
from plateau.engine.stopflow import WorkloadState
from plateau.prometheus.summaries import SidecarTrack

if TYPE_CHECKING:
    from plateau.controller.workloads import Workload

Key = tuple[str, str]  # (namespace, name)
Failure = tuple[str, str]  # a read's (reason, message), for the condition that says it is missing
PENDING = api.Phase.PENDING.value
RUNNING = api.Phase.RUNNING.value


@dataclass
class CycleReport:
    """What one cycle did: for the log, the tests and the benchmark."""

    jobs: int = 0
    queries: int = 0
    writes: int = 0
    actions: int = 0
    steady: int = 0  # jobs with nothing new, not planned this cycle
    gpu_hours: float = 0.0  # GPU-hours accounted this cycle, added to the counter once
    errors: list[str] = field(default_factory=list)


@dataclass
class JobContext:
    """One job as this cycle sees it: its object, parsed spec, status and workload."""

    body: dict[str, Any]
    spec: api.TrainingJobSpec
    stop: api.StopSpec
    status: api.TrainingJobStatus
    workload: Optional[Workload] = None
    state: WorkloadState = WorkloadState(exists=False)
    query_error: Optional[Failure] = None  # its custom query's own Prometheus error, this cycle
    # Read several times per job and cycle: worked out once.
    key: Key = field(init=False)  # (namespace, name)
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


class Metrics(NamedTuple):
    """Per job, the track of its monitored metric; the error that cost every job its read; its pods."""

    tracks: dict[Key, SidecarTrack]
    error: Optional[Failure]
    pods: dict[Key, set[str]]


class Gpu(NamedTuple):
    """Per gpuIdle job, its GPU window; the error that made every window unknown."""

    windows: dict[Key, GpuWindow]
    error: Optional[Failure]


# Receives, as each part of the metrics arrives, the jobs to plan at once and the part's tracks.
OnPart = Callable[[list[JobContext], dict[Key, SidecarTrack]], None]
