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
