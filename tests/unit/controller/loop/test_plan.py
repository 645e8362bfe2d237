"""When the loop may skip a job's plan (plan.steady), and what reaches a plan and comes of it."""

from __future__ import annotations

from typing import Any, Optional

from plateau import api
from plateau.controller.loop import plan
from plateau.controller.loop.context import JobContext
from plateau.controller.loop.memory import Memory
from plateau.controller.loop.plan import Reads
from plateau.engine.status import set_condition
from plateau.engine.fold import MetricTrack
from plateau.engine.rules import GpuWindow
from plateau.engine.stopflow import Resume, WorkloadState, rfc3339_at
from plateau.prometheus.summaries import SidecarTrack
from tests.unit.controller.loop.cases import RUNS, SETTINGS, T0, body, new_loop, planner, steady_case


def steady(ctx: JobContext, memory: Memory, tracks: dict[tuple[str, str], SidecarTrack],
           error: Optional[tuple[str, str]], now: float) -> bool:
    return plan.steady(ctx, memory, Reads(tracks, error), now, SETTINGS)


def test_a_job_with_nothing_new_is_steady() -> None:
    ctx, memory, summaries = steady_case()
    assert steady(ctx, memory, summaries, None, T0 + 10)


def test_a_job_is_not_steady_once_anything_its_plan_reads_moved() -> None:
    ctx, memory, summaries = steady_case()
    assert not steady(ctx, memory, summaries, None, T0 + 30)  # a progress write is due
    assert not steady(ctx, memory, {("n", "j"): SidecarTrack(8, ctx.spec_key, None)}, None, T0 + 10)  # a report
    assert not steady(ctx, memory, {}, None, T0 + 10)  # no read
    assert not steady(ctx, memory, summaries, ("Timeout", "t"), T0 + 10)
    ctx.state = WorkloadState(exists=True, active=0)
    assert not steady(ctx, memory, summaries, None, T0 + 10)  # the workload changed
    ctx.state = RUNS
    memory.steady = None
    assert not steady(ctx, memory, summaries, None, T0 + 10)  # the last plan asked for something


def test_a_job_is_not_steady_when_its_metrics_are_unavailable_or_it_is_not_running() -> None:
    ctx, memory, summaries = steady_case()
    memory.status = memory.status.model_copy(update={"conditions": set_condition(
        memory.status.conditions, "MetricsAvailable", "False", "NoSeries", "", rfc3339_at(T0), 1)})
    assert not steady(ctx, memory, summaries, None, T0 + 10)
    ctx, memory, summaries = steady_case(phase="Stopping")
    assert not steady(ctx, memory, summaries, None, T0 + 10)


def test_gpu_idle_and_cohort_jobs_are_never_steady() -> None:
    """Their inputs (GPU samples, peers' values) move without a report."""
    extras: tuple[dict[str, Any], ...] = ({"gpuIdle": {"below": 0.05, "for": "10m"}},
                                          {"cohort": {"selector": {"matchLabels": {"a": "b"}}, "percentile": 50}})
    for extra in extras:
        ctx, memory, summaries = steady_case({"metric": {"name": "loss", "patience": 3}, **extra})
        assert not steady(ctx, memory, summaries, None, T0 + 10)


def test_a_job_near_its_budget_is_not_steady() -> None:
    ctx, memory, summaries = steady_case({"metric": {"name": "loss"}, "maxDuration": "1h"}, runningSeconds=3000.0)
    assert steady(ctx, memory, summaries, None, T0 + 10)  # 3010 s used, 30 s margin: 3040 < 3600
    ctx, memory, summaries = steady_case({"metric": {"name": "loss"}, "maxDuration": "1h"}, runningSeconds=3560.0)
    assert not steady(ctx, memory, summaries, None, T0 + 10)  # 3600 within reach
    for limit, reached in ((2.05, False), (2.04, True)):  # 4 GPUs for 40 s: 0.0444 GPU-hours ahead
        ctx, memory, summaries = steady_case({"metric": {"name": "loss"}, "maxGpuHours": limit}, gpuHours=2.0)
        ctx.state = WorkloadState(exists=True, active=1, running=1, gpus=4)
        memory.steady = (1, ctx.state)
        assert steady(ctx, memory, summaries, None, T0 + 10) is not reached, limit


