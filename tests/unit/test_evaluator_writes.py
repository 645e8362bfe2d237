"""When the evaluator writes a status (_due), when it may skip a job's plan (_steady), the
per-job figures it exports, and what reaches a plan (a new generation's spec) and comes of it."""

from __future__ import annotations

from typing import Any, Optional

from prometheus_client import REGISTRY

from plateau import api
from plateau.controller.config import Settings
from plateau.controller.evaluator import CycleReport, Evaluator, JobContext, Memory, Registry
from plateau.engine.status import set_condition
from plateau.controller.kube import ApiError
from plateau.engine.stopflow import Event, Plan, Resume, Suspend, WorkloadState, rfc3339_at
from plateau.prometheus.summaries import SidecarTrack

T0 = 1_800_000_000.0
SETTINGS = Settings(interval=15.0, status_interval=30.0)
RUNS = WorkloadState(exists=True, active=1, running=1, gpus=1)


def body(status: Optional[dict[str, Any]] = None, uid: str = "u1", name: str = "j") -> dict[str, Any]:
    return {"metadata": {"namespace": "n", "name": name, "uid": uid, "generation": 1},
            "spec": {"template": {"spec": {"containers": [{"name": "t", "image": "x"}]}},
                     "stop": {"metric": {"name": "loss", "patience": 3}}},
            "status": status or {}}


def evaluator() -> Evaluator:
    return Evaluator(SETTINGS, Registry(), kube=None, prometheus=None)  # type: ignore[arg-type]


def running(**fields: Any) -> api.TrainingJobStatus:
    return api.TrainingJobStatus.model_validate({"phase": "Running", "lastEvaluationTime": rfc3339_at(T0), **fields})


# --- _due: when a status is written ---------------------------------------------------------------


def test_a_status_the_api_already_has_is_not_written_again_after_a_restart() -> None:
    e, status = evaluator(), running(runningSeconds=5.0)
    assert not e._due(body(status.model_dump(by_alias=True, mode="json")), status, T0)
    assert e.memory["u1"].written == status  # remembered as written
    assert e._due(body({"phase": "Running"}, uid="u2"), running(), T0)  # the API has another: write
    assert "u2" not in e.memory


def test_progress_is_written_at_most_every_status_interval_and_a_transition_at_once() -> None:
    e, written = evaluator(), running(runningSeconds=5.0)
    e.memory["u1"] = Memory(written, written, T0)
    b = body()
    moved = written.model_copy(update={"running_seconds": 20.0})
    assert not e._due(b, moved, T0 + 29.9)  # only progress, too soon
    assert e.memory["u1"].status == moved  # but it is what the job now stands at
    assert e._due(b, moved, T0 + 30.0)  # the interval is up
    assert e._due(b, moved, T0 + 1, force=True)
    assert not e._due(b, written, T0 + 3600)  # nothing moved: nothing to write, however late
    stopping = moved.model_copy(update={"phase": "Stopping"})
    assert e._due(b, stopping, T0 + 1)  # a transition: at once
    ready = set_condition([], "Ready", "True", "Running", "", rfc3339_at(T0), 1)
    assert e._due(b, written.model_copy(update={"conditions": ready}), T0 + 1)  # a new condition too


def test_a_condition_whose_message_alone_changed_is_progress() -> None:
    e = evaluator()
    first = running(conditions=[c.model_dump(by_alias=True) for c in
                                set_condition([], "MetricsAvailable", "True", "SeriesFound", "3 reports", rfc3339_at(T0), 1)])
    e.memory["u1"] = Memory(first, first, T0)
    second = first.model_copy(update={"conditions": set_condition(first.conditions, "MetricsAvailable", "True",
                                                                   "SeriesFound", "4 reports", rfc3339_at(T0), 1)})
    assert not e._due(body(), second, T0 + 1) and e._due(body(), second, T0 + 30)


# --- _steady: a job whose plan cannot have changed ----------------------------------------------------


def steady_case(stop: Optional[dict[str, Any]] = None, **status: Any) -> tuple[Evaluator, JobContext, Memory, dict]:
    e = evaluator()
    b = body()
    if stop is not None:
        b["spec"]["stop"] = stop
    spec = api.TrainingJobSpec.model_validate(b["spec"])
    ctx = JobContext(b, spec, spec.stop, api.TrainingJobStatus())
    ctx.state = RUNS
    found = set_condition([], "MetricsAvailable", "True", "SeriesFound", "", rfc3339_at(T0), 1)
    fields = {"metric": {"name": "loss", "sidecarReports": 7, "specKey": ctx.spec_key},
              "conditions": [c.model_dump(by_alias=True) for c in found], **status}
    memory = Memory(running(**fields), running(**fields), T0, steady=(1, RUNS))
    summaries = {("n", "j"): SidecarTrack(7, ctx.spec_key, None)}
    return e, ctx, memory, summaries


