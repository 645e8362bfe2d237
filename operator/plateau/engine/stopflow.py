"""The life of one TrainingJob, as a pure state machine: status in, status and actions out.

    Pending --a trainer pod Ready--> Running --decision.stop / replicas 0--> Stopping
    Stopping --trainer exited, or gracePeriod over--> Stopped | Succeeded   (suspend / scale 0)
    Running --workload finished by itself--> Succeeded | Failed
    Running | Stopping --workload deleted--> Stopped (WorkloadDeleted); a Pending workloadRef waits for it
    Stopped --spec edited (new generation) with replicas > 0--> Running      (resume)

The shell applies the actions and writes the status *before* posting Events, so an
operator killed at any point redoes only idempotent steps (annotate pods, suspend) and
never repeats a recorded transition.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from datetime import datetime, timezone
from typing import Any, NamedTuple, Optional, Union

from plateau.api import Phase, Reason, StopSpec, TrainingJobStatus
from plateau.engine.rules import Decision
from plateau.engine.status import (
    READY,
    TERMINAL_PHASES,
    STOP_REQUESTED,
    final_phase,
    parse_rfc3339,
    rfc3339,
    set_condition,
    would_stop,
)


SIDECAR_DROPPED = (
    "the API server dropped restartPolicy: Always from the plateau-sidecar init container, so its pods would "
    "hang in Init: native sidecars need Kubernetes 1.29 or newer, or the SidecarContainers feature gate on 1.28 "
    "(kube-apiserver and kubelet --feature-gates=SidecarContainers=true). The Job is suspended; "
    "delete and re-apply the TrainingJob once the gate is on"
)
WORKLOAD_NOT_FOUND = "WorkloadNotFound"  # a Ready=False reason while a workloadRef's target is missing

# Plain strings: status.phase is one, and an enum member's .value costs a descriptor call.
PENDING, RUNNING, STOPPING, STOPPED, SUCCEEDED, FAILED = (p.value for p in (
    Phase.PENDING, Phase.RUNNING, Phase.STOPPING, Phase.STOPPED, Phase.SUCCEEDED, Phase.FAILED))


@dataclass(frozen=True)
class Waiting:
    """Why pods that exist do not run yet, as their status says (Unschedulable, ImagePullBackOff, ...)."""

    reason: str
    message: str


@dataclass(frozen=True)
class WorkloadState:
    """What the workload adapter observed of the child or referenced workload."""

    exists: bool
    active: int = 0  # pods that exist, pending or running (as the Job controller counts them)
    running: int = 0  # pods whose trainer runs (Ready): only they use time and GPUs
    succeeded: bool = False  # finished by itself, successfully
    failed: bool = False
    suspended: bool = False  # suspended or scaled to zero
    gpus: int = 0  # GPUs held by the running pods
    message: str = ""
    waiting: Optional[Waiting] = None  # set when pods exist but none runs
    sidecar_dropped: bool = False  # the server dropped the sidecar's restartPolicy: its pods hang in Init
    scale_replicas: Optional[int] = None  # kinds stopped through /scale: the replicas asked for now
    kueue_uid: str = ""  # queued by Kueue (a queue-name label): the uid its Kueue Workload's owner has


@dataclass(frozen=True)
class CreateWorkload:
    pass


@dataclass(frozen=True)
class RequestStop:
    reason: str  # written to the pods' stop annotation, read by the trainer


@dataclass(frozen=True)
class Suspend:
    pass


@dataclass(frozen=True)
class ShareSpec:
    text: str  # the metric stop spec, written to the pods' spec annotation for their sidecars


@dataclass(frozen=True)
class Resume:
    replicas: int


@dataclass(frozen=True)
class Event:
    type: str  # Normal | Warning
    reason: str
    message: str


Action = Union[CreateWorkload, RequestStop, Suspend, Resume, ShareSpec, Event]


class Plan(NamedTuple):
    status: TrainingJobStatus
    actions: tuple[Action, ...]


class JobState(NamedTuple):
    generation: int
    replicas: int
    stop: StopSpec
    status: TrainingJobStatus
    workload: WorkloadState
    has_template: bool
    now: float  # seconds since the epoch


def account(job: JobState) -> TrainingJobStatus:
    """Add the time since the last evaluation to running time and GPU-hours, if trainers ran.
    A pod that waits (queued for GPUs, pulling its image, in Init) costs neither."""
    update = accounting(job)
    return job.status.model_copy(update=update) if update else job.status


def accounting(job: JobState) -> dict[str, Any]:
    """`account` as the status fields it changes, for callers that change more in one copy."""
    status = job.status
    if status.phase in TERMINAL_PHASES:
        return {}  # nothing runs any more: no writes for finished jobs
    now_text = rfc3339_at(job.now)
    last = parse_rfc3339(status.last_evaluation_time)
    if last is None or job.workload.running == 0 or status.phase not in (RUNNING, STOPPING):
        return {"last_evaluation_time": now_text}
    delta = max(0.0, job.now - last.timestamp())
    return {
        "last_evaluation_time": now_text,
        "running_seconds": status.running_seconds + delta,
        "gpu_hours": status.gpu_hours + delta * job.workload.gpus / 3600.0,
    }


@lru_cache(maxsize=16)
def rfc3339_at(seconds: float) -> str:
    """Cached: a cycle formats the same moment for every job, several times."""
    return rfc3339(datetime.fromtimestamp(seconds, tz=timezone.utc))


def _stopping(job: JobState, status: TrainingJobStatus, reason: str, message: str, now: str) -> Plan:
    # Scaled to 0 at the end, a /scale workload forgets its size: the status keeps it for a resume,
    # recorded before anything is scaled (the workload's own object is not ours to write).
    scaled = job.workload.scale_replicas
    status = status.model_copy(
        update={
            "replicas_before_stop": scaled if scaled else status.replicas_before_stop,
            "phase": STOPPING,
            "reason": reason,
            "message": message,
            "stop_requested_time": now,
            "observed_generation": job.generation,
            "conditions": set_condition(status.conditions, STOP_REQUESTED, "True", reason, message, now, job.generation),
        }
    )
    return Plan(status, (RequestStop(reason), Event("Normal", "StopRequested", f"{reason}: {message}")))


def _finish(job: JobState, status: TrainingJobStatus, reason: str, message: str, now: str, suspend: bool) -> Plan:
    phase = final_phase(reason).value
    status = status.model_copy(
        update={
            "phase": phase,
            "reason": reason,
            "message": message,
            "stop_time": now,
            "replicas": 0,
            "observed_generation": job.generation,
            "conditions": set_condition(status.conditions, READY, "False", reason, message, now, job.generation),
        }
    )
    kind = "Warning" if phase == FAILED else "Normal"
    actions: tuple[Action, ...] = (Suspend(),) if suspend else ()
    return Plan(status, (*actions, Event(kind, phase, f"{reason}: {message}")))


def _waiting(job: JobState, status: TrainingJobStatus, now: str) -> TrainingJobStatus:
    """A Pending job's status: Ready=False says why its pods do not run yet."""
    update: dict[str, Any] = {"observed_generation": job.generation, "replicas": job.replicas}
    why = job.workload.waiting
    if why is not None:
        update["conditions"] = set_condition(status.conditions, READY, "False", why.reason, why.message, now, job.generation)
    elif job.workload.active == 0 and any(c.type == READY for c in status.conditions):
        # the waiting pods are gone (the workload was suspended or its pods deleted)
        update["conditions"] = set_condition(status.conditions, READY, "False", "NoPods", "no trainer pod exists", now, job.generation)
    return status.model_copy(update=update)


