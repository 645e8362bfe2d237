"""End to end: real trainer, sidecar, Prometheus and operator processes; emulated API.

Each test applies a TrainingJob and watches the operator stop it for one reason.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from plateau.controller.children import SHARED_VOLUME
from tests.e2e.harness import Environment, existing_job, training_job, trainer
from tests.support.dcgm import DcgmExporter

pytestmark = pytest.mark.e2e


async def test_plateau_stops_the_job_with_the_handshake_and_tells_the_story(tmp_path: Path) -> None:
    async with Environment(tmp_path, ["tj-plateau"]) as env:
        env.start_operator()
        env.create(training_job(
            "tj-plateau",
            {"metric": {"name": "val_loss", "patience": 3, "minDelta": {"relative": 0.05}}, "gracePeriod": "20s"},
            trainer("--lr", "1.0", "--epochs", "400", "--sleep", "0.4"),
        ))
        status = await env.wait_phase("tj-plateau", "Stopped")
        assert status["reason"] == "Plateau"
        assert "has not improved by 5.00% for" in status["message"]
        assert "the trainer exited" in status["message"]  # it checkpointed and exited in the grace period
        metric = status["metric"]
        assert metric["name"] == "val_loss" and metric["best"] <= metric["last"] + 1e-12
        assert status["evaluations"] >= 4 and status["stopTime"] and status["startTime"]
        assert env.kubelet.finished["tj-plateau"] == 0
        assert (env.kubelet.volume("tj-plateau", SHARED_VOLUME) / "metrics.jsonl").exists()  # the trainer wrote where its sidecar reads
        await env.wait_events("tj-plateau", ["Running", "StopRequested", "Stopped"])
        conditions = {c["type"]: c for c in status["conditions"]}
        assert conditions["MetricsAvailable"]["status"] == "True"
        assert conditions["StopRequested"]["reason"] == "Plateau"


async def test_target_divergence_and_nan_each_stop_for_their_reason(tmp_path: Path) -> None:
    jobs = ["tj-target", "tj-diverge", "tj-nan"]
    async with Environment(tmp_path, jobs) as env:
        env.start_operator()
        slow = ("--epochs", "200", "--sleep", "0.3")
        env.create(
            training_job("tj-target", {"metric": {"name": "accuracy", "mode": "max", "target": 0.9}, "gracePeriod": "20s"},
                         trainer("--lr", "0.3", *slow)),
            # lr 3 from the start: val_loss stays finite, near 20
            training_job("tj-diverge", {"metric": {"name": "val_loss", "divergence": 5.0, "checkFinite": False}},
                         trainer("--lr", "3", *slow)),
            training_job("tj-nan", {"metric": {"name": "val_loss", "patience": 50}}, trainer("--lr", "0.3", "--nan-at-epoch", "4", *slow)),
        )
        target = await env.wait_phase("tj-target", "Succeeded")
        assert target["reason"] == "TargetReached" and target["metric"]["best"] >= 0.9
        diverged = await env.wait_phase("tj-diverge", "Stopped")
        assert diverged["reason"] == "Diverged" and "above the divergence threshold 5" in diverged["message"]
        nan = await env.wait_phase("tj-nan", "Stopped")
        assert nan["reason"] == "NotFinite" and nan["metric"]["nonFinite"] >= 1
        assert "last" not in nan["metric"] or nan["metric"]["last"] is None  # JSON has no NaN


async def test_deadline_with_a_trainer_that_ignores_the_stop_request(tmp_path: Path) -> None:
    async with Environment(tmp_path, ["tj-deadline"]) as env:
        env.start_operator()
        env.create(training_job("tj-deadline", {"maxDuration": "6s", "gracePeriod": "3s"},
                                trainer("--lr", "0.3", "--epochs", "500", "--sleep", "0.3", "--ignore-stop")))
        status = await env.wait_phase("tj-deadline", "Stopped")
        assert status["reason"] == "DeadlineExceeded" and "gracePeriod 3s is over" in status["message"]
        assert status["runningSeconds"] >= 6
        assert env.child_job("tj-deadline")["spec"]["suspend"] is True
        pod = await env.wait("the trainer terminated", lambda: env.kubelet.pods["tj-deadline"].terminated and env.kubelet.pods["tj-deadline"])
        assert pod.signals and pod.signals[0] == "SIGTERM"
        await env.wait_events("tj-deadline", ["Running", "StopRequested", "Stopped"])


async def test_budget_counts_gpu_hours_of_the_running_pods(tmp_path: Path) -> None:
    async with Environment(tmp_path, ["tj-budget"]) as env:
        env.start_operator()
        env.create(training_job("tj-budget", {"maxGpuHours": 0.004, "gracePeriod": "0s"},
                                trainer("--lr", "0.3", "--epochs", "500", "--sleep", "0.3"), gpus=2))
        status = await env.wait_phase("tj-budget", "Stopped")
        assert status["reason"] == "BudgetExhausted"
        # two GPUs: 0.004 GPU-hours are 7.2 s of running time
        assert status["gpuHours"] >= 0.004 and 7.2 <= status["runningSeconds"] < 30
        assert status["gpuHoursSaved"] == 0.0
        assert env.child_job("tj-budget")["spec"]["suspend"] is True


async def test_dry_run_reports_would_stop_and_lets_the_run_finish(tmp_path: Path) -> None:
    async with Environment(tmp_path, ["tj-shadow"]) as env:
        env.start_operator()
        env.create(training_job("tj-shadow", {"metric": {"name": "val_loss", "patience": 3, "minDelta": {"relative": 0.05}},
                                              "dryRun": True, "maxDuration": "1h"},
                                trainer("--lr", "1.0", "--epochs", "45", "--sleep", "0.3")))
        status = await env.wait_phase("tj-shadow", "Succeeded")
        assert status["reason"] == "Completed"
        would = status["wouldStop"]
        assert would["reason"] == "Plateau" and would["step"] < status["metric"]["lastStep"]
        assert would["gpuHoursSaved"] == 0.0  # no GPUs here; a deadline makes it computable
        await env.wait_events("tj-shadow", ["Running", "WouldStop", "Succeeded"])
        assert not env.child_job("tj-shadow")["spec"].get("suspend")


async def test_cohort_median_stops_the_laggard_only(tmp_path: Path) -> None:
    names = ["trial-a", "trial-b", "trial-c", "trial-slow"]
    async with Environment(tmp_path, names) as env:
        env.start_operator()
        cohort = {"selector": {"matchLabels": {"sweep": "lr"}}, "minJobs": 2, "startStep": 60}
        def trial(name: str, lr: str) -> dict:
            return training_job(name, {"metric": {"name": "val_loss"}, "cohort": cohort, "gracePeriod": "0s"},
                                trainer("--lr", lr, "--epochs", "60", "--sleep", "0.5"), labels={"sweep": "lr"})

        # The sweep's first trials start first; the laggard joins once they run, as in a real sweep.
        env.create(*(trial(name, "1.0") for name in names[:3]))
        for name in names[:3]:
            await env.wait_phase(name, "Running")
        env.create(trial("trial-slow", "0.002"))
        slow = await env.wait_phase("trial-slow", "Stopped")
        assert slow["reason"] == "CohortUnderperforming" and "cohort median" in slow["message"]
        for name in names[:3]:
            done = await env.wait_phase(name, "Succeeded", "Stopped")
            assert done["reason"] == "Completed", done


async def test_gpu_idle_fires_on_dcgm_data_and_never_without_it(tmp_path: Path, dcgm_exporter: DcgmExporter) -> None:
    async with Environment(tmp_path, ["tj-idle", "tj-mig"], extra_targets=((dcgm_exporter.address, {}),)) as env:
        dcgm_exporter.set(pod=env.slots[0].pod, namespace="default", profiling=0.004, device=0.0)
        # a MIG slice without profiling metrics: the device metric reads 0, which is not idleness
        dcgm_exporter.set(pod=env.slots[1].pod, namespace="default", profiling=None, device=0.0, mig=True)
        env.start_operator()
        rule = {"gpuIdle": {"below": 0.05, "for": "1m"}, "gracePeriod": "0s"}
        env.create(training_job("tj-idle", rule, trainer("--lr", "0.3", "--epochs", "5000", "--sleep", "0.5"), gpus=1),
                   training_job("tj-mig", rule, trainer("--lr", "0.3", "--epochs", "5000", "--sleep", "0.5"), gpus=1))
        status = await env.wait_phase("tj-idle", "Stopped", timeout=150)
        assert status["reason"] == "GpuIdle" and "at most 0.4%" in status["message"]
        mig = env.status("tj-mig")
        assert mig["phase"] == "Running"
        conditions = {c["type"]: c for c in mig["conditions"]}
        assert conditions["GpuMetricsAvailable"]["status"] == "False"


async def test_workload_ref_suspends_an_existing_job(tmp_path: Path) -> None:
    async with Environment(tmp_path, ["nightly-finetune"]) as env:
        env.start_operator()
        env.create(existing_job("nightly-finetune", trainingjob="tj-ref",
                                command=trainer("--lr", "0.3", "--epochs", "500", "--sleep", "0.3", "--ignore-stop")))
        await env.wait("the existing Job running", lambda: "nightly-finetune" in env.kubelet.pods)
        env.create({
            "apiVersion": "plateau.dev/v1alpha1", "kind": "TrainingJob",
            "metadata": {"name": "tj-ref", "namespace": "default"},
            "spec": {"workloadRef": {"apiVersion": "batch/v1", "kind": "Job", "name": "nightly-finetune"},
                     "stop": {"metric": {"name": "accuracy", "mode": "max", "target": 0.9}, "gracePeriod": "2s"}},
        })
        status = await env.wait_phase("tj-ref", "Succeeded")
        assert status["reason"] == "TargetReached"
        assert env.child_job("nightly-finetune")["spec"]["suspend"] is True
        pod = env.kubelet.pods["nightly-finetune"]
        await env.wait("suspending ended the trainer", lambda: pod.terminated and pod.trainer.poll() is not None)
        assert pod.signals[:1] in ([], ["SIGTERM"])  # SIGTERM if it still ran (it ignores the request)
        assert not [j for j in env.api.objects("batch/v1", "Job", "default") if j["metadata"]["name"] == "tj-ref"]
