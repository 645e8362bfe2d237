"""Workload adapters: observe, stop and resume a workload of any supported kind.

Suspend where the kind has it (Job, JobSet, Kubeflow training jobs: the object and its status
stay, and `suspend: false` resumes); scale to 0 through `/scale` otherwise. PyTorchJob's `/scale`
would leave the Master running, so Kubeflow jobs are always suspended.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from plateau.api import KUBEFLOW_KINDS
from plateau.controller.kube import Kube, NotFound
from plateau.controller.workload_state import job_state, jobset_state, kubeflow_state, scaled_state
from plateau.engine.stopflow import WorkloadState
from plateau_sidecar import protocol

KUEUE_WORKLOADS = ("kueue.x-k8s.io", "v1beta1", "workloads")
KUEUE_JOB_UID = "kueue.x-k8s.io/job-uid"  # the label Kueue puts on the Workload it makes for a job


@dataclass(frozen=True)
class Kind:
    group: str
    plural: str
    suspend_path: tuple[str, ...]  # empty: stop through /scale
    pod_label: str  # label carrying the workload's name on its pods


KINDS: dict[tuple[str, str], Kind] = {
    ("batch", "Job"): Kind("batch", "jobs", ("spec", "suspend"), "job-name"),
    ("jobset.x-k8s.io", "JobSet"): Kind("jobset.x-k8s.io", "jobsets", ("spec", "suspend"), "jobset.sigs.k8s.io/jobset-name"),
    **{("kubeflow.org", kind): Kind("kubeflow.org", plural, ("spec", "runPolicy", "suspend"), "training.kubeflow.org/job-name")
       for kind, plural in KUBEFLOW_KINDS.items()},
    ("apps", "Deployment"): Kind("apps", "deployments", (), ""),
    ("apps", "StatefulSet"): Kind("apps", "statefulsets", (), ""),
}


def kind_of(api_version: str, kind: str) -> Kind:
    group = api_version.rsplit("/", 1)[0] if "/" in api_version else ""
    known = KINDS.get((group, kind))
    if known is not None:
        return known
    # Anything else is stopped through /scale; its plural follows the Kubernetes convention.
    return Kind(group, kind.lower() + "s", (), "")


def _nested(path: tuple[str, ...], value: Any) -> dict[str, Any]:
    out: Any = value
    for key in reversed(path):
        out = {key: out}
    return out


class Workload:
    """One workload (child or referenced): observe it, ask its pods to stop, suspend, resume."""

    def __init__(self, kube: Kube, namespace: str, api_version: str, kind: str, name: str) -> None:
        self.kube = kube
        self.namespace = namespace
        self.version = api_version.rsplit("/", 1)[-1]
        self.kind = kind_of(api_version, kind)
        self.kind_name = kind
        self.name = name

    def _get(self) -> Any:
        return self.kube.get_object(self.kind.group, self.version, self.kind.plural, self.namespace, self.name)

    async def observe(self) -> WorkloadState:
        try:
            obj = await self._get()
        except NotFound:
            return WorkloadState(exists=False)
        if self.kind.group == "batch":
            return job_state(obj)
        if self.kind.group == "kubeflow.org":
            return kubeflow_state(obj)
        if self.kind.group == "jobset.x-k8s.io":
            return jobset_state(obj)
        scale = await self.kube.get_scale(self.kind.group, self.version, self.kind.plural, self.namespace, self.name)
        return scaled_state(obj, scale)

    async def pod_selector(self) -> Optional[str]:
        if self.kind.pod_label:
            return f"{self.kind.pod_label}={self.name}"
        scale = await self.kube.get_scale(self.kind.group, self.version, self.kind.plural, self.namespace, self.name)
        return (scale.get("status") or {}).get("selector") or None

    async def request_stop(self, reason: str) -> int:
        """Annotate every pod not yet asked; returns how many were annotated now."""
        return await self._annotate_pods(protocol.STOP_ANNOTATION, reason)

    async def share_spec(self, text: str) -> int:
        """Hand the sidecars a new metric stop spec (a spec edit mid-run): the kubelet rewrites
        their downward-API file. Returns how many pods were annotated now."""
        return await self._annotate_pods(protocol.SPEC_ANNOTATION, text)

    async def _annotate_pods(self, key: str, value: str) -> int:
        selector = await self.pod_selector()
        if not selector:
            return 0
        annotated = 0
        for pod in await self.kube.pods(self.namespace, selector):
            annotations = (pod.get("metadata") or {}).get("annotations") or {}
            if annotations.get(key) != value:
                await self.kube.annotate_pod(self.namespace, pod["metadata"]["name"], {key: value})
                annotated += 1
        return annotated

    async def suspend(self, kueue_uid: str = "") -> None:
        """`kueue_uid`: the workload's uid when Kueue queues it (WorkloadState.kueue_uid). Kueue would
        start an admitted workload again: deactivating its Workload evicts it, suspends it and
        releases its quota. Then it is suspended as usual, in case Kueue is not there."""
        await self._set_kueue_active(kueue_uid, False)
        if self.kind.suspend_path:
            await self.kube.patch_object(self.kind.group, self.version, self.kind.plural, self.namespace, self.name,
                                         _nested(self.kind.suspend_path, True))
            return
        # The replicas to resume to are in the TrainingJob's status (replicasBeforeStop).
        await self.kube.patch_scale(self.kind.group, self.version, self.kind.plural, self.namespace, self.name, 0)

    async def resume(self, replicas: int, child: bool, kueue_uid: str = "") -> None:
        queued = await self._set_kueue_active(kueue_uid, True)
        if self.kind.suspend_path:
            # Kueue unsuspends what it admits: a queued workload is reactivated, not unsuspended.
            patch = {} if queued else _nested(self.kind.suspend_path, False)
            if child:  # a child Job follows the TrainingJob's replicas
                patch.setdefault("spec", {})["parallelism"] = replicas
            await self.kube.patch_object(self.kind.group, self.version, self.kind.plural, self.namespace, self.name, patch)
            return
        await self.kube.patch_scale(self.kind.group, self.version, self.kind.plural, self.namespace, self.name, replicas)

    async def _set_kueue_active(self, uid: str, active: bool) -> bool:
        """Set `spec.active` on the Kueue Workloads that the workload (`uid`) owns.
        Returns whether Kueue queues it (a Workload of Kueue's for it exists)."""
        if not uid or not self.kind.suspend_path:
            return False  # not queued; Kueue's pod-group integrations (Deployments...) own no such Workload
        try:
            workloads = await self.kube.list_objects(*KUEUE_WORKLOADS, self.namespace, f"{KUEUE_JOB_UID}={uid}")
        except NotFound:  # no Kueue in this cluster: the label is only a label
            return False
        owned = [w for w in workloads if any(o.get("uid") == uid for o in (w.get("metadata") or {}).get("ownerReferences") or [])]
        for workload in owned:
            if (workload.get("spec") or {}).get("active", True) != active:
                await self.kube.patch_object(*KUEUE_WORKLOADS, self.namespace, workload["metadata"]["name"],
                                             {"spec": {"active": active}})
        return bool(owned)
