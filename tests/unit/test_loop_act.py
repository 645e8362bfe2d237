"""Carrying out a plan: each workload action counted, and no Event before the status that records it."""

from __future__ import annotations

from typing import Any

from plateau.controller.kube import ApiError
from plateau.controller.loop import act
from plateau.controller.loop.context import CycleReport
from plateau.engine.stopflow import Event, Plan, Resume, Suspend
from tests.unit.loop_cases import T0, FakeWorkload, new_loop, running, steady_case


async def test_each_workload_action_is_counted() -> None:
    ctx, _, _ = steady_case()
    ctx.workload = FakeWorkload()  # type: ignore[assignment]
    report = CycleReport()
    for action in (Suspend(), Resume(3)):
        await act.act(new_loop(), ctx, action, ctx.status, report)
    assert ctx.workload.calls == ["suspend", "resume 3 child=True"] and report.actions == 2  # type: ignore[attr-defined]


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
    loop = new_loop(kube)
    ctx, _, _ = steady_case()
    ctx.workload = FakeWorkload()  # type: ignore[assignment]
    stopped = running().model_copy(update={"phase": "Stopped", "reason": "Plateau"})
    report = CycleReport()
    await act.apply(loop, ctx, Plan(stopped, (Suspend(), Event("Normal", "Stopped", "plateau"))), T0, report)
    assert ctx.workload.calls == ["suspend"] and kube.events == []  # type: ignore[attr-defined]
    assert report.writes == 0 and report.errors == ["patch trainingjobs/status: HTTP 500: etcd timed out"]
    assert "u1" not in loop.memory  # nothing recorded: the API's status stands
