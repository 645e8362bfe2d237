"""What a cycle gathers of a job: its spec, parsed once per generation."""

from __future__ import annotations

from plateau.controller.loop import gather
from plateau.controller.loop.context import CycleReport
from tests.unit.loop_cases import T0, body, new_loop


async def test_a_new_generation_is_parsed_again() -> None:
    """The parsed spec is cached per (uid, generation): an edit must reach the plan."""
    loop = new_loop()
    first = body()
    ctx = await gather.context(loop, first, T0, CycleReport())
    assert ctx is not None and ctx.stop.metric is not None and ctx.stop.metric.patience == 3
    edited = body()
    edited["metadata"]["generation"] = 2
    edited["spec"]["stop"]["metric"]["patience"] = 9
    ctx = await gather.context(loop, edited, T0 + 15, CycleReport())
    assert ctx is not None and ctx.stop.metric is not None and ctx.stop.metric.patience == 9
    assert ctx.generation == 2 and set(loop.specs) == {("u1", 1), ("u1", 2)}
