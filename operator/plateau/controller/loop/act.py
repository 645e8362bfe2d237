"""Carrying out a cycle's plans: workload actions at once, then the status that records them, then Events."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any, Awaitable

from plateau import api
from plateau.controller.children import LABEL, build_job, label_value
from plateau.controller.kube import ApiError
from plateau.controller.loop import export, write
from plateau.controller.loop.context import CycleReport, JobContext
from plateau.engine.status import SPEC_VALID, set_condition
from plateau.engine.stopflow import CreateWorkload, Event, Plan, RequestStop, Resume, ShareSpec, Suspend, rfc3339_at

if TYPE_CHECKING:
    from plateau.controller.loop.cycle import Loop

log = logging.getLogger("plateau.controller.loop")

REJECTED = (400, 422)  # the server refused the object itself: retrying the same spec cannot help


class Shell:
    """Takes each plan as it is made. A plan's actions start at once: a stop must not wait behind
    thousands of progress writes. Status writes due wait for finish(), and queue behind them."""

    def __init__(self, loop: Loop, now: float, report: CycleReport) -> None:
        self.loop, self.now, self.report = loop, now, report
        self.pending: list[Awaitable[None]] = []

    def start(self, ctx: JobContext, plan: Plan) -> None:
        loop, now, report = self.loop, self.now, self.report
        if plan.actions:
            self.pending.append(asyncio.create_task(_safely(ctx, apply(loop, ctx, plan, now, report), report)))
        elif write.due(loop, ctx.body, plan.status, now):
            self.pending.append(_safely(ctx, write.record(loop, ctx, plan.status, now, report), report))
        else:
            loop.memory[ctx.uid].steady = (ctx.generation, ctx.state)

    async def finish(self) -> None:
        """Carry out every plan taken: the actions started, then the status writes due."""
        await asyncio.gather(*self.pending)


async def _safely(ctx: JobContext, io: Awaitable[None], report: CycleReport) -> None:
    """One job's failure must never cost the others their plans."""
    try:
        await io
    except Exception as exc:  # noqa: BLE001 (logged with the job's name, retried next cycle)
        log.exception("%s/%s: applying the plan failed; retrying next cycle", *ctx.key)
        report.errors.append(f"{ctx.key}: {type(exc).__name__}")


async def apply(loop: Loop, ctx: JobContext, plan: Plan, now: float, report: CycleReport) -> None:
    """The plan's actions, then its status; Events only once the status records the transition."""
    status = plan.status
    try:
        # One slot of the API concurrency for all the plan's actions: a suspension must not
        # queue behind the status writes that arrived while the stop request went out.
        async with loop.limit:
            for action in plan.actions:
                status = await act(loop, ctx, action, status, report)
    except ApiError as exc:
        log.warning("%s/%s: %s; retrying next cycle", ctx.key[0], ctx.key[1], exc)
        report.errors.append(str(exc))
        return  # the transition is not recorded, so the next cycle plans it again
    if not await write.write(loop, ctx.body, status, now, report):
        return  # events follow a recorded transition, never precede it
    export.transition(ctx, status)
    for action in plan.actions:
        if isinstance(action, Event):
            try:
                async with loop.limit:
                    await loop.kube.post_event(ctx.body, action.type, action.reason, action.message)
            except ApiError as exc:
                report.errors.append(str(exc))


async def act(loop: Loop, ctx: JobContext, action: Any, status: api.TrainingJobStatus, report: CycleReport
              ) -> api.TrainingJobStatus:
    """One workload action; the status, with what it changed."""
    assert ctx.workload is not None
    if isinstance(action, CreateWorkload):
        body = build_job(ctx.body, ctx.spec, loop.settings.sidecar)
        try:
            await loop.kube.create_job(ctx.key[0], body)
        except ApiError as exc:
            if exc.code in REJECTED:  # the spec builds a Job this server refuses: the spec is invalid
                loop.specs[(ctx.uid, ctx.generation)] = f"the API server rejected the Job: {exc.message}"
                return status.model_copy(update={"conditions": set_condition(
                    status.conditions, SPEC_VALID, "False", "InvalidSpec",
                    loop.specs[(ctx.uid, ctx.generation)], rfc3339_at(loop.clock()), ctx.generation)})
            if exc.code != 409:  # AlreadyExists: a restart after creating it; fine
                raise
        report.actions += 1
        return status.model_copy(update={"workload": f"Job/{body['metadata']['name']}",
                                         "selector": f"{LABEL}={label_value(ctx.key[1])}"})
    if isinstance(action, RequestStop):
        report.actions += await ctx.workload.request_stop(action.reason)
    elif isinstance(action, Suspend):
        await ctx.workload.suspend(ctx.state.kueue_uid)
        report.actions += 1
    elif isinstance(action, Resume):
        await ctx.workload.resume(action.replicas, child=ctx.spec.template is not None, kueue_uid=ctx.state.kueue_uid)
        report.actions += 1
    elif isinstance(action, ShareSpec):
        report.actions += await ctx.workload.share_spec(action.text)
    return status
