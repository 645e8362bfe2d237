"""A cycle's jobs from the registry: each spec parsed once per generation, each workload's state observed."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Optional

from pydantic import ValidationError

from plateau import api
from plateau.api.errors import format_validation_error
from plateau.controller.children import label_value
from plateau.controller.kube import ApiError
from plateau.controller.loop import write
from plateau.controller.loop.context import PENDING, CycleReport, JobContext
from plateau.controller.loop.memory import current_status
from plateau.controller.workload_state import pod_waiting
from plateau.controller.workloads import Workload
from plateau.engine.status import SPEC_VALID, set_condition
from plateau.engine.stopflow import WorkloadState, rfc3339_at

if TYPE_CHECKING:
    from plateau.controller.config import Settings
    from plateau.controller.loop.cycle import Loop


async def jobs(loop: Loop, now: float, report: CycleReport) -> list[JobContext]:
    """Every TrainingJob not being deleted whose spec is valid, with its workload's state."""
    contexts = []
    for body in list(loop.registry.trainingjobs.values()):
        if (body.get("metadata") or {}).get("deletionTimestamp"):
            continue  # being deleted: the garbage collector removes the child Job
        ctx = await context(loop, body, now, report)
        if ctx is not None:
            contexts.append(ctx)
    report.jobs = len(contexts)
    referenced = [c for c in contexts if c.spec.template is None]
    for ctx in contexts:
        if ctx.spec.template is not None:
            ctx.state = loop.registry.child_jobs.get((ctx.key[0], label_value(ctx.key[1])), WorkloadState(exists=False))
    await asyncio.gather(*(_observe_reference(loop, c) for c in referenced))
    await asyncio.gather(*(_observe_waiting(loop, c) for c in contexts
                           if c.status.phase == PENDING and c.state.active > 0 and c.state.running == 0))
    return contexts


async def context(loop: Loop, body: dict[str, Any], now: float, report: CycleReport) -> Optional[JobContext]:
    """The job's context; None, with SpecValid=False written, when its spec is invalid."""
    meta = body["metadata"]
    uid, generation = meta.get("uid", ""), int(meta.get("generation") or 1)
    status = current_status(loop.memory, body)
    parsed = loop.specs.get((uid, generation))
    if parsed is None:
        parsed = loop.specs[(uid, generation)] = parse_spec(body, loop.settings)
    if isinstance(parsed, str):
        text = rfc3339_at(now)
        invalid = status.model_copy(update={
            "observed_generation": generation,
            "conditions": set_condition(status.conditions, SPEC_VALID, "False", "InvalidSpec", parsed, text, generation),
        })
        await write.write(loop, body, invalid, now, report, force=True)
        return None
    spec = parsed
    stop = spec.stop
    if status.conditions and any(c.type == SPEC_VALID and c.status == "False" for c in status.conditions):
        status = status.model_copy(update={"conditions": set_condition(
            status.conditions, SPEC_VALID, "True", "Valid", "", rfc3339_at(now), generation)})
    ctx = JobContext(body, spec, stop, status)
    ns = meta["namespace"]
    if spec.workload_ref is not None:
        ref = spec.workload_ref
        ctx.workload = Workload(loop.kube, ns, ref.api_version, ref.kind, ref.name)
    else:
        ctx.workload = Workload(loop.kube, ns, "batch/v1", "Job", meta["name"])
    return ctx


def parse_spec(body: dict[str, Any], settings: Settings) -> api.TrainingJobSpec | str:
    """The spec with the operator's defaults, or what is wrong with it."""
    try:
        parsed = api.TrainingJobSpec.model_validate(body.get("spec") or {})
    except ValidationError as exc:
        return format_validation_error(exc, "spec")
    if parsed.metrics.queries and settings.custom_queries == "disabled":
        return "spec.metrics.queries: custom queries are disabled in this installation (Helm value customQueries)"
    if parsed.stop.dry_run is None:  # the operator's default, once per generation
        stop = parsed.stop.model_copy(update={"dry_run": settings.default_dry_run})
        parsed = parsed.model_copy(update={"stop": stop})
    return parsed


async def _observe_reference(loop: Loop, ctx: JobContext) -> None:
    """A workloadRef's state, read from the API (child Jobs come from the watch)."""
    assert ctx.workload is not None
    async with loop.limit:
        try:
            ctx.state = await ctx.workload.observe()
        except ApiError as exc:
            # Unknown is not "deleted": keep the last phase and try again next cycle.
            ctx.state = WorkloadState(exists=True, message=str(exc))


async def _observe_waiting(loop: Loop, ctx: JobContext) -> None:
    """Why a Pending job's pods do not run yet, from the pods themselves."""
    async with loop.limit:
        try:
            pods = await _pods_of(loop, ctx)
        except ApiError:
            return  # unknown: the condition says what it said last
    ctx.state = replace(ctx.state, waiting=pod_waiting(pods))


async def pod_names(loop: Loop, ctx: JobContext) -> set[str]:
    """The names of the workload's pods; none when the API does not answer."""
    async with loop.limit:
        try:
            return {p["metadata"]["name"] for p in await _pods_of(loop, ctx)}
        except ApiError:
            return set()


async def _pods_of(loop: Loop, ctx: JobContext) -> list[dict[str, Any]]:
    assert ctx.workload is not None
    selector = await ctx.workload.pod_selector()
    return await loop.kube.pods(ctx.key[0], selector) if selector else []