def test_a_job_with_nothing_new_is_steady() -> None:
    e, ctx, memory, summaries = steady_case()
    assert e._steady(ctx, memory, summaries, None, T0 + 10)


def test_a_job_is_not_steady_once_anything_its_plan_reads_moved() -> None:
    e, ctx, memory, summaries = steady_case()
    assert not e._steady(ctx, memory, summaries, None, T0 + 30)  # a progress write is due
    assert not e._steady(ctx, memory, {("n", "j"): SidecarTrack(8, ctx.spec_key, None)}, None, T0 + 10)  # a report
    assert not e._steady(ctx, memory, {}, None, T0 + 10)  # no read
    assert not e._steady(ctx, memory, summaries, ("Timeout", "t"), T0 + 10)
    ctx.state = WorkloadState(exists=True, active=0)
    assert not e._steady(ctx, memory, summaries, None, T0 + 10)  # the workload changed
    ctx.state = RUNS
    memory.steady = None
    assert not e._steady(ctx, memory, summaries, None, T0 + 10)  # the last plan asked for something


def test_a_job_is_not_steady_when_its_metrics_are_unavailable_or_it_is_not_running() -> None:
    e, ctx, memory, summaries = steady_case()
    memory.status = memory.status.model_copy(update={"conditions": set_condition(
        memory.status.conditions, "MetricsAvailable", "False", "NoSeries", "", rfc3339_at(T0), 1)})
    assert not e._steady(ctx, memory, summaries, None, T0 + 10)
    e, ctx, memory, summaries = steady_case(phase="Stopping")
    assert not e._steady(ctx, memory, summaries, None, T0 + 10)


def test_gpu_idle_and_cohort_jobs_are_never_steady() -> None:
    """Their inputs (GPU samples, peers' values) move without a report."""
    for extra in ({"gpuIdle": {"below": 0.05, "for": "10m"}},
                  {"cohort": {"selector": {"matchLabels": {"a": "b"}}, "percentile": 50}}):
        e, ctx, memory, summaries = steady_case({"metric": {"name": "loss", "patience": 3}, **extra})
        assert not e._steady(ctx, memory, summaries, None, T0 + 10)


def test_a_job_near_its_budget_is_not_steady() -> None:
    e, ctx, memory, summaries = steady_case({"metric": {"name": "loss"}, "maxDuration": "1h"}, runningSeconds=3000.0)
    assert e._steady(ctx, memory, summaries, None, T0 + 10)  # 3010 s used, 30 s margin: 3040 < 3600
    e, ctx, memory, summaries = steady_case({"metric": {"name": "loss"}, "maxDuration": "1h"}, runningSeconds=3560.0)
    assert not e._steady(ctx, memory, summaries, None, T0 + 10)  # 3600 within reach


# --- exported per-job figures ---------------------------------------------------------------------------


def test_jobs_are_counted_by_phase_and_only_running_ones_report_missing_metrics() -> None:
    e = evaluator()
    missing = [c.model_dump(by_alias=True, mode="json") for c in
               set_condition([], "MetricsAvailable", "False", "NoSeries", "", rfc3339_at(T0), 1)]
    for name, phase in (("a", "Running"), ("b", "Running"), ("c", "Stopped")):
        e.registry.on_trainingjob({"type": "ADDED", "object": body({"phase": phase, "conditions": missing},
                                                                    uid=name, name=name)})
    e._export_phases()

    def sample(name: str, **labels: str) -> Optional[float]:
        return REGISTRY.get_sample_value(name, labels)

    assert sample("plateau_operator_trainingjobs", phase="Running") == 2
    assert sample("plateau_operator_trainingjobs", phase="Stopped") == 1
    assert sample("plateau_operator_trainingjobs", phase="Pending") == 0
    labels = {"namespace": "n", "condition": "MetricsAvailable", "reason": "NoSeries"}
    assert sample("plateau_operator_trainingjob_metrics_missing", trainingjob="a", **labels) == 1
    assert sample("plateau_operator_trainingjob_metrics_missing", trainingjob="c", **labels) is None


