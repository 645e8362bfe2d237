"""The operator's Kubernetes calls (plateau.kube) against the emulated API server.

The typed models of the `kubernetes` client reject objects that servers hold and serve (a
quantity given as an int, `nvidia.com/gpu: 1`), so calls whose answer the operator does not
need must not parse it: a parse error after the server applied a stop request would make
the operator believe the request failed.
"""

from __future__ import annotations

import pytest
from kubernetes import client, config

from plateau.kube import ApiError, Kube, NotFound

GPU_POD = {
    "apiVersion": "v1", "kind": "Pod",
    "metadata": {"name": "trainer-0", "namespace": "default", "labels": {"job-name": "trainer"}},
    "spec": {"containers": [{"name": "trainer", "image": "trainer:1", "resources": {"limits": {"nvidia.com/gpu": 1}}}]},
}


@pytest.fixture
def kube(kubeconfig: str) -> Kube:
    configuration = client.Configuration()
    config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
    return Kube(client.ApiClient(configuration))


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
    from plateau import rbac
    from plateau.workloads import Workload

    apiserver.apply(DEPLOYMENT)
    apiserver.grant("system:serviceaccount:plateau-system:plateau", rbac.RULES)
    path = apiserver.write_kubeconfig(str(tmp_path / "op.kubeconfig"),
                                      token=apiserver.service_account_token("plateau-system", "plateau"))
    configuration = client.Configuration()
    config.load_kube_config(config_file=path, client_configuration=configuration)
    workload = Workload(Kube(client.ApiClient(configuration)), "default", "apps/v1", "Deployment", "serve-and-train")

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