def _stop_saving(decision: Optional[Decision]) -> dict[str, Optional[float]]:
    return {"gpu_hours_saved": decision.gpu_hours_saved} if decision and decision.gpu_hours_saved is not None else {}


def transition(job: JobState, decision: Optional[Decision]) -> Plan:
    """The next status and the actions that get there. `decision` is None when not evaluated."""
    status = job.status
    now = rfc3339_at(job.now)
    wl = job.workload
    phase = status.phase

    if phase in (SUCCEEDED, FAILED):
        return Plan(status, ())

    if phase == STOPPED:
        resumable = job.generation > (status.observed_generation or 0) and job.replicas > 0
        if not resumable:
            return Plan(status, ())
        metric = status.metric.model_copy(update={"since_improvement": 0}) if status.metric else None
        status = status.model_copy(
            update={
                "phase": RUNNING,
                "reason": None,
                "message": None,
                "stop_time": None,
                "stop_requested_time": None,
                "would_stop": None,
                "gpu_hours_saved": None,
                "metric": metric,
                "replicas": job.replicas,
                "replicas_before_stop": None,
                "observed_generation": job.generation,
                "last_evaluation_time": now,  # time spent stopped is not running time
                "conditions": set_condition(status.conditions, STOP_REQUESTED, "False", "Resumed", "", now, job.generation),
            }
        )
        replicas = job.replicas if job.has_template else (job.status.replicas_before_stop or job.replicas)
        return Plan(status, (Resume(replicas), Event("Normal", "Resumed", f"resumed with {replicas} replica(s)")))

    if not wl.exists:
        if job.has_template and phase == PENDING and status.workload is None:
            return Plan(status.model_copy(update={"observed_generation": job.generation}), (CreateWorkload(),))
        if not job.has_template and phase == PENDING:  # applied before its workload (GitOps order): wait
            return Plan(status.model_copy(update={
                "observed_generation": job.generation,
                "conditions": set_condition(status.conditions, READY, "False", WORKLOAD_NOT_FOUND,
                                            "waiting for the workload that workloadRef names to exist", now, job.generation),
            }), ())
        return _finish(job, status, Reason.WORKLOAD_DELETED.value, "the workload was deleted; Plateau does not recreate it", now, suspend=False)

    if wl.sidecar_dropped and phase in (PENDING, RUNNING):
        return _finish(job, status, Reason.SIDECAR_UNSUPPORTED.value, SIDECAR_DROPPED, now, suspend=True)

    if phase == STOPPING:
        requested = parse_rfc3339(status.stop_requested_time)
        grace = job.stop.grace_period.seconds
        exited = wl.active == 0 or wl.succeeded or wl.failed
        if exited or requested is None or job.now >= requested.timestamp() + grace:
            why = "the trainer exited" if exited else f"gracePeriod {job.stop.grace_period} is over"
            finished = wl.succeeded or wl.failed
            return _finish(job, status, status.reason or Reason.MANUAL.value, f"{status.message or ''} ({why})".strip(), now, suspend=not finished)
        return Plan(status, (RequestStop(status.reason or Reason.MANUAL.value),))  # idempotent: pods may be new

    if wl.succeeded:
        return _finish(job, status, Reason.COMPLETED.value, "the workload completed by itself", now, suspend=False)
    if wl.failed:
        return _finish(job, status, Reason.WORKLOAD_FAILED.value, wl.message or "the workload failed", now, suspend=False)

    if job.replicas == 0:
        return _stopping(job, status, Reason.MANUAL.value, "replicas set to 0", now)

    if phase == PENDING:
        if wl.running == 0:
            return Plan(_waiting(job, status, now), ())
        status = status.model_copy(
            update={
                "phase": RUNNING,
                "start_time": status.start_time or now,
                "replicas": job.replicas,
                "observed_generation": job.generation,
                "conditions": set_condition(status.conditions, READY, "True", "Running", "the trainer is running", now, job.generation),
            }
        )
        return Plan(status, (Event("Normal", "Running", "the trainer is running"),))

    if (status.observed_generation, status.replicas) != (job.generation, job.replicas):
        status = status.model_copy(update={"observed_generation": job.generation, "replicas": job.replicas})
    if decision is None or not decision.would_stop or decision.reason is None:
        return Plan(status, ())
    if not decision.stop:  # dry run: report once, act never
        if status.would_stop is not None:
            return Plan(status, ())
        status = status.model_copy(update={"would_stop": would_stop(decision, now), **_stop_saving(decision)})
        return Plan(status, (Event("Normal", "WouldStop", f"dry run: {decision.reason.value}: {decision.message}"),))
    status = status.model_copy(update=_stop_saving(decision))
    asked = _stopping(job, status, decision.reason.value, decision.message, now)
    if job.stop.grace_period.seconds > 0:
        return asked
    # No grace period: ask and stop in the same cycle.
    done = _finish(job, asked.status, decision.reason.value, f"{decision.message} (gracePeriod 0s)", now, suspend=True)
    return Plan(done.status, (*asked.actions, *done.actions))
