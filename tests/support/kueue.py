"""A Kueue stand-in for end-to-end tests: what Kueue's job integration does to a batch/v1 Job,
as Kueue's documentation describes it. Kueue itself cannot run here.

- A Job labelled `kueue.x-k8s.io/queue-name` gets a Workload (kueue.x-k8s.io/v1beta1), owned
  by the Job and labelled `kueue.x-k8s.io/job-uid` ("Run a Kubernetes Job":
  https://kueue.sigs.k8s.io/docs/tasks/run/jobs/; the Job controller of `jobframework`).
- An active Workload is admitted (QuotaReserved and Admitted conditions, `status.admission`;
  this stand-in's ClusterQueue always has quota), and Kueue *starts* an admitted Job by setting
  `suspend: false`, whoever suspended it: that is why a plain suspend does not stop a queued Job.
- `spec.active: false` ("Workload" reference, WorkloadSpec.active: "false indicates that a
  workload should never be admitted and evicts running workloads") evicts it: the Evicted
  condition with reason Deactivated, Admitted and QuotaReserved False, no admission (the quota
  is released), and the Job suspended. Active again, it is admitted and started again.
"""

from __future__ import annotations

import asyncio
import ssl
from datetime import datetime, timezone
from typing import Any

from tests.support.controller import ControllerLoop

QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
JOB_UID_LABEL = "kueue.x-k8s.io/job-uid"
WORKLOADS = "/apis/kueue.x-k8s.io/v1beta1/namespaces/{ns}/workloads"

WORKLOAD_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
    "metadata": {"name": "workloads.kueue.x-k8s.io"},
    "spec": {
        "group": "kueue.x-k8s.io", "scope": "Namespaced",
        "names": {"plural": "workloads", "singular": "workload", "kind": "Workload", "listKind": "WorkloadList"},
        "versions": [{"name": "v1beta1", "served": True, "storage": True, "subresources": {"status": {}},
                      "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}}}],
    },
}


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _true(obj: dict[str, Any], type_: str) -> bool:
    return any(c.get("type") == type_ and c.get("status") == "True" for c in (obj.get("status") or {}).get("conditions") or [])


class Kueue(ControllerLoop):
    def __init__(self, url: str, token: str, namespace: str = "default", ssl_context: ssl.SSLContext | None = None) -> None:
        super().__init__(url, token, ssl_context)
        self.namespace = namespace
        self.starts: list[str] = []  # Jobs this stand-in unsuspended, in order

    async def _request(self, method: str, path: str, body: Any = None,
                       content_type: str = "application/merge-patch+json") -> Any:
        assert self._session
        async with self._session.request(method, path, json=body, headers={"Content-Type": content_type}) as r:
            return await r.json() if r.status < 300 else None

    async def _loop(self) -> None:
        while True:
            jobs = await self._request("GET", f"/apis/batch/v1/namespaces/{self.namespace}/jobs")
            workloads = await self._request("GET", WORKLOADS.format(ns=self.namespace))
            if jobs is not None and workloads is not None:
                by_owner = {o.get("uid"): w for w in workloads["items"]
                            for o in w["metadata"].get("ownerReferences") or []}
                for job in jobs["items"]:
                    if (job["metadata"].get("labels") or {}).get(QUEUE_LABEL):
                        await self._reconcile(job, by_owner.get(job["metadata"]["uid"]))
            await asyncio.sleep(0.1)

    async def _reconcile(self, job: dict[str, Any], workload: dict[str, Any] | None) -> None:
        meta = job["metadata"]
        if workload is None:
            await self._create_workload(job)
            return
        if _true(job, "Complete") or _true(job, "Failed"):
            return
        name = workload["metadata"]["name"]
        suspended = bool(job["spec"].get("suspend"))
        if (workload.get("spec") or {}).get("active", True):
            if not _true(workload, "Admitted"):
                await self._workload_status(name, {"admission": {"clusterQueue": "cluster-queue"}, "conditions": [
                    {"type": "QuotaReserved", "status": "True", "reason": "QuotaReserved", "lastTransitionTime": _now()},
                    {"type": "Admitted", "status": "True", "reason": "Admitted", "lastTransitionTime": _now()}]})
            if suspended:  # an admitted Job runs, whoever suspended it
                self.starts.append(meta["name"])
                await self._request("PATCH", f"/apis/batch/v1/namespaces/{self.namespace}/jobs/{meta['name']}",
                                    {"spec": {"suspend": False}})
            return
        if _true(workload, "Admitted"):
            await self._workload_status(name, {"admission": None, "conditions": [
                {"type": "QuotaReserved", "status": "False", "reason": "Pending", "lastTransitionTime": _now()},
                {"type": "Admitted", "status": "False", "reason": "NoReservation", "lastTransitionTime": _now()},
                {"type": "Evicted", "status": "True", "reason": "Deactivated",
                 "message": "The workload is deactivated", "lastTransitionTime": _now()}]})
        if not suspended:
            await self._request("PATCH", f"/apis/batch/v1/namespaces/{self.namespace}/jobs/{meta['name']}",
                                {"spec": {"suspend": True}})

    async def _create_workload(self, job: dict[str, Any]) -> None:
        meta = job["metadata"]
        await self._request("POST", WORKLOADS.format(ns=self.namespace), {
            "apiVersion": "kueue.x-k8s.io/v1beta1", "kind": "Workload",
            "metadata": {"name": f"job-{meta['name']}-{meta['uid'][:5]}", "namespace": self.namespace,
                         "labels": {JOB_UID_LABEL: meta["uid"]},
                         "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": meta["name"],
                                              "uid": meta["uid"], "controller": True, "blockOwnerDeletion": True}]},
            "spec": {"queueName": meta["labels"][QUEUE_LABEL], "active": True,
                     "podSets": [{"name": "main", "count": job["spec"].get("parallelism", 1),
                                  "template": job["spec"]["template"]}]},
        }, content_type="application/json")

    async def _workload_status(self, name: str, status: dict[str, Any]) -> None:
        await self._request("PATCH", f"{WORKLOADS.format(ns=self.namespace)}/{name}/status", {"status": status})
