"""Shared cases of the loop's stage tests (tests/unit/test_loop_*.py): a TrainingJob's body, a
running status, a steady job, a workload that records the actions asked of it."""

from __future__ import annotations

from typing import Any, Optional

from plateau import api
from plateau.controller.config import Settings
from plateau.controller.loop.context import CycleReport, JobContext
from plateau.controller.loop.cycle import Loop, Stages
from plateau.controller.loop.memory import Memory
from plateau.controller.loop.plan import Planner
from plateau.controller.loop.registry import Registry
from plateau.engine.status import set_condition
from plateau.engine.stopflow import WorkloadState, rfc3339_at
from plateau.prometheus.summaries import SidecarTrack

T0 = 1_800_000_000.0
SETTINGS = Settings(interval=15.0, status_interval=30.0)
RUNS = WorkloadState(exists=True, active=1, running=1, gpus=1)


def body(status: Optional[dict[str, Any]] = None, uid: str = "u1", name: str = "j") -> dict[str, Any]:
    return {"metadata": {"namespace": "n", "name": name, "uid": uid, "generation": 1},
            "spec": {"template": {"spec": {"containers": [{"name": "t", "image": "x"}]}},
                     "stop": {"metric": {"name": "loss", "patience": 3}}},
            "status": status or {}}


def new_loop(kube: Any = None, settings: Settings = SETTINGS) -> Loop:
    return Loop(settings, Registry(), kube=kube, prometheus=None)  # type: ignore[arg-type]


def planner(loop: Loop, now: float, report: Optional[CycleReport] = None) -> Planner:
    """A cycle's planner over the loop's memory; its plans are dropped."""
    return Planner(loop.memory, loop.tracks, loop.registry.trainingjobs, loop.settings, now, report or CycleReport(),
                   on_plan=lambda ctx, plan: None, plan_job=Stages().plan_job)


def running(**fields: Any) -> api.TrainingJobStatus:
    return api.TrainingJobStatus.model_validate({"phase": "Running", "lastEvaluationTime": rfc3339_at(T0), **fields})


def steady_case(stop: Optional[dict[str, Any]] = None, **status: Any
                ) -> tuple[JobContext, Memory, dict[tuple[str, str], SidecarTrack]]:
    """A running job whose last plan asked for nothing, and a read with nothing new."""
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
    return ctx, memory, summaries


class FakeWorkload:
    def __init__(self) -> None:
        self.calls: list[str] = []

    async def suspend(self, kueue_uid: str = "") -> None:
        self.calls.append("suspend")

    async def resume(self, replicas: int, child: bool, kueue_uid: str = "") -> None:
        self.calls.append(f"resume {replicas} child={child}")
