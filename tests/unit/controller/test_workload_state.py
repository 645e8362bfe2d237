"""What plateau.controller.workload_state reads from the objects real controllers write: which pods run
(Ready), which only exist (pending), and why pods wait, from the pod status the scheduler and
kubelet write (shapes as the Kubernetes API reference documents them)."""

from __future__ import annotations

import copy
from typing import Any, Callable, Iterator

import pytest

from plateau.engine.stopflow import Waiting, WorkloadState
from plateau.controller.workload_state import (MESSAGE_LIMIT, jobset_state, job_state, kubeflow_state, pod_waiting,
                                               scaled_state)

TEMPLATE = {"spec": {"containers": [{"name": "t", "resources": {"limits": {"nvidia.com/gpu": 2}}}]}}


def test_a_job_runs_when_its_pods_are_ready_not_when_they_are_active() -> None:
    """The Job controller counts pending pods in `active`; `ready` counts the Ready ones."""
    pending = job_state({"spec": {"template": TEMPLATE}, "status": {"active": 2, "ready": 0}})
    assert (pending.active, pending.running, pending.gpus) == (2, 0, 0)
    half = job_state({"spec": {"template": TEMPLATE}, "status": {"active": 2, "ready": 1}})
    assert (half.active, half.running, half.gpus) == (2, 1, 2)


def test_kubeflow_pods_run_once_the_job_is_running() -> None:
    spec = {"pytorchReplicaSpecs": {"Master": {"replicas": 1, "template": TEMPLATE}}}
    created = kubeflow_state({"spec": spec, "status": {"replicaStatuses": {"Master": {"active": 1}},
                                                       "conditions": [{"type": "Created", "status": "True"}]}})
    assert (created.active, created.running, created.gpus) == (1, 0, 0)
    running = kubeflow_state({"spec": spec, "status": {"replicaStatuses": {"Master": {"active": 1}},
                                                       "conditions": [{"type": "Running", "status": "True"}]}})
    assert (running.running, running.gpus) == (1, 2)


def test_jobset_runs_by_its_ready_jobs() -> None:
    spec = {"replicatedJobs": [{"replicas": 1, "template": {"spec": {"template": TEMPLATE}}}]}
    waiting = jobset_state({"spec": spec, "status": {"replicatedJobsStatus": [{"active": 1, "ready": 0}]}})
    ready = jobset_state({"spec": spec, "status": {"replicatedJobsStatus": [{"active": 1, "ready": 1}]}})
    assert (waiting.running, waiting.gpus, ready.running, ready.gpus) == (0, 0, 1, 2)


def test_apps_workloads_run_by_ready_replicas_and_other_scale_kinds_by_replicas() -> None:
    deployment = {"apiVersion": "apps/v1", "spec": {"template": TEMPLATE}, "status": {"replicas": 2}}
    scale = {"spec": {"replicas": 2}, "status": {"replicas": 2}}
    assert scaled_state(deployment, scale).running == 0  # readyReplicas is left out when 0
    deployment["status"]["readyReplicas"] = 1
    assert (scaled_state(deployment, scale).running, scaled_state(deployment, scale).gpus) == (1, 2)
    custom = {"apiVersion": "example.com/v1", "spec": {}, "status": {}}
    assert scaled_state(custom, scale).running == 2  # nothing else to go by


def pod(name: str, **status: Any) -> dict[str, Any]:
    return {"metadata": {"name": name}, "status": {"phase": "Pending", **status}}


def test_why_pods_wait_comes_from_the_first_pod_that_is_not_ready() -> None:
    ready = pod("a", phase="Running", conditions=[{"type": "Ready", "status": "True"}])
    unschedulable = pod("b", conditions=[{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                                          "message": "0/3 nodes are available: 3 Insufficient nvidia.com/gpu."}])
    assert pod_waiting([ready, unschedulable]) == Waiting(
        "Unschedulable", "pod b: 0/3 nodes are available: 3 Insufficient nvidia.com/gpu.")
    assert pod_waiting([ready]) is None
    assert pod_waiting([]) is None