# --- the plan's inputs and its actions ------------------------------------------------------------------


async def test_a_new_generation_is_parsed_again() -> None:
    """The parsed spec is cached per (uid, generation): an edit must reach the plan."""
    e = evaluator()
    first = body()
    ctx = await e._context(first, T0, CycleReport())
    assert ctx is not None and ctx.stop.metric is not None and ctx.stop.metric.patience == 3
    edited = body()
    edited["metadata"]["generation"] = 2
    edited["spec"]["stop"]["metric"]["patience"] = 9
    ctx = await e._context(edited, T0 + 15, CycleReport())
    assert ctx is not None and ctx.stop.metric is not None and ctx.stop.metric.patience == 9
    assert ctx.generation == 2 and set(e._specs) == {("u1", 1), ("u1", 2)}


def test_a_child_job_resumes_with_the_spec_s_replicas_not_a_kept_size() -> None:
    """replicasBeforeStop is for workloadRefs scaled to 0; a child Job is ours, sized by the spec."""
    e = evaluator()
    b = body({"phase": "Stopped", "reason": "Manual", "observedGeneration": 1, "replicasBeforeStop": 5})
    b["metadata"]["generation"] = 2
    b["spec"]["replicas"] = 2
    spec = api.TrainingJobSpec.model_validate(b["spec"])
    ctx = JobContext(b, spec, spec.stop, api.TrainingJobStatus.model_validate(b["status"]))
    ctx.state = WorkloadState(exists=True, suspended=True)
    plan = e._plan(ctx, {}, None, {}, None, T0, CycleReport())
    assert plan.status.phase == "Running" and Resume(2) in plan.actions


class FakeWorkload:
    def __init__(self) -> None:
        self.calls: list[str] = []

    async def suspend(self, kueue_uid: str = "") -> None:
        self.calls.append("suspend")

    async def resume(self, replicas: int, child: bool, kueue_uid: str = "") -> None:
        self.calls.append(f"resume {replicas} child={child}")


async def test_each_workload_action_is_counted() -> None:
    e, ctx, _, _ = steady_case()
    ctx.workload = FakeWorkload()  # type: ignore[assignment]
    report = CycleReport()
    for action in (Suspend(), Resume(3)):
        await e._act(ctx, action, ctx.status, report)
    assert ctx.workload.calls == ["suspend", "resume 3 child=True"] and report.actions == 2  # type: ignore[attr-defined]


async def test_progress_alone_is_not_written_before_the_interval() -> None:
    e, written = evaluator(), running(runningSeconds=5.0)
    e.memory["u1"] = Memory(written, written, T0)
    moved = written.model_copy(update={"running_seconds": 20.0})
    assert await e._write(body(), moved, T0 + 1, CycleReport())  # not due: no write, and no failure


def test_the_registry_keeps_a_body_with_nothing_to_drop_as_it_is() -> None:
    """No copy per watch event for the usual object (10,000 jobs: the registry is most of the memory)."""
    registry, b = Registry(), body()
    registry.on_trainingjob({"type": "ADDED", "object": b})
    assert registry.trainingjobs[("n", "j")] is b


class FailingKube:
    """Refuses every status write; records the Events posted."""

    def __init__(self) -> None:
        self.events: list[str] = []

    async def patch_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        raise ApiError("patch trainingjobs/status", 500, "etcd timed out")

    async def post_event(self, obj: dict[str, Any], type_: str, reason: str, message: str) -> None:
        self.events.append(reason)


async def test_no_event_precedes_a_recorded_transition() -> None:
    """A status write that fails leaves the transition unrecorded: the next cycle plans it again,
    and its Events are posted then, once, after the write that records it."""
    kube = FailingKube()
    e = Evaluator(SETTINGS, Registry(), kube=kube, prometheus=None)  # type: ignore[arg-type]
    _, ctx, _, _ = steady_case()
    ctx.workload = FakeWorkload()  # type: ignore[assignment]
    stopped = running().model_copy(update={"phase": "Stopped", "reason": "Plateau"})
    report = CycleReport()
    await e._apply(ctx, Plan(stopped, (Suspend(), Event("Normal", "Stopped", "plateau"))), T0, report)
    assert ctx.workload.calls == ["suspend"] and kube.events == []  # type: ignore[attr-defined]
    assert report.writes == 0 and report.errors == ["patch trainingjobs/status: HTTP 500: etcd timed out"]
    assert "u1" not in e.memory  # nothing recorded: the API's status stands
