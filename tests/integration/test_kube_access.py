"""The operator's Kubernetes calls (plateau.controller.kube) against the emulated API server.

The typed models of the `kubernetes` client reject objects that servers hold and serve (a
quantity given as an int, `nvidia.com/gpu: 1`), so calls whose answer the operator does not
need must not parse it: a parse error after the server applied a stop request would make
the operator believe the request failed.

Every request is bounded (a hung one is cut off at the read timeout, retried and counted),
every write names the field manager `plateau`, and a 404 is an answer, not an API error.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from plateau.controller.kube import FIELD_MANAGER, ApiError, Kube, NotFound
from plateau.controller.leader import LeaderElector
from plateau.controller.metrics import count_api_error
from plateau.controller.runtime import api_client

REPO = Path(__file__).resolve().parents[2]

GPU_POD = {
    "apiVersion": "v1", "kind": "Pod",
    "metadata": {"name": "trainer-0", "namespace": "default", "labels": {"job-name": "trainer"}},
    "spec": {"containers": [{"name": "trainer", "image": "trainer:1", "resources": {"limits": {"nvidia.com/gpu": 1}}}]},
}


@pytest.fixture
def kube(kubeconfig: str) -> Kube:
    return Kube(api_client(kubeconfig), timeout=(2.0, 0.5), on_error=count_api_error)  # as the operator builds it


def api_errors(verb: str, code: str) -> float:
    return REGISTRY.get_sample_value("plateau_operator_api_errors_total", {"verb": verb, "code": code}) or 0.0


async def test_a_stop_request_on_a_pod_with_integer_gpu_limits_succeeds(apiserver, kube: Kube) -> None:
    apiserver.apply(GPU_POD)
    await kube.annotate_pod("default", "trainer-0", {"plateau.dev/stop": "GpuIdle"})
    [pod] = apiserver.objects("v1", "Pod", "default")
    assert pod["metadata"]["annotations"] == {"plateau.dev/stop": "GpuIdle"}
    assert [p["metadata"]["name"] for p in await kube.pods("default", "job-name=trainer")] == ["trainer-0"]


async def test_unparsed_calls_still_report_errors(apiserver, kube: Kube) -> None:
    apiserver.apply(GPU_POD)
    with pytest.raises(NotFound):
        await kube.annotate_pod("default", "gone", {"plateau.dev/stop": "Manual"})
    apiserver.inject(r"/pods", "patch", 500, times=None)
    apiserver.inject(r"/pods", "list", 500, times=None)
    with pytest.raises(ApiError) as patched:
        await kube.annotate_pod("default", "trainer-0", {"plateau.dev/stop": "Manual"})
    with pytest.raises(ApiError) as listed:
        await kube.pods("default", "job-name=trainer")
    assert patched.value.code == listed.value.code == 500


DEPLOYMENT = {
    "apiVersion": "apps/v1", "kind": "Deployment",
    "metadata": {"name": "serve-and-train", "namespace": "default"},
    "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "t"}},
             "template": {"metadata": {"labels": {"app": "t"}},
                          "spec": {"containers": [{"name": "trainer", "image": "trainer:1"}]}}},
}


@pytest.mark.parametrize("apiserver", [{"rbac": True}], indirect=True)
async def test_a_scaled_workload_stops_and_resumes_under_the_charts_rules_without_writing_it(apiserver, tmp_path) -> None:
    """Only /scale is written: the operator may not patch Deployments (that would let it rewrite
    their pod templates), and the size to resume to comes from the TrainingJob's status."""
    from plateau.controller import rbac
    from plateau.controller.workloads import Workload

    apiserver.apply(DEPLOYMENT)
    apiserver.grant("system:serviceaccount:plateau-system:plateau", rbac.RULES)
    path = apiserver.write_kubeconfig(str(tmp_path / "op.kubeconfig"),
                                      token=apiserver.service_account_token("plateau-system", "plateau"))
    workload = Workload(Kube(api_client(path)), "default", "apps/v1", "Deployment", "serve-and-train")

    before = await workload.observe()
    assert before.scale_replicas == 3 and not before.suspended
    await workload.suspend()
    stopped = await workload.observe()
    assert stopped.scale_replicas == 0 and stopped.suspended
    await workload.resume(before.scale_replicas, child=False)
    assert (await workload.observe()).scale_replicas == 3
    [stored] = apiserver.objects("apps/v1", "Deployment", "default")
    assert "annotations" not in stored["metadata"]  # nothing of ours on the user's object
    assert {c.subresource for c in apiserver.calls("patch", "deployments")} == {"scale"}
    with pytest.raises(ApiError) as denied:  # and the rules would not let it
        await workload.kube.patch_object("apps", "v1", "deployments", "default", "serve-and-train", {"metadata": {"labels": {"x": "y"}}})
    assert denied.value.code == 403