def test_stuck_containers_init_and_starting_pods_are_told_apart() -> None:
    scheduled = {"type": "PodScheduled", "status": "True"}
    image = pod("p", conditions=[scheduled], containerStatuses=[
        {"name": "trainer", "state": {"waiting": {"reason": "ImagePullBackOff", "message": "Back-off pulling image \"t:1\""}}}])
    assert pod_waiting([image]) == Waiting("ImagePullBackOff", "pod p: container trainer: Back-off pulling image \"t:1\"")
    crash = pod("p", conditions=[scheduled], initContainerStatuses=[
        {"name": "plateau-sidecar", "state": {"waiting": {"reason": "CrashLoopBackOff"}}}])
    assert pod_waiting([crash]) == Waiting("CrashLoopBackOff", "pod p: container plateau-sidecar: CrashLoopBackOff")
    init = pod("p", conditions=[scheduled, {"type": "Initialized", "status": "False"}], initContainerStatuses=[
        {"name": "setup", "state": {"running": {}}}])
    assert pod_waiting([init]).reason == "PodInitializing"  # type: ignore[union-attr]
    creating = pod("p", conditions=[scheduled, {"type": "Initialized", "status": "True"}], containerStatuses=[
        {"name": "trainer", "state": {"waiting": {"reason": "ContainerCreating"}}}])
    assert pod_waiting([creating]).reason == "ContainersStarting"  # type: ignore[union-attr]
    assert pod_waiting([pod("p")]) == Waiting("Unscheduled", "pod p: not scheduled yet")