def test_a_child_job_resumes_with_the_spec_s_replicas_not_a_kept_size() -> None:
    """replicasBeforeStop is for workloadRefs scaled to 0; a child Job is ours, sized by the spec."""
    b = body({"phase": "Stopped", "reason": "Manual", "observedGeneration": 1, "replicasBeforeStop": 5})
    b["metadata"]["generation"] = 2
    b["spec"]["replicas"] = 2
    spec = api.TrainingJobSpec.model_validate(b["spec"])
    ctx = JobContext(b, spec, spec.stop, api.TrainingJobStatus.model_validate(b["status"]))
    ctx.state = WorkloadState(exists=True, suspended=True)
    made = plan.job(planner(new_loop(), T0), ctx, Reads({}))
    assert made.status.phase == "Running" and Resume(2) in made.actions


def context(stop: dict[str, Any], name: str = "j", namespace: str = "n") -> JobContext:
    b = body(name=name)
    b["metadata"]["namespace"] = namespace
    b["spec"]["stop"] = stop
    spec = api.TrainingJobSpec.model_validate(b["spec"])
    return JobContext(b, spec, spec.stop, api.TrainingJobStatus())


def test_the_gpu_condition_names_a_prometheus_failure_an_absent_series_or_the_covered_window() -> None:
    ctx = context({"gpuIdle": {"below": 0.05, "for": "10m"}})
    now = rfc3339_at(T0)
    cases = [(("Timeout", "prometheus took too long"), None, "False", "Timeout", "prometheus took too long"),
             (None, None, "False", "NoDcgmSeries", "no dcgm-exporter series for the job's pods: GPU idle is unknown"),
             (None, GpuWindow(0.5, 600.0), "True", "SeriesFound", "utilisation known for 600s"),
             (None, GpuWindow(0.01, 600.0, ("resnet-1",)), "False", "NoDcgmSeries",
              "no dcgm-exporter series for pod resnet-1: GPU idle is unknown")]
    for error, window, state, reason, message in cases:
        update: dict[str, Any] = {}
        plan.gpu_condition(ctx, update, window, error, now, 1)
        [condition] = [c for c in update["conditions"] if c.type == "GpuMetricsAvailable"]
        assert (condition.status, condition.reason, condition.message) == (state, reason, message)
    untouched: dict[str, Any] = {}
    plan.gpu_condition(context({"maxDuration": "1h"}), untouched, None, ("Timeout", "x"), now, 1)
    assert untouched == {}  # no gpuIdle rule: no condition


def test_the_cohort_is_the_selected_peers_of_the_namespace_at_the_job_s_step() -> None:
    stop = {"metric": {"name": "loss"}, "cohort": {"selector": {"matchLabels": {"sweep": "s"}}, "rule": "median"}}
    ctx = context(stop, name="me")

    def peer(name: str, best: float, namespace: str = "n", sweep: str = "s") -> dict[str, Any]:
        b = body(name=name, uid=name, status={"metric": {"name": "loss", "best": best, "bestStep": 5, "last": best,
                                                         "lastStep": 10, "bestHistory": [[5, best]]}})
        b["metadata"].update(namespace=namespace, labels={"sweep": sweep})
        return b

    peers = {("n", "me"): peer("me", 0.1), ("n", "a"): peer("a", 0.5), ("n", "b"): peer("b", 0.7),
             ("other", "c"): peer("c", 0.2, namespace="other"), ("n", "d"): peer("d", 0.3, sweep="t")}
    track = MetricTrack("loss", evaluations=3, last=0.4, last_step=10, best=0.4, best_step=10)
    view = plan.cohort_view(ctx, track, peers, {})
    assert view is not None and view.step == 10 and sorted(view.peer_values) == [0.5, 0.7]
    assert plan.cohort_view(ctx, None, peers, {}) is None

    # a peer's history point that is no [step, best] pair (the API took it before the schema said so) is left out
    odd = peer("e", 0.6)
    odd["status"]["metric"]["bestHistory"] = [[5.0], [6, 0.6]]
    view = plan.cohort_view(ctx, track, {**peers, ("n", "e"): odd}, {})
    assert view is not None and sorted(view.peer_values) == [0.5, 0.6, 0.7]
