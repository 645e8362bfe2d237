"""End to end: what a real cluster does around a TrainingJob's run, as its controllers do it
(DESIGN.md's facts measured on a real v1.28 server): pods that wait before they run,
workloads applied after their TrainingJob."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.e2e.harness import Environment, existing_job, trainer, training_job

pytestmark = pytest.mark.e2e


async def test_a_pod_that_waits_for_a_node_uses_no_time_and_the_status_says_why(tmp_path: Path) -> None:
    """The Job controller counts the pending pod in `active` at once. The TrainingJob stays
    Pending, names the scheduler's reason, and its maxDuration counts from when the trainer runs."""
    async with Environment(tmp_path, ["tj-queued"]) as env:
        env.kubelet.unschedulable.add("tj-queued")
        env.start_operator()
        env.create(training_job("tj-queued", {"maxDuration": "4s", "gracePeriod": "0s"},
                                trainer("--lr", "0.3", "--epochs", "500", "--sleep", "0.3"), gpus=1))

        def ready_condition() -> dict:
            return next((c for c in env.status("tj-queued").get("conditions") or [] if c["type"] == "Ready"), {})

        waiting = await env.wait("the waiting reason", lambda: ready_condition().get("reason") == "Unschedulable" and ready_condition())
        assert waiting["status"] == "False" and "Insufficient nvidia.com/gpu" in waiting["message"]
        assert env.child_job("tj-queued")["status"]["active"] == 1  # pending, as the real controller counts it
        await asyncio.sleep(6)  # past maxDuration, all of it spent waiting
        status = env.status("tj-queued")
        assert status["phase"] == "Pending" and not status.get("runningSeconds") and not status.get("gpuHours")
        assert env.event_reasons("tj-queued") == []

        env.kubelet.unschedulable.discard("tj-queued")
        stopped = await env.wait_phase("tj-queued", "Stopped")
        assert stopped["reason"] == "DeadlineExceeded"
        assert 4 <= stopped["runningSeconds"] < 15 and stopped["gpuHours"] == pytest.approx(stopped["runningSeconds"] / 3600)
        await env.wait_events("tj-queued", ["Running", "StopRequested", "Stopped"])


async def test_a_workload_ref_applied_before_its_job_waits_for_it_then_stops_it(tmp_path: Path) -> None:
    """GitOps tools apply in any order: the TrainingJob first, its Job a while later."""
    async with Environment(tmp_path, ["late-job"]) as env:
        env.start_operator()
        env.create({
            "apiVersion": "plateau.dev/v1alpha1", "kind": "TrainingJob",
            "metadata": {"name": "tj-early", "namespace": "default"},
            "spec": {"workloadRef": {"apiVersion": "batch/v1", "kind": "Job", "name": "late-job"},
                     "stop": {"maxDuration": "3s", "gracePeriod": "0s"}},
        })

        def ready_condition() -> dict:
            return next((c for c in env.status("tj-early").get("conditions") or [] if c["type"] == "Ready"), {})

        await env.wait("the wait for the workload", lambda: ready_condition().get("reason") == "WorkloadNotFound")
        await asyncio.sleep(4)  # several cycles without the workload: still waiting, nothing ended
        assert env.status("tj-early")["phase"] == "Pending" and env.event_reasons("tj-early") == []

        env.create(existing_job("late-job", trainingjob="tj-early",
                                command=trainer("--lr", "0.3", "--epochs", "500", "--sleep", "0.3")))
        stopped = await env.wait_phase("tj-early", "Stopped")
        assert stopped["reason"] == "DeadlineExceeded"
        assert env.child_job("late-job")["spec"]["suspend"] is True
        await env.wait_events("tj-early", ["Running", "StopRequested", "Stopped"])


KUEUE_WORKLOADS = ("kueue.x-k8s.io/v1beta1", "Workload")


def kueue_workload(env: Environment, job: str) -> dict:
    uid = env.child_job(job)["metadata"]["uid"]
    found = [w for w in env.api.objects(*KUEUE_WORKLOADS, "default")
             if any(o["uid"] == uid for o in w["metadata"].get("ownerReferences") or [])]
    return found[0] if found else {}


async def test_the_kueue_stand_in_starts_an_admitted_job_that_was_only_suspended(tmp_path: Path) -> None:
    """Pins the stand-in on what Kueue's docs say its Job integration does: a plain suspend of
    an admitted Job is undone; deactivating the Workload evicts and suspends it for good."""
    async with Environment(tmp_path, ["queued-job"], kueue=True) as env:
        job = existing_job("queued-job", trainingjob="none", command=trainer("--epochs", "500", "--sleep", "0.3"))
        job["metadata"]["labels"] = {"kueue.x-k8s.io/queue-name": "team-a"}
        job["spec"]["suspend"] = True  # as Kueue's webhook makes it
        env.create(job)
        await env.wait("admission", lambda: env.kueue.starts == ["queued-job"])
        path = "/apis/batch/v1/namespaces/default/jobs/queued-job"
        assert (await env.request("PATCH", path, {"spec": {"suspend": True}}))[0] == 200
        await env.wait("Kueue starting it again", lambda: env.kueue.starts == ["queued-job"] * 2)
        workload = kueue_workload(env, "queued-job")
        assert workload["metadata"]["labels"]["kueue.x-k8s.io/job-uid"] == env.child_job("queued-job")["metadata"]["uid"]
        code, _ = await env.request("PATCH", f"/apis/kueue.x-k8s.io/v1beta1/namespaces/default/workloads/{workload['metadata']['name']}",
                                    {"spec": {"active": False}})
        assert code == 200
        await env.wait("eviction", lambda: env.child_job("queued-job")["spec"].get("suspend") is True)
        await asyncio.sleep(2)
        assert env.child_job("queued-job")["spec"]["suspend"] is True and len(env.kueue.starts) == 2


