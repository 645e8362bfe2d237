"""The evaluator's memory: it forgets deleted jobs and superseded generations, and its registry
keeps only what the loop reads."""

from __future__ import annotations

from plateau.api import TrainingJobStatus
from plateau.controller.config import Settings
from plateau.controller.evaluator import LAST_APPLIED, Evaluator, Memory, Registry
from plateau.engine.stopflow import WorkloadState
from plateau.controller.children import LABEL


def test_forgets_jobs_that_are_gone_and_old_generations() -> None:
    registry = Registry()
    evaluator = Evaluator(Settings(), registry, kube=None, prometheus=None)  # type: ignore[arg-type]
    registry.on_trainingjob({"type": "ADDED", "object": {"metadata": {"namespace": "n", "name": "a", "uid": "u1", "generation": 2}}})
    for uid in ("u1", "u2"):
        evaluator.memory[uid] = Memory(TrainingJobStatus(), TrainingJobStatus(), 0.0)
    evaluator._specs[("u1", 1)] = "old"
    evaluator._specs[("u1", 2)] = "current"
    evaluator._specs[("u2", 1)] = "deleted"
    evaluator._forget_gone()
    assert set(evaluator.memory) == {"u1"}
    assert set(evaluator._specs) == {("u1", 2)}


def test_the_registry_drops_managed_fields_and_the_last_applied_copy_without_touching_kopfs_body() -> None:
    registry = Registry()
    meta = {"namespace": "n", "name": "a", "uid": "u1", "generation": 1, "labels": {"team": "x"},
            "managedFields": [{"manager": "kubectl"}], "annotations": {LAST_APPLIED: "{...}", "note": "kept"}}
    body = {"metadata": meta, "spec": {"replicas": 1}, "status": {"phase": "Running"}}
    registry.on_trainingjob({"type": "ADDED", "object": body})
    kept = registry.trainingjobs[("n", "a")]
    assert kept["metadata"] == {"namespace": "n", "name": "a", "uid": "u1", "generation": 1, "labels": {"team": "x"},
                                "annotations": {"note": "kept"}}
    assert kept["spec"] is body["spec"] and kept["status"] is body["status"]
    assert "managedFields" in meta and LAST_APPLIED in meta["annotations"]  # kopf's copy is untouched


def test_child_jobs_are_kept_as_their_state_and_wake_the_loop_only_when_it_changes() -> None:
    registry = Registry()

    def job(active: int, suspend: bool = False) -> dict:
        return {"type": "MODIFIED", "object": {
            "metadata": {"namespace": "n", "name": "a", "labels": {LABEL: "a"}},
            "spec": {"suspend": suspend, "template": {"spec": {"containers": [{"name": "t"}]}}},
            "status": {"active": active}}}

    registry.on_child_job(job(1))
    assert registry.child_jobs[("n", "a")] == WorkloadState(exists=True, active=1)
    assert registry.changed.is_set()
    registry.changed.clear()
    registry.on_child_job(job(1))  # a resync, or a change the loop does not read
    assert not registry.changed.is_set()
    registry.on_child_job(job(0, suspend=True))
    assert registry.changed.is_set() and registry.child_jobs[("n", "a")].suspended
    registry.changed.clear()
    registry.on_child_job({"type": "DELETED", "object": job(0)["object"]})
    assert ("n", "a") not in registry.child_jobs and registry.changed.is_set()
