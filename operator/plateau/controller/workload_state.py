"""Reading a workload's state from the objects its controllers write: which pods run (Ready),
which only exist (pending), why pods wait, and what a Job as stored says of its sidecar. Pure:
the adapters in plateau.controller.workloads fetch, these functions read.
"""

from __future__ import annotations

from typing import Any, Optional

from plateau.engine.stopflow import Waiting, WorkloadState

SIDECAR_NAME = "plateau-sidecar"
KUEUE_QUEUE = "kueue.x-k8s.io/queue-name"  # the LocalQueue label Kueue manages a workload by
GPU_RESOURCE = "nvidia.com/gpu"


def gpus_per_pod(pod_spec: dict[str, Any]) -> int:
    total = 0
    for container in pod_spec.get("containers", []) or []:
        limits = ((container or {}).get("resources") or {}).get("limits") or {}
        try:
            total += int(str(limits.get(GPU_RESOURCE, 0)))
        except ValueError:
            continue
    return total


def _condition(obj: dict[str, Any], *types: str) -> Optional[dict[str, Any]]:
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c.get("type") in types and c.get("status") == "True":
            return c
    return None


def kueue_queue(obj: dict[str, Any]) -> str:
    """The Kueue LocalQueue that manages the workload, or ''."""
    return str(((obj.get("metadata") or {}).get("labels") or {}).get(KUEUE_QUEUE) or "")


