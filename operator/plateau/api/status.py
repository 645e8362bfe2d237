"""The status the operator (or `plateau run`) writes: the phase, why the job stopped
(`Reason`), the standard conditions, the monitored metric with the engine's bookkeeping
(`MetricSummary`) and what a dry run would have done (`WouldStop`)."""

from __future__ import annotations

from enum import Enum
from typing import Annotated, Literal, Optional

from pydantic import Field

from plateau.api.base import Model


class Phase(str, Enum):
    PENDING = "Pending"
    RUNNING = "Running"
    STOPPING = "Stopping"
    STOPPED = "Stopped"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"


class Reason(str, Enum):
    """Why a job stopped (or would stop). Machine-readable; shown in `kubectl get tj`."""

    PLATEAU = "Plateau"
    CONVERGED = "Converged"  # the forecast rule: little gain left within the horizon
    TARGET_REACHED = "TargetReached"
    DIVERGED = "Diverged"
    NOT_FINITE = "NotFinite"
    DEADLINE_EXCEEDED = "DeadlineExceeded"
    BUDGET_EXHAUSTED = "BudgetExhausted"
    GPU_IDLE = "GpuIdle"
    COHORT_UNDERPERFORMING = "CohortUnderperforming"
    MANUAL = "Manual"
    COMPLETED = "Completed"
    WORKLOAD_FAILED = "WorkloadFailed"
    WORKLOAD_DELETED = "WorkloadDeleted"
    SIDECAR_UNSUPPORTED = "SidecarUnsupported"
    INVALID_SPEC = "InvalidSpec"


class Condition(Model):
    """A standard Kubernetes condition (metav1.Condition)."""

    type: str = Field(description="Ready, MetricsAvailable, GpuMetricsAvailable, SpecValid, ...")
    status: Literal["True", "False", "Unknown"] = Field(description="True, False or Unknown.")
    reason: str = Field(description="CamelCase reason for the last transition.")
    message: str = Field(default="", description="Human-readable details.")
    last_transition_time: str = Field(description="When status last changed (RFC 3339).")
    observed_generation: Optional[int] = Field(
        default=None, description="The spec generation the condition was computed for."
    )


class MetricSummary(Model):
    """The monitored metric, and the engine's patience bookkeeping (kept across restarts)."""

    name: str = Field(description="The metric's name.")
    last: Optional[float] = Field(default=None, description="The last reported value.")
    last_step: Optional[int] = Field(default=None, description="Step of the last report.")
    best: Optional[float] = Field(default=None, description="The best finite value so far.")
    best_step: Optional[int] = Field(default=None, description="Step of the best value.")
    reference: Optional[float] = Field(
        default=None,
        description="The (smoothed) value improvements are measured against for patience.",
    )
    smoothed: Optional[float] = Field(default=None, description="The smoothed metric, if smoothing is on.")
    first: Optional[float] = Field(
        default=None, description="The first finite value: where minDelta.progress measures progress from."
    )
    since_improvement: int = Field(
        default=0, description="Evaluations since the last improvement: the patience counter."
    )
    non_finite: int = Field(default=0, description="NaN or infinite values seen.")
    regime_evaluations: Optional[int] = Field(
        default=None, description="Finite values since the last learning-rate drop (with a forecast rule).")
    forecast_level: Optional[float] = Field(default=None, description="The forecast value at the horizon.")
    forecast_level_sd: Optional[float] = Field(default=None, description="Its standard deviation.")
    forecast_gain: Optional[float] = Field(
        default=None, description="The forecast improvement from now to the horizon (positive: better).")
    forecast_gain_sd: Optional[float] = Field(default=None, description="Its standard deviation.")
    drop_step: Optional[int] = Field(default=None, description="Step of the last learning-rate drop seen.")
    drop_gap: Optional[int] = Field(default=None, description="Steps between the last two learning-rate drops.")
    resumes: int = Field(
        default=0, description="Reports whose step went back (resumes from a checkpoint); their purged evaluations left the track."
    )
    sidecar_reports: int = Field(
        default=0, description="The sidecar's report counter at the last read, to find news."
    )
    spec_key: Optional[int] = Field(
        default=None, description="Key of the metric stop spec the sidecar folded the track under."
    )
    best_history: list[Annotated[list[float], Field(min_length=2, max_length=2)]] = Field(
        default_factory=list,
        max_length=64,
        description="[step, best] at the steps where the best value improved (thinned), for cohort rules.",
    )


class WouldStop(Model):
    """What a dry run would have done."""

    step: Optional[int] = Field(default=None, description="Step at which it would have stopped.")
    time: str = Field(description="When (RFC 3339).")
    reason: Reason = Field(description="Why.")
    message: str = Field(default="", description="The evidence.")
    gpu_hours_saved: Optional[float] = Field(
        default=None,
        description="GPU-hours the stop would have saved, where a budget or deadline bounds the run.",
    )


class TrainingJobStatus(Model):
    """Observed state, written by the operator (or `plateau run`)."""

    phase: Phase = Field(default=Phase.PENDING, description="Pending, Running, Stopping, Stopped, Succeeded or Failed.")
    reason: Optional[Reason] = Field(default=None, description="Why the job stopped or ended.")
    message: Optional[str] = Field(default=None, description="The evidence behind the reason.")
    start_time: Optional[str] = Field(default=None, description="When the workload started running.")
    stop_time: Optional[str] = Field(default=None, description="When the job stopped or ended.")
    stop_requested_time: Optional[str] = Field(
        default=None, description="When the stop request reached the pods (start of gracePeriod)."
    )
    observed_generation: Optional[int] = Field(
        default=None, description="The spec generation this status reflects."
    )
    last_evaluation_time: Optional[str] = Field(
        default=None, description="When the operator last evaluated the job (accounts running time)."
    )
    conditions: list[Condition] = Field(default_factory=list, description="Standard conditions.")
    metric: Optional[MetricSummary] = Field(default=None, description="The monitored metric.")
    evaluations: int = Field(default=0, description="Evaluations (metric reports) seen.")
    running_seconds: float = Field(
        default=0.0, description="Accumulated running time; what maxDuration is measured against."
    )
    gpu_hours: float = Field(default=0.0, description="GPU-hours used so far.")
    gpu_hours_saved: Optional[float] = Field(
        default=None, description="GPU-hours the stop saved against the budget or deadline."
    )
    replicas: int = Field(default=0, description="Trainer pods currently requested (the scale subresource).")
    replicas_before_stop: Optional[int] = Field(
        default=None, description="A workloadRef stopped through /scale: the replicas it had, restored on resume."
    )
    selector: Optional[str] = Field(default=None, description="Label selector of the trainer pods.")
    workload: Optional[str] = Field(default=None, description="kind/name of the child workload.")
    would_stop: Optional[WouldStop] = Field(default=None, description="For a dry run: what a stop would have been.")
