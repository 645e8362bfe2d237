"""When the loop writes a status (write.due): not what the API already has, progress at most every
status_interval, a transition at once."""

from __future__ import annotations

from prometheus_client import REGISTRY

from plateau import api
from plateau.controller.loop import write
from plateau.controller.loop.context import CycleReport, JobContext
from plateau.controller.loop.memory import Memory
from plateau.engine.status import set_condition
from plateau.engine.stopflow import rfc3339_at
from tests.unit.controller.loop.cases import T0, body, new_loop, running


def test_a_status_the_api_already_has_is_not_written_again_after_a_restart() -> None:
    loop, status = new_loop(), running(runningSeconds=5.0)
    assert not write.due(loop, body(status.model_dump(by_alias=True, mode="json")), status, T0)
    assert loop.memory["u1"].written == status  # remembered as written
    assert write.due(loop, body({"phase": "Running"}, uid="u2"), running(), T0)  # the API has another: write
    assert "u2" not in loop.memory


def test_progress_is_written_at_most_every_status_interval_and_a_transition_at_once() -> None:
    loop, written = new_loop(), running(runningSeconds=5.0)
    loop.memory["u1"] = Memory(written, written, T0)
    b = body()
    moved = written.model_copy(update={"running_seconds": 20.0})
    assert not write.due(loop, b, moved, T0 + 29.9)  # only progress, too soon
    assert loop.memory["u1"].status == moved  # but it is what the job now stands at
    assert write.due(loop, b, moved, T0 + 30.0)  # the interval is up
    assert write.due(loop, b, moved, T0 + 1, force=True)
    assert not write.due(loop, b, written, T0 + 3600)  # nothing moved: nothing to write, however late
    stopping = moved.model_copy(update={"phase": "Stopping"})
    assert write.due(loop, b, stopping, T0 + 1)  # a transition: at once
    ready = set_condition([], "Ready", "True", "Running", "", rfc3339_at(T0), 1)
    assert write.due(loop, b, written.model_copy(update={"conditions": ready}), T0 + 1)  # a new condition too


def test_a_condition_whose_message_alone_changed_is_progress() -> None:
    loop = new_loop()
    first = running(conditions=[c.model_dump(by_alias=True) for c in
                                set_condition([], "MetricsAvailable", "True", "SeriesFound", "3 reports", rfc3339_at(T0), 1)])
    loop.memory["u1"] = Memory(first, first, T0)
    second = first.model_copy(update={"conditions": set_condition(first.conditions, "MetricsAvailable", "True",
                                                                   "SeriesFound", "4 reports", rfc3339_at(T0), 1)})
    assert not write.due(loop, body(), second, T0 + 1) and write.due(loop, body(), second, T0 + 30)


async def test_progress_alone_is_not_written_before_the_interval() -> None:
    loop, written = new_loop(), running(runningSeconds=5.0)
    loop.memory["u1"] = Memory(written, written, T0)
    moved = written.model_copy(update={"running_seconds": 20.0})
    assert await write.write(loop, body(), moved, T0 + 1, CycleReport())  # not due: no write, and no failure


class AcceptingKube:
    async def patch_status(self, namespace: str, name: str, status: dict) -> None:
        pass


async def test_a_recorded_status_counts_its_stop_and_the_gpu_hours_it_saved_once() -> None:
    """plateau_operator_stops_total and gpu_hours_saved_total move when the status is written."""
    loop = new_loop(AcceptingKube())
    b = body()
    spec = api.TrainingJobSpec.model_validate(b["spec"])
    ctx = JobContext(b, spec, spec.stop, running())

    def count(name: str, **labels: str) -> float:
        return REGISTRY.get_sample_value(name, labels) or 0.0

    before = (count("plateau_operator_stops_total", reason="Plateau", dry_run="true"),
              count("plateau_operator_stops_total", reason="Plateau", dry_run="false"),
              count("plateau_operator_gpu_hours_saved_total"))
    would = running(wouldStop={"step": 40, "time": rfc3339_at(T0), "reason": "Plateau"})
    for _ in range(2):  # a would-stop is counted once, when it first appears
        await write.record(loop, ctx, would, T0 + 1, CycleReport())
        ctx.status = would
    stopping = would.model_copy(update={"phase": "Stopping", "reason": "Plateau"})
    await write.record(loop, ctx, stopping, T0 + 2, CycleReport())
    ctx.status = stopping
    await write.record(loop, ctx, stopping.model_copy(update={"phase": "Stopped", "gpu_hours_saved": 3.5}), T0 + 3,
                       CycleReport())
    after = (count("plateau_operator_stops_total", reason="Plateau", dry_run="true"),
             count("plateau_operator_stops_total", reason="Plateau", dry_run="false"),
             count("plateau_operator_gpu_hours_saved_total"))
    assert [b - a for a, b in zip(before, after)] == [1.0, 1.0, 3.5]