def _kueue_uid(obj: dict[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("uid") or "") if kueue_queue(obj) else ""


def _queued(obj: dict[str, Any], suspended: bool) -> Optional[Waiting]:
    queue = kueue_queue(obj)
    if not (suspended and queue):
        return None
    return Waiting("Queued", f"waiting for Kueue to admit the workload (queue {queue})"[:WAITING_MESSAGE_LIMIT])


def job_state(job: dict[str, Any]) -> WorkloadState:
    spec = job.get("spec") or {}
    status = job.get("status") or {}
    # `active` counts pending pods too; `ready` only those whose containers run and are Ready.
    running = int(status.get("ready") or 0)
    return _batch_state(job, int(status.get("active") or 0), running,
                        running * gpus_per_pod(((spec.get("template") or {}).get("spec")) or {}),
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
        message=failed.get("message") or (failed.get("reason") if reason_as_message else "") or "",
        sidecar_dropped=sidecar_dropped,
        waiting=_queued(obj, suspended),
        kueue_uid=_kueue_uid(obj),
    )


def sidecar_dropped(job_spec: dict[str, Any]) -> bool:
    """Whether the Job's Plateau sidecar lost `restartPolicy: Always`: a v1.28 server without
    the SidecarContainers gate drops the field silently, and answers 201 all the same."""
    pod_spec = (job_spec.get("template") or {}).get("spec") or {}
    return any(c.get("name") == SIDECAR_NAME and c.get("restartPolicy") != "Always"
               for c in pod_spec.get("initContainers") or [])


def _replica_specs(obj: dict[str, Any]) -> list[dict[str, Any]]:
    """pytorchReplicaSpecs / tfReplicaSpecs: {Master: {...}, Worker: {...}} -> their values."""
    out: list[dict[str, Any]] = []
    for key, specs in (obj.get("spec") or {}).items():
        if key.endswith("ReplicaSpecs") and isinstance(specs, dict):
            out += [s for s in specs.values() if isinstance(s, dict)]
    return out


def kubeflow_state(obj: dict[str, Any]) -> WorkloadState:
    status = obj.get("status") or {}
    active = sum(int((s or {}).get("active") or 0) for s in (status.get("replicaStatuses") or {}).values())
    gpus = sum(int(r.get("replicas") or 1) * gpus_per_pod(((r.get("template") or {}).get("spec")) or {})
               for r in _replica_specs(obj))
    # Replica statuses count pending pods as active; the Running condition says they started.
    running = active if _condition(obj, "Running") is not None else 0
    suspended = bool(((obj.get("spec") or {}).get("runPolicy") or {}).get("suspend"))
    return _batch_state(obj, active, running, gpus, suspended, "Succeeded")


def jobset_state(obj: dict[str, Any]) -> WorkloadState:
    status = obj.get("status") or {}
    active = sum(int(r.get("active") or 0) for r in status.get("replicatedJobsStatus") or [])
    running = sum(int(r.get("ready") or 0) for r in status.get("replicatedJobsStatus") or [])  # Jobs whose pods are all Ready
    gpus = 0
    for rj in (obj.get("spec") or {}).get("replicatedJobs") or []:
        job_spec = ((rj.get("template") or {}).get("spec")) or {}
        pods = int(rj.get("replicas") or 1) * int(job_spec.get("parallelism") or 1)
        gpus += pods * gpus_per_pod(((job_spec.get("template") or {}).get("spec")) or {})
    return _batch_state(obj, active, running, gpus, bool((obj.get("spec") or {}).get("suspend")), "Completed")


def scaled_state(obj: dict[str, Any], scale: dict[str, Any]) -> WorkloadState:
    active = int((scale.get("status") or {}).get("replicas") or 0)
    wanted = int((scale.get("spec") or {}).get("replicas") or 0)
    # apps/v1 kinds say how many pods are Ready (readyReplicas, left out when 0); /scale alone does not.
    ready = int((obj.get("status") or {}).get("readyReplicas") or 0)
    running = min(active, ready) if str(obj.get("apiVersion", "")).startswith("apps/") else active
    pod_spec = (((obj.get("spec") or {}).get("template") or {}).get("spec")) or {}
    return WorkloadState(exists=True, active=active, running=running, suspended=wanted == 0,
                         gpus=running * gpus_per_pod(pod_spec), scale_replicas=wanted)


# Container waiting reasons that mean "stuck", not "on its way" (ContainerCreating, PodInitializing).
STUCK = frozenset({"ImagePullBackOff", "ErrImagePull", "InvalidImageName", "CrashLoopBackOff",
                   "CreateContainerConfigError", "CreateContainerError", "RunContainerError"})
WAITING_MESSAGE_LIMIT = 512


def pod_waiting(pods: list[dict[str, Any]]) -> Optional[Waiting]:
    """Why the first pod that is not Ready waits, from its status as the scheduler and kubelet
    wrote it: Unschedulable, a stuck container (ImagePullBackOff...), Init, or starting."""
    for pod in pods:
        status = pod.get("status") or {}
        if _pod_condition(status, "Ready") == "True" or status.get("phase") in ("Succeeded", "Failed"):
            continue
        name = (pod.get("metadata") or {}).get("name", "")
        why = _pod_waiting(status)
        return Waiting(why.reason, f"pod {name}: {why.message}"[:WAITING_MESSAGE_LIMIT])
    return None


def _pod_condition(status: dict[str, Any], type_: str) -> Optional[str]:
    return next((c.get("status") for c in status.get("conditions") or [] if c.get("type") == type_), None)


def _pod_waiting(status: dict[str, Any]) -> Waiting:
    scheduled = next((c for c in status.get("conditions") or [] if c.get("type") == "PodScheduled"), None)
    if scheduled is not None and scheduled.get("status") == "False":
        return Waiting(scheduled.get("reason") or "Unschedulable", scheduled.get("message") or "not scheduled")
    if scheduled is None:
        return Waiting("Unscheduled", "not scheduled yet")
    for key in ("initContainerStatuses", "containerStatuses"):
        for c in status.get(key) or []:
            waiting = (c.get("state") or {}).get("waiting") or {}
            if waiting.get("reason") in STUCK:
                return Waiting(waiting["reason"], f"container {c.get('name')}: {waiting.get('message') or waiting['reason']}")
    if _pod_condition(status, "Initialized") == "False":
        return Waiting("PodInitializing", "init containers have not finished")
    return Waiting("ContainersStarting", "containers are starting")
