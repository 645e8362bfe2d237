"""Writing a job's status: at once for a transition, at most every status_interval for progress alone."""

from __future__ import annotations

from operator import itemgetter
from typing import TYPE_CHECKING, Any

from plateau import api
from plateau.controller.kube import ApiError
from plateau.controller.loop import export
from plateau.controller.loop.context import CycleReport, JobContext
from plateau.controller.loop.memory import Memory

if TYPE_CHECKING:
    from plateau.controller.loop.cycle import Loop

# Status fields whose change alone does not need an immediate write.
PROGRESS_FIELDS = {"last_evaluation_time", "running_seconds", "gpu_hours", "metric", "evaluations"}
TRANSITION_FIELDS = tuple(f for f in api.TrainingJobStatus.model_fields if f not in PROGRESS_FIELDS)
CONDITION_KEY_FIELDS = tuple(f for f in api.Condition.model_fields if f != "message")
_transition_fields = itemgetter(*(f for f in TRANSITION_FIELDS if f != "conditions"))
_condition_key = itemgetter(*CONDITION_KEY_FIELDS)


async def write(loop: Loop, body: dict[str, Any], status: api.TrainingJobStatus, now: float, report: CycleReport,
                force: bool = False) -> bool:
    """Write the status if it changed and is due; False if the write failed."""
    return not due(loop, body, status, now, force) or await patch(loop, body, status, now, report)


def due(loop: Loop, body: dict[str, Any], status: api.TrainingJobStatus, now: float, force: bool = False) -> bool:
    """Whether to write the status now: not when the API already has it, nor when only
    progress moved since the last write, less than status_interval ago."""
    uid = body["metadata"].get("uid", "")
    memory = loop.memory.get(uid)
    if memory is None:  # first sight since start or leadership: compare with the API's copy
        if status.model_dump(by_alias=True, mode="json") == (body.get("status") or {}):
            loop.memory[uid] = Memory(status, status, now)
            return False
        return True
    if is_transition(memory.written, status):
        return True  # the status differs from the written one in more than progress
    # Only progress moved (the usual case): the full comparison waits until a write may go.
    if (force or now - memory.written_at >= loop.settings.status_interval) and status != memory.written:
        return True
    memory.status = status
    return False


async def patch(loop: Loop, body: dict[str, Any], status: api.TrainingJobStatus, now: float, report: CycleReport) -> bool:
    """Merge-patch the status subresource (nulls clear fields). The JSON is made only once
    a write may go: with thousands of writes due, their bodies do not all wait in memory."""
    meta = body["metadata"]
    try:
        async with loop.limit:
            await loop.kube.patch_status(meta["namespace"], meta["name"], status.model_dump(by_alias=True, mode="json"))
    except ApiError as exc:
        report.errors.append(str(exc))
        return False
    report.writes += 1
    loop.memory[meta.get("uid", "")] = Memory(status, status, now)
    return True


async def record(loop: Loop, ctx: JobContext, status: api.TrainingJobStatus, now: float, report: CycleReport) -> None:
    """A plan without actions: only its status to write."""
    if await patch(loop, ctx.body, status, now, report):
        export.transition(ctx, status)
        loop.memory[ctx.uid].steady = (ctx.generation, ctx.state)


def is_transition(before: api.TrainingJobStatus, after: api.TrainingJobStatus) -> bool:
    """Whether more than progress changed. Condition messages count reports and seconds, so
    they change every cycle: a condition changes when anything but its message does.
    (Run for every job with news each cycle: one C-level tuple comparison in the usual case.)"""
    if _transition_fields(before.__dict__) != _transition_fields(after.__dict__):
        return True
    old, new = before.conditions, after.conditions
    return old is not new and [_condition_key(c.__dict__) for c in old] != [_condition_key(c.__dict__) for c in new]
