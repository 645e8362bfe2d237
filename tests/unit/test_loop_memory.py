"""The loop's memory: it forgets deleted jobs and superseded generations."""

from __future__ import annotations

from plateau.api import TrainingJobStatus
from plateau.controller.config import Settings
from plateau.controller.loop import memory
from plateau.controller.loop.cycle import Loop
from plateau.controller.loop.memory import Memory
from plateau.controller.loop.registry import Registry


def test_forgets_jobs_that_are_gone_and_old_generations() -> None:
    registry = Registry()
    loop = Loop(Settings(), registry, kube=None, prometheus=None)  # type: ignore[arg-type]
    registry.on_trainingjob({"type": "ADDED", "object": {"metadata": {"namespace": "n", "name": "a", "uid": "u1", "generation": 2}}})
    for uid in ("u1", "u2"):
        loop.memory[uid] = Memory(TrainingJobStatus(), TrainingJobStatus(), 0.0)
    loop.specs[("u1", 1)] = "old"
    loop.specs[("u1", 2)] = "current"
    loop.specs[("u2", 1)] = "deleted"
    memory.forget_gone(loop)
    assert set(loop.memory) == {"u1"}
    assert set(loop.specs) == {("u1", 2)}