async def test_a_kueue_queued_job_is_stopped_through_its_workload_and_resumed_through_it(tmp_path: Path) -> None:
    async with Environment(tmp_path, ["tj-kueue"], kueue=True) as env:
        env.start_operator()
        env.create(training_job("tj-kueue", {"maxDuration": "4s", "gracePeriod": "1s"},
                                trainer("--lr", "0.3", "--epochs", "500", "--sleep", "0.3", "--ignore-stop"),
                                labels={"kueue.x-k8s.io/queue-name": "team-a", "team": "vision"}))
        stopped = await env.wait_phase("tj-kueue", "Stopped")
        assert stopped["reason"] == "DeadlineExceeded" and stopped["runningSeconds"] >= 4
        [created] = [c.body for c in env.api.calls("create", "jobs")]
        assert created["spec"]["suspend"] is True  # queued: Kueue starts it once admitted
        assert created["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "team-a"
        assert "team" not in created["metadata"]["labels"]  # only Kueue's labels pass to the Job
        workload = await env.wait("the eviction", lambda: _true(kueue_workload(env, "tj-kueue"), "Evicted") and kueue_workload(env, "tj-kueue"))
        assert workload["spec"]["active"] is False and not workload["status"].get("admission")  # quota released
        await asyncio.sleep(3)  # Kueue runs all the while: the stop holds
        assert env.child_job("tj-kueue")["spec"]["suspend"] is True and env.kueue.starts == ["tj-kueue"]
        assert env.kubelet.pods["tj-kueue"].terminated

        # A spec edit resumes: through the Workload, which Kueue admits and starts again.
        code, _ = await env.request("PATCH", "/apis/plateau.dev/v1alpha1/namespaces/default/trainingjobs/tj-kueue",
                                    {"spec": {"stop": {"maxDuration": "1h", "gracePeriod": "1s"}}})
        assert code == 200
        await env.wait("Kueue starting it again", lambda: env.kueue.starts == ["tj-kueue", "tj-kueue"])
        await env.wait_phase("tj-kueue", "Running")
        assert kueue_workload(env, "tj-kueue")["spec"]["active"] is True


def _true(obj: dict, type_: str) -> bool:
    return any(c["type"] == type_ and c["status"] == "True" for c in (obj.get("status") or {}).get("conditions") or [])


async def test_without_native_sidecars_the_job_fails_loudly_instead_of_hanging_in_init(tmp_path: Path) -> None:
    """A v1.28 server without the SidecarContainers gate drops the sidecar's restartPolicy and
    answers 201; its pods would hang in Init:0/1 for ever."""
    async with Environment(tmp_path, ["tj-old-cluster"], feature_gates={"SidecarContainers": False}) as env:
        env.start_operator()
        env.create(training_job("tj-old-cluster", {"maxDuration": "1h"}, trainer("--epochs", "5")))
        failed = await env.wait_phase("tj-old-cluster", "Failed")
        assert failed["reason"] == "SidecarUnsupported" and "SidecarContainers" in failed["message"]
        assert env.child_job("tj-old-cluster")["spec"]["suspend"] is True  # nothing holds GPUs in Init
        assert "tj-old-cluster" not in env.kubelet.pods  # the pod hung in Init: no trainer ever ran
        await env.wait_events("tj-old-cluster", ["Failed"])
        [event] = env.events("tj-old-cluster")
        assert event["type"] == "Warning" and "1.29" in event["message"]


async def test_a_template_field_the_server_does_not_know_is_reported_not_dropped(tmp_path: Path) -> None:
    """The CRD's schema is Kubernetes 1.35's, the server may be older: the operator creates the
    Job with strict field validation, and a field the server would drop is a SpecValid=False."""
    async with Environment(tmp_path, ["tj-new-field"]) as env:
        env.start_operator()
        job = training_job("tj-new-field", {"maxDuration": "1h"}, trainer("--epochs", "5"))
        job["spec"]["template"]["spec"]["containers"][0]["lifecycle"] = {"preStop": {"sleep": {"seconds": 5}}}  # 1.29+
        env.create(job)

        def spec_valid() -> dict:
            return next((c for c in env.status("tj-new-field").get("conditions") or [] if c["type"] == "SpecValid"), {})

        condition = await env.wait("SpecValid=False", lambda: spec_valid().get("status") == "False" and spec_valid())
        assert condition["reason"] == "InvalidSpec"
        assert 'unknown field "spec.template.spec.containers[0].lifecycle.preStop.sleep"' in condition["message"]
        assert not env.child_job("tj-new-field") and env.status("tj-new-field").get("phase", "Pending") == "Pending"
        creates = len(env.api.calls("create", "jobs"))
        await asyncio.sleep(3)  # the same spec is not sent again each cycle
        assert len(env.api.calls("create", "jobs")) == creates == 1
