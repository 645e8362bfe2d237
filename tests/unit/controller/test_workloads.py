"""How each attached kind's pods learn of a stop: the adapter finds them by the label their own
controller puts on them (as the controllers' documentation gives it) and annotates each once."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from plateau.controller.workloads import Workload
from plateau_sidecar import protocol

# The label each controller sets on the pods it creates.
POD_LABELS = {
    ("batch/v1", "Job"): "job-name",  # set by the Job controller (with batch.kubernetes.io/job-name)
    ("jobset.x-k8s.io/v1alpha2", "JobSet"): "jobset.sigs.k8s.io/jobset-name",
    ("kubeflow.org/v1", "PyTorchJob"): "training.kubeflow.org/job-name",
    ("kubeflow.org/v1", "TFJob"): "training.kubeflow.org/job-name",
    ("kubeflow.org/v2beta1", "MPIJob"): "training.kubeflow.org/job-name",  # mpi-operator v0.4 and later
    ("kubeflow.org/v1", "XGBoostJob"): "training.kubeflow.org/job-name",
    ("kubeflow.org/v1", "PaddleJob"): "training.kubeflow.org/job-name",
    ("kubeflow.org/v1", "JAXJob"): "training.kubeflow.org/job-name",
}
# The plural each Kubeflow training job's CRD serves; all suspend through spec.runPolicy.suspend
# (training-operator v1.7 and later; mpi-operator's v2beta1 MPIJob since v0.4).
KUBEFLOW_PLURALS = {"PyTorchJob": "pytorchjobs", "TFJob": "tfjobs", "MPIJob": "mpijobs", "XGBoostJob": "xgboostjobs",
                    "PaddleJob": "paddlejobs", "JAXJob": "jaxjobs"}


class PodsKube:
    """The two calls a stop request makes, over pods held in memory, filtered by label."""

    def __init__(self, pods: list[dict[str, Any]]) -> None:
        self.pods_by_name = {p["metadata"]["name"]: p for p in pods}
        self.annotated: list[str] = []

    async def get_scale(self, *_: Any) -> dict[str, Any]:
        return {"spec": {"replicas": 2}, "status": {"replicas": 2, "selector": "app=web"}}

    async def pods(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        key, _, value = selector.partition("=")
        return [p for p in self.pods_by_name.values() if p["metadata"]["labels"].get(key) == value]

    async def annotate_pod(self, namespace: str, name: str, annotations: dict[str, str]) -> None:
        self.annotated.append(name)
        self.pods_by_name[name]["metadata"].setdefault("annotations", {}).update(annotations)


def pod(name: str, **labels: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": labels}}


@pytest.mark.parametrize("kind", list(POD_LABELS), ids=lambda k: k[1])
def test_a_stop_reaches_the_pods_their_controller_labelled_once(kind: tuple[str, str]) -> None:
    label = POD_LABELS[kind]
    kube = PodsKube([pod("w-0", **{label: "w"}), pod("w-1", **{label: "w"}), pod("other-0", **{label: "other"})])
    workload = Workload(kube, "ns", kind[0], kind[1], "w")  # type: ignore[arg-type]
    assert asyncio.run(workload.request_stop("Plateau")) == 2
    assert sorted(kube.annotated) == ["w-0", "w-1"]
    assert kube.pods_by_name["w-0"]["metadata"]["annotations"] == {protocol.STOP_ANNOTATION: "Plateau"}
    assert asyncio.run(workload.request_stop("Plateau")) == 0  # already asked: no second write


@pytest.mark.parametrize("kind", ["Deployment", "StatefulSet"])
def test_scaled_kinds_find_their_pods_by_the_selector_their_scale_reports(kind: str) -> None:
    kube = PodsKube([pod("web-0", app="web"), pod("db-0", app="db")])
    workload = Workload(kube, "ns", "apps/v1", kind, "web")  # type: ignore[arg-type]
    assert asyncio.run(workload.request_stop("GpuIdle")) == 1 and kube.annotated == ["web-0"]


class RecordingKube(PodsKube):
    """Also answers a GET with a kind's own object, and records every write."""

    def __init__(self, obj: dict[str, Any]) -> None:
        super().__init__([])
        self.obj = obj
        self.gets: list[tuple[str, ...]] = []
        self.writes: list[tuple[Any, ...]] = []

    async def get_object(self, group: str, version: str, plural: str, namespace: str, name: str) -> dict[str, Any]:
        self.gets.append((group, version, plural, namespace, name))
        return self.obj

    async def patch_object(self, *args: Any) -> None:
        self.writes.append(("patch", *args))

    async def patch_scale(self, *args: Any) -> None:
        self.writes.append(("scale", *args))


TEMPLATE = {"spec": {"containers": [{"name": "t", "resources": {"limits": {"nvidia.com/gpu": "2"}}}]}}