def test_a_waiting_message_is_bounded() -> None:
    huge = pod("p", conditions=[{"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "x" * 100_000}])
    assert len(pod_waiting([huge]).message) == 512  # type: ignore[union-attr]


def test_a_sidecar_that_lost_its_restart_policy_is_noticed() -> None:
    """Without the SidecarContainers gate a v1.28 server drops `restartPolicy` from init
    containers and answers 201: the Job as stored is what tells."""
    native = {"name": "plateau-sidecar", "restartPolicy": "Always"}
    as_sent = {"template": {"spec": {"initContainers": [native], "containers": [{"name": "t"}]}}}
    as_stored = {"template": {"spec": {"initContainers": [{"name": "plateau-sidecar"}], "containers": [{"name": "t"}]}}}
    assert not job_state({"spec": as_sent}).sidecar_dropped
    assert job_state({"spec": as_stored}).sidecar_dropped
    other_init = {"template": {"spec": {"initContainers": [{"name": "setup"}], "containers": [{"name": "t"}]}}}
    assert not job_state({"spec": other_init}).sidecar_dropped


def test_a_job_kueue_has_not_admitted_waits_queued() -> None:
    queued = {"metadata": {"labels": {"kueue.x-k8s.io/queue-name": "team-a"}}, "spec": {"suspend": True, "template": TEMPLATE}}
    assert job_state(queued).waiting == Waiting("Queued", "waiting for Kueue to admit the workload (queue team-a)")
    queued["spec"]["suspend"] = False
    assert job_state(queued).waiting is None
    assert job_state({"spec": {"suspend": True, "template": TEMPLATE}}).waiting is None  # not Kueue's


def test_gpus_per_pod_counts_every_containers_limit_and_nothing_else() -> None:
    from plateau.controller.workload_state import gpus_per_pod

    assert gpus_per_pod({"containers": [{"name": "a"}]}) == 0
    assert gpus_per_pod({"containers": [{"name": "a", "resources": {"limits": {"nvidia.com/gpu": 1}}},
                                        {"name": "b", "resources": {"limits": {"nvidia.com/gpu": "2", "cpu": 4}}}]}) == 3
    assert gpus_per_pod({"containers": [{"name": "a", "resources": {"limits": {"nvidia.com/gpu": "1.5"}}}]}) == 0


def test_a_short_name_is_its_own_label_value_and_a_long_one_keeps_a_prefix_and_a_hash() -> None:
    from plateau.controller.children import label_value

    assert label_value("resnet-plateau") == "resnet-plateau"
    long = label_value("x" * 100)
    assert len(long) <= 63 and long.startswith("x" * 52) and long != label_value("x" * 99)


def test_gpus_of_jobsets_and_kubeflow_jobs_count_every_pod_of_every_replica() -> None:
    jobset = {"spec": {"replicatedJobs": [{"replicas": 2, "template": {"spec": {"parallelism": 3, "template": TEMPLATE}}}]},
              "status": {"replicatedJobsStatus": [{"active": 2, "ready": 2}]}}
    assert jobset_state(jobset).gpus == 2 * 3 * 2
    pytorch = {"spec": {"runPolicy": {"suspend": False, "cleanPodPolicy": "None"},
                        "pytorchReplicaSpecs": {"Master": {"replicas": 1, "template": TEMPLATE},
                                                "Worker": {"replicas": 3, "template": TEMPLATE}}},
               "status": {"replicaStatuses": {"Master": {"active": 1}, "Worker": {"active": 3}},
                          "conditions": [{"type": "Running", "status": "True"}]}}
    assert kubeflow_state(pytorch).gpus == (1 + 3) * 2  # runPolicy is no replica spec


def test_a_suspended_jobset_is_observed_suspended() -> None:
    spec = {"suspend": True, "replicatedJobs": [{"replicas": 1, "template": {"spec": {"template": TEMPLATE}}}]}
    assert jobset_state({"spec": spec, "status": {}}).suspended
    assert not jobset_state({"spec": {**spec, "suspend": False}, "status": {}}).suspended


def test_counts_a_status_leaves_out_are_zero() -> None:
    """The API leaves zero counts out of a status (omitempty): an absent `active` is no pod."""
    assert (job_state({"spec": {"template": TEMPLATE}, "status": {}}).active, job_state({"spec": {}}).running) == (0, 0)
    spec = {"replicatedJobs": [{"replicas": 1, "template": {"spec": {"template": TEMPLATE}}}]}
    assert jobset_state({"spec": spec, "status": {"replicatedJobsStatus": [{"ready": 0}, {"active": 2}]}}).active == 2


def test_only_a_queued_workload_carries_its_uid_for_kueue() -> None:
    meta = {"uid": "u1"}
    assert job_state({"metadata": meta, "spec": {}}).kueue_uid == ""
    queued = {"metadata": {**meta, "labels": {"kueue.x-k8s.io/queue-name": "team-a"}}, "spec": {}}
    assert job_state(queued).kueue_uid == "u1"


def test_a_scaled_workload_is_suspended_at_zero_replicas_wanted_and_keeps_the_count() -> None:
    deployment = {"apiVersion": "apps/v1", "spec": {"template": TEMPLATE}, "status": {"replicas": 1}}
    scaled_down = scaled_state(deployment, {"spec": {"replicas": 0}, "status": {"replicas": 1}})
    assert scaled_down.suspended and scaled_down.active == 1  # its pod is still going away
    up = scaled_state(deployment, {"spec": {"replicas": 3}, "status": {"replicas": 1}})
    assert not up.suspended and up.scale_replicas == 3


def test_a_job_succeeds_on_its_true_complete_condition_only() -> None:
    def job(*conditions: tuple[str, str]) -> dict[str, Any]:
        return {"spec": {"template": TEMPLATE},
                "status": {"conditions": [{"type": t, "status": s} for t, s in conditions]}}

    assert job_state(job(("Complete", "True"))).succeeded
    assert not job_state(job(("Complete", "False"))).succeeded and not job_state(job()).succeeded
    assert job_state(job(("Failed", "True"))).failed and not job_state(job(("Failed", "True"))).succeeded


def test_a_failed_workloads_message_is_bounded() -> None:
    """It becomes status.message and the Ready condition's: a status patch of MiBs is refused."""
    failed = {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded", "message": "E" * 3 * 2**20}
    assert job_state({"spec": {}, "status": {"conditions": [failed]}}).message == "E" * MESSAGE_LIMIT
    assert job_state({"spec": {}, "status": {"conditions": [{**failed, "message": ""}]}}).message == (
        "BackoffLimitExceeded")
    kubeflow = {"spec": {}, "status": {"conditions": [failed], "replicaStatuses": {"Master": {"failed": 1}}}}
    assert kubeflow_state(kubeflow).message == "E" * MESSAGE_LIMIT


# Shapes of every kind read, with a value at every place the readers look.
FULL_TEMPLATE = {"spec": {"containers": [{"name": "t", "resources": {"limits": {"nvidia.com/gpu": "2"}}}],
                          "initContainers": [{"name": "plateau-sidecar", "restartPolicy": "Always"}]}}
CONDITIONS = [{"type": "Failed", "status": "True", "reason": "R", "message": "m"},
              {"type": "Running", "status": "True"}, {"type": "Complete", "status": "False"}]
META = {"name": "w", "uid": "u1", "labels": {"kueue.x-k8s.io/queue-name": "q"}}
POD_STATUS = {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "True"},
                                                 {"type": "Ready", "status": "False"},
                                                 {"type": "Initialized", "status": "True"}],
              "initContainerStatuses": [{"name": "i", "state": {"running": {}}}],
              "containerStatuses": [{"name": "t",
                                     "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "m"}}}]}
READERS: dict[str, tuple[Callable[..., Any], tuple[Any, ...]]] = {
    "job": (job_state, ({"metadata": META, "spec": {"suspend": True, "template": FULL_TEMPLATE},
                         "status": {"active": 2, "ready": 1, "conditions": CONDITIONS}},)),
    "cronjob": (job_state, ({"spec": {"jobTemplate": {}}, "status": {"active": [{"kind": "Job", "name": "n-1"}]}},)),
    "kubeflow": (kubeflow_state, ({"metadata": META, "spec": {
        "runPolicy": {"suspend": False}, "pytorchReplicaSpecs": {"Master": {"replicas": 2, "template": FULL_TEMPLATE}}},
        "status": {"replicaStatuses": {"Master": {"active": 2}}, "conditions": CONDITIONS}},)),
    "jobset": (jobset_state, ({"metadata": META, "spec": {"suspend": False, "replicatedJobs": [
        {"replicas": 2, "template": {"spec": {"parallelism": 2, "template": FULL_TEMPLATE}}}]},
        "status": {"replicatedJobsStatus": [{"active": 1, "ready": 1}], "conditions": CONDITIONS}},)),
    "scaled": (scaled_state, ({"apiVersion": "apps/v1", "spec": {"template": FULL_TEMPLATE},
                               "status": {"readyReplicas": 1}},
                              {"spec": {"replicas": 2}, "status": {"replicas": 2, "selector": "app=w"}})),
    "pods": (pod_waiting, ([{"metadata": {"name": "p"}, "status": POD_STATUS}],)),
}
ODD = [None, True, -3, 1.5, "2", "x", [], ["x"], [{}], {}, {"x": 1}]


def _places(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """The path of every value inside `value` (not `value` itself)."""
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, child in items:
        yield path + (key,)
        yield from _places(child, path + (key,))


def _with(args: tuple[Any, ...], path: tuple[Any, ...], odd: Any) -> tuple[Any, ...]:
    args = copy.deepcopy(args)
    node: Any = args[path[0]]
    for key in path[1:-1]:
        node = node[key]
    node[path[-1]] = odd
    return args


@pytest.mark.parametrize("kind", READERS)
def test_a_value_of_the_wrong_type_anywhere_never_raises_and_counts_stay_counts(kind: str) -> None:
    """What the readers read is others' to write: each value in turn, at every depth, is replaced
    by one of another type (a CronJob's status.active is a list of references)."""
    read, args = READERS[kind]
    for index, arg in enumerate(args):
        for path in _places(arg, (index,)):
            for odd in ODD:
                state = read(*_with(args, path, odd))
                if isinstance(state, WorkloadState):
                    counts = (state.active, state.running, state.gpus, state.scale_replicas or 0)
                    assert all(isinstance(n, int) and n >= 0 for n in counts), (path, odd, state)
                    assert isinstance(state.message, str) and isinstance(state.kueue_uid, str), (path, odd, state)
                else:
                    assert state is None or (isinstance(state.reason, str) and isinstance(state.message, str)), (
                        path, odd, state)


def test_a_count_of_the_wrong_type_reads_as_absent() -> None:
    cronjob = READERS["cronjob"][1][0]  # status.active: the Jobs it runs, not a count
    assert (job_state(cronjob).active, job_state(cronjob).running) == (0, 0)
    odd = {"spec": {"template": TEMPLATE}, "status": {"active": "2", "ready": -1}}
    assert (job_state(odd).active, job_state(odd).running, job_state(odd).gpus) == (0, 0, 0)
