"""How each attached kind's pods learn of a stop: the adapter finds them by the label their own
controller puts on them (as the controllers' documentation gives it) and annotates each once."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from plateau.workloads import Workload
from plateau_sidecar import protocol

# The label each controller sets on the pods it creates.
POD_LABELS = {
    ("batch/v1", "Job"): "job-name",  # set by the Job controller (with batch.kubernetes.io/job-name)
    ("jobset.x-k8s.io/v1alpha2", "JobSet"): "jobset.sigs.k8s.io/jobset-name",
    ("kubeflow.org/v1", "PyTorchJob"): "training.kubeflow.org/job-name",
    ("kubeflow.org/v1", "TFJob"): "training.kubeflow.org/job-name",
}


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