@pytest.mark.parametrize("verb", ["list", "patch"])
async def test_a_hung_request_is_cut_off_at_the_read_timeout_counted_and_retried(apiserver, kube: Kube, verb: str) -> None:
    apiserver.apply(GPU_POD)
    counted = api_errors(f"{verb} pods", "timeout")
    hang = apiserver.inject(r"/pods", verb, None, delay=30, times=1)  # answers only after 30 s
    started = time.monotonic()
    if verb == "list":
        assert [p["metadata"]["name"] for p in await kube.pods("default", "job-name=trainer")] == ["trainer-0"]
    else:
        await kube.annotate_pod("default", "trainer-0", {"plateau.dev/stop": "Manual"})
    assert time.monotonic() - started < 10  # cut off at 0.5 s, not answered after 30 s
    assert hang.hits == 1 and len(apiserver.calls(verb, "pods")) == 2  # one attempt each: no hidden retries
    assert api_errors(f"{verb} pods", "timeout") == counted + 1


async def test_not_found_is_an_answer_not_an_api_error(apiserver, kube: Kube) -> None:
    counted = api_errors("get deployments", "404"), api_errors("patch pods", "404")
    with pytest.raises(NotFound):
        await kube.get_object("apps", "v1", "deployments", "default", "not-created-yet")
    with pytest.raises(NotFound):
        await kube.annotate_pod("default", "gone", {"plateau.dev/stop": "Manual"})
    assert (api_errors("get deployments", "404"), api_errors("patch pods", "404")) == counted
    apiserver.inject(r"/deployments", "get", 403)
    with pytest.raises(ApiError):
        await kube.get_object("apps", "v1", "deployments", "default", "not-created-yet")
    assert api_errors("get deployments", "403") >= 1  # real errors still count


async def test_every_write_names_the_field_manager_plateau(apiserver, kube: Kube) -> None:
    apiserver.apply((REPO / "crds" / "trainingjob.yaml").read_text(), GPU_POD, {
        "apiVersion": "plateau.dev/v1alpha1", "kind": "TrainingJob", "metadata": {"name": "tj", "namespace": "default"},
        "spec": {"workloadRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "serve"},
                 "stop": {"maxDuration": "1h"}}})
    apiserver.apply({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "serve", "namespace": "default"},
                     "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "serve"}},
                              "template": {"metadata": {"labels": {"app": "serve"}},
                                           "spec": {"containers": [{"name": "c", "image": "serve:1"}]}}}})
    [tj] = apiserver.objects("plateau.dev/v1alpha1", "TrainingJob", "default")
    await kube.patch_status("default", "tj", {"phase": "Running"})
    await kube.patch_scale("apps", "v1", "deployments", "default", "serve", 0)
    await kube.create_job("default", {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "tj"}, "spec": {
        "template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "train:1"}]}}}})
    await kube.patch_object("batch", "v1", "jobs", "default", "tj", {"spec": {"suspend": True}})
    await kube.annotate_pod("default", "trainer-0", {"plateau.dev/stop": "Manual"})
    await kube.post_event(tj, "Normal", "Stopped", "stopped")
    elector = LeaderElector(kube.api_client, "default", "plateau", "op-1", timeout=(2.0, 5.0))
    assert await elector.try_acquire_or_renew() and await elector.try_acquire_or_renew()  # create, then update
    writes = [r for r in apiserver.log if r.verb in ("create", "update", "patch")]
    assert {(r.verb, r.resource, r.subresource) for r in writes} == {
        ("patch", "trainingjobs", "status"), ("patch", "deployments", "scale"),
        ("create", "jobs", ""), ("patch", "jobs", ""), ("patch", "pods", ""), ("create", "events", ""),
        ("create", "leases", ""), ("update", "leases", "")}
    assert all(r.status in (200, 201) for r in writes), [(r.path, r.status) for r in writes]
    assert [r.query.get("fieldManager") for r in writes] == [FIELD_MANAGER] * len(writes)
