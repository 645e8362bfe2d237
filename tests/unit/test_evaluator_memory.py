"""The evaluator forgets deleted jobs and superseded generations (no growth with churn)."""

from __future__ import annotations

from plateau.api import TrainingJobStatus
from plateau.config import Settings
from plateau.evaluator import Evaluator, Memory, Registry


def test_forgets_jobs_that_are_gone_and_old_generations() -> None:
    registry = Registry()
    evaluator = Evaluator(Settings(), registry, kube=None, prometheus=None)  # type: ignore[arg-type]
    registry.on_trainingjob({"type": "ADDED", "object": {"metadata": {"namespace": "n", "name": "a", "uid": "u1", "generation": 2}}})
    for uid in ("u1", "u2"):
        evaluator.memory[uid] = Memory(TrainingJobStatus(), {}, 0.0)
    evaluator._specs[("u1", 1)] = "old"
    evaluator._specs[("u1", 2)] = "current"
    evaluator._specs[("u2", 1)] = "deleted"
    evaluator._forget_gone()
    assert set(evaluator.memory) == {"u1"}
    assert set(evaluator._specs) == {("u1", 2)}
