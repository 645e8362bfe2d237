"""Reading a workload's state from the objects its controllers write: which pods run (Ready),
which only exist (pending), why pods wait, and what a Job as stored says of its sidecar. Pure:
the adapters in plateau.controller.workloads fetch, these functions read.

What they read is others' to write, so a value of the wrong type (a CronJob's `status.active`
is a list) reads as absent, never raises, and messages copied into the status are bounded.
"""

from __future__ import annotations

from typing import Any, Optional

from plateau.engine.stopflow import Waiting, WorkloadState

SIDECAR_NAME = "plateau-sidecar"
KUEUE_QUEUE = "kueue.x-k8s.io/queue-name"  # the LocalQueue label Kueue manages a workload by
GPU_RESOURCE = "nvidia.com/gpu"
# Characters kept of a message a controller or the kubelet wrote: it goes into the status
# (status.message, the Ready condition), which the API server refuses past a few MiB.
MESSAGE_LIMIT = 512


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _objects(value: Any) -> list[dict[str, Any]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _count(value: Any) -> int:
    """A count as the API writes it, a non-negative integer; anything else reads as absent (0)."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _text(value: Any) -> str:
    return value[:MESSAGE_LIMIT] if isinstance(value, str) else ""


def _pod_spec(template: Any) -> dict[str, Any]:
    return _object(_object(template).get("spec"))


def gpus_per_pod(pod_spec: dict[str, Any]) -> int:
    total = 0
    for container in _objects(pod_spec.get("containers")):
        limits = _object(_object(container.get("resources")).get("limits"))
        try:
            total += max(0, int(str(limits.get(GPU_RESOURCE, 0))))  # a quantity: 2 or "2"
        except ValueError:
            continue
    return total


def _condition(obj: dict[str, Any], *types: str) -> Optional[dict[str, Any]]:
    for c in _objects(_object(obj.get("status")).get("conditions")):
        if c.get("type") in types and c.get("status") == "True":
            return c
    return None


def kueue_queue(obj: dict[str, Any]) -> str:
    """The Kueue LocalQueue that manages the workload, or ''."""
    return _text(_object(_object(obj.get("metadata")).get("labels")).get(KUEUE_QUEUE))


def _kueue_uid(obj: dict[str, Any]) -> str:
    return _text(_object(obj.get("metadata")).get("uid")) if kueue_queue(obj) else ""


def _queued(obj: dict[str, Any], suspended: bool) -> Optional[Waiting]:
    queue = kueue_queue(obj)
    if not (suspended and queue):
        return None
    return Waiting("Queued", f"waiting for Kueue to admit the workload (queue {queue})"[:MESSAGE_LIMIT])


def job_state(job: dict[str, Any]) -> WorkloadState:
    spec = _object(job.get("spec"))
    status = _object(job.get("status"))
    # `active` counts pending pods too; `ready` only those whose containers run and are Ready.
    running = _count(status.get("ready"))
    return _batch_state(job, _count(status.get("active")), running,
                        running * gpus_per_pod(_pod_spec(spec.get("template"))),
                        bool(spec.get("suspend")), "Complete", reason_as_message=True,
                        sidecar_dropped=sidecar_dropped(spec))


def _batch_state(obj: dict[str, Any], active: int, running: int, gpus: int, suspended: bool, done: str,
                 reason_as_message: bool = False, sidecar_dropped: bool = False) -> WorkloadState:
    """The state of a kind that runs to completion and is suspended in place (Job, JobSet,
    Kubeflow jobs); `done` names its condition of success."""
    failed = _condition(obj, "Failed") or {}
    return WorkloadState(
        exists=True,
        active=active,
        running=running,
        succeeded=_condition(obj, done) is not None,
        failed=bool(failed),
        suspended=suspended,
        gpus=gpus if running else 0,
        message=_text(failed.get("message")) or (_text(failed.get("reason")) if reason_as_message else ""),
        sidecar_dropped=sidecar_dropped,
        waiting=_queued(obj, suspended),
        kueue_uid=_kueue_uid(obj),
    )


def sidecar_dropped(job_spec: dict[str, Any]) -> bool:
    """Whether the Job's Plateau sidecar lost `restartPolicy: Always`: a v1.28 server without
    the SidecarContainers gate drops the field silently, and answers 201 all the same."""
    pod_spec = _pod_spec(job_spec.get("template"))
    return any(c.get("name") == SIDECAR_NAME and c.get("restartPolicy") != "Always"
               for c in _objects(pod_spec.get("initContainers")))


def _replica_specs(obj: dict[str, Any]) -> list[dict[str, Any]]:
    """pytorchReplicaSpecs / tfReplicaSpecs: {Master: {...}, Worker: {...}} -> their values."""
    out: list[dict[str, Any]] = []
    for key, specs in _object(obj.get("spec")).items():
        if key.endswith("ReplicaSpecs") and isinstance(specs, dict):
            out += [s for s in specs.values() if isinstance(s, dict)]
    return out


def kubeflow_state(obj: dict[str, Any]) -> WorkloadState:
    statuses = _object(_object(obj.get("status")).get("replicaStatuses"))
    active = sum(_count(_object(s).get("active")) for s in statuses.values())
    gpus = sum((_count(r.get("replicas")) or 1) * gpus_per_pod(_pod_spec(r.get("template")))
               for r in _replica_specs(obj))
    # Replica statuses count pending pods as active; the Running condition says they started.
    running = active if _condition(obj, "Running") is not None else 0
    suspended = bool(_object(_object(obj.get("spec")).get("runPolicy")).get("suspend"))
    return _batch_state(obj, active, running, gpus, suspended, "Succeeded")


def jobset_state(obj: dict[str, Any]) -> WorkloadState:
    spec = _object(obj.get("spec"))
    replicated = _objects(_object(obj.get("status")).get("replicatedJobsStatus"))
    active = sum(_count(r.get("active")) for r in replicated)
    running = sum(_count(r.get("ready")) for r in replicated)  # Jobs whose pods are all Ready
    gpus = 0
    for rj in _objects(spec.get("replicatedJobs")):
        job_spec = _pod_spec(rj.get("template"))
        pods = (_count(rj.get("replicas")) or 1) * (_count(job_spec.get("parallelism")) or 1)
        gpus += pods * gpus_per_pod(_pod_spec(job_spec.get("template")))
    return _batch_state(obj, active, running, gpus, bool(spec.get("suspend")), "Completed")


def scaled_state(obj: dict[str, Any], scale: dict[str, Any]) -> WorkloadState:
    active = _count(_object(scale.get("status")).get("replicas"))
    wanted = _count(_object(scale.get("spec")).get("replicas"))
    # apps/v1 kinds say how many pods are Ready (readyReplicas, left out when 0); /scale alone does not.
    ready = _count(_object(obj.get("status")).get("readyReplicas"))
    running = min(active, ready) if _text(obj.get("apiVersion")).startswith("apps/") else active
    pod_spec = _pod_spec(_object(obj.get("spec")).get("template"))
    return WorkloadState(exists=True, active=active, running=running, suspended=wanted == 0,
                         gpus=running * gpus_per_pod(pod_spec), scale_replicas=wanted)


# Container waiting reasons that mean "stuck", not "on its way" (ContainerCreating, PodInitializing).
STUCK = frozenset({"ImagePullBackOff", "ErrImagePull", "InvalidImageName", "CrashLoopBackOff",
                   "CreateContainerConfigError", "CreateContainerError", "RunContainerError"})


def pod_waiting(pods: list[dict[str, Any]]) -> Optional[Waiting]:
    """Why the first pod that is not Ready waits, from its status as the scheduler and kubelet
    wrote it: Unschedulable, a stuck container (ImagePullBackOff...), Init, or starting."""
    for pod in _objects(pods):
        status = _object(pod.get("status"))
        if _pod_condition(status, "Ready") == "True" or status.get("phase") in ("Succeeded", "Failed"):
            continue
        name = _text(_object(pod.get("metadata")).get("name"))
        why = _pod_waiting(status)
        return Waiting(why.reason, f"pod {name}: {why.message}"[:MESSAGE_LIMIT])
    return None


def _pod_condition(status: dict[str, Any], type_: str) -> Optional[str]:
    return next((c.get("status") for c in _objects(status.get("conditions")) if c.get("type") == type_), None)


def _pod_waiting(status: dict[str, Any]) -> Waiting:
    scheduled = next((c for c in _objects(status.get("conditions")) if c.get("type") == "PodScheduled"), None)
    if scheduled is not None and scheduled.get("status") == "False":
        return Waiting(_text(scheduled.get("reason")) or "Unschedulable",
                       _text(scheduled.get("message")) or "not scheduled")
    if scheduled is None:
        return Waiting("Unscheduled", "not scheduled yet")
    for key in ("initContainerStatuses", "containerStatuses"):
        for c in _objects(status.get(key)):
            waiting = _object(_object(c.get("state")).get("waiting"))
            reason = waiting.get("reason")
            if isinstance(reason, str) and reason in STUCK:
                return Waiting(reason, f"container {_text(c.get('name'))}: {_text(waiting.get('message')) or reason}")
    if _pod_condition(status, "Initialized") == "False":
        return Waiting("PodInitializing", "init containers have not finished")
    return Waiting("ContainersStarting", "containers are starting")