@pytest.mark.parametrize("api_version, kind, obj, running", [
    ("batch/v1", "Job", {"spec": {"template": TEMPLATE}, "status": {"active": 1, "ready": 1}}, 1),
    ("jobset.x-k8s.io/v1alpha2", "JobSet", {"spec": {"replicatedJobs": [{"template": {"spec": {"template": TEMPLATE}}}]},
                                            "status": {"replicatedJobsStatus": [{"active": 1, "ready": 1}]}}, 1),
    ("kubeflow.org/v1", "PyTorchJob", {"spec": {"pytorchReplicaSpecs": {"Master": {"template": TEMPLATE}}},
                                       "status": {"replicaStatuses": {"Master": {"active": 1}},
                                                  "conditions": [{"type": "Running", "status": "True"}]}}, 1),
    ("kubeflow.org/v2beta1", "MPIJob", {"spec": {"mpiReplicaSpecs": {"Launcher": {"template": {"spec": {}}},
                                                                     "Worker": {"replicas": 2, "template": {
                                                                         "spec": {"containers": [{"name": "t", "resources": {
                                                                             "limits": {"nvidia.com/gpu": 1}}}]}}}}},
                                        "status": {"replicaStatuses": {"Launcher": {"active": 1}, "Worker": {"active": 2}},
                                                   "conditions": [{"type": "Running", "status": "True"}]}}, 3),
])
def test_each_kind_is_read_from_its_own_object_at_its_own_version(api_version: str, kind: str, obj: dict[str, Any],
                                                                    running: int) -> None:
    kube = RecordingKube(obj)
    state = asyncio.run(Workload(kube, "ns", api_version, kind, "w").observe())  # type: ignore[arg-type]
    group, version = api_version.split("/")
    assert kube.gets and kube.gets[0][:2] == (group, version) and kube.gets[0][3:] == ("ns", "w")
    assert (state.exists, state.running, state.gpus) == (True, running, 2)  # "2" as a string is two GPUs


def test_a_scaled_kind_is_stopped_and_resumed_through_scale_only() -> None:
    kube = RecordingKube({"apiVersion": "apps/v1", "spec": {"template": TEMPLATE}, "status": {"readyReplicas": 2}})
    workload = Workload(kube, "ns", "apps/v1", "Deployment", "web")  # type: ignore[arg-type]
    asyncio.run(workload.suspend())
    asyncio.run(workload.resume(3, child=False))
    assert kube.writes == [("scale", "apps", "v1", "deployments", "ns", "web", 0), ("scale", "apps", "v1", "deployments", "ns", "web", 3)]


def test_a_suspendable_kind_is_suspended_at_its_own_path() -> None:
    kube = RecordingKube({})
    asyncio.run(Workload(kube, "ns", "kubeflow.org/v1", "PyTorchJob", "pt").suspend())  # type: ignore[arg-type]
    asyncio.run(Workload(kube, "ns", "batch/v1", "Job", "j").resume(2, child=True))  # type: ignore[arg-type]
    assert kube.writes == [("patch", "kubeflow.org", "v1", "pytorchjobs", "ns", "pt", {"spec": {"runPolicy": {"suspend": True}}}),
                           ("patch", "batch", "v1", "jobs", "ns", "j", {"spec": {"suspend": False, "parallelism": 2}})]


@pytest.mark.parametrize(("kind", "plural"), KUBEFLOW_PLURALS.items())
def test_every_kubeflow_training_job_is_suspended_and_resumed_through_its_run_policy(kind: str, plural: str) -> None:
    kube = RecordingKube({})
    workload = Workload(kube, "ns", "kubeflow.org/v1", kind, "w")  # type: ignore[arg-type]
    asyncio.run(workload.suspend())
    asyncio.run(workload.resume(1, child=False))
    assert kube.writes == [("patch", "kubeflow.org", "v1", plural, "ns", "w", {"spec": {"runPolicy": {"suspend": s}}})
                           for s in (True, False)]


def test_a_workload_that_is_not_there_is_observed_missing() -> None:
    from plateau.controller.kube import NotFound

    class Missing(RecordingKube):
        async def get_object(self, *args: Any) -> dict[str, Any]:
            raise NotFound("get jobs", 404, "not found")

    assert asyncio.run(Workload(Missing({}), "ns", "batch/v1", "Job", "gone").observe()).exists is False  # type: ignore[arg-type]


def test_kueue_workloads_without_an_active_field_are_active_and_get_deactivated() -> None:
    """spec.active defaults to true in Kueue's API: a Workload that leaves it out is active."""

    class Kueue(RecordingKube):
        async def list_objects(self, *args: Any) -> list[dict[str, Any]]:
            return [{"metadata": {"name": "job-j-1", "ownerReferences": [{"uid": "u1"}]}, "spec": {}},
                    {"metadata": {"name": "job-other", "ownerReferences": [{"uid": "u2"}]}, "spec": {}}]

    kube = Kueue({})
    asyncio.run(Workload(kube, "ns", "batch/v1", "Job", "j").suspend(kueue_uid="u1"))  # type: ignore[arg-type]
    assert kube.writes[0] == ("patch", "kueue.x-k8s.io", "v1beta1", "workloads", "ns", "job-j-1", {"spec": {"active": False}})
    assert kube.writes[1][:7] == ("patch", "batch", "v1", "jobs", "ns", "j", {"spec": {"suspend": True}})
    assert len(kube.writes) == 2  # another Job's Workload is left alone


def test_a_kueue_queued_job_resumes_through_its_workload_not_by_unsuspending() -> None:
    class Kueue(RecordingKube):
        async def list_objects(self, *args: Any) -> list[dict[str, Any]]:
            return [{"metadata": {"name": "job-j-1", "ownerReferences": [{"uid": "u1"}]}, "spec": {"active": False}}]

    kube = Kueue({})
    asyncio.run(Workload(kube, "ns", "batch/v1", "Job", "j").resume(2, child=True, kueue_uid="u1"))  # type: ignore[arg-type]
    assert kube.writes == [("patch", "kueue.x-k8s.io", "v1beta1", "workloads", "ns", "job-j-1", {"spec": {"active": True}}),
                           ("patch", "batch", "v1", "jobs", "ns", "j", {"spec": {"parallelism": 2}})]  # Kueue unsuspends
