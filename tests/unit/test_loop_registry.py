"""The registry keeps only what the loop reads of the watched objects, and wakes the loop for what
changes a plan."""

from __future__ import annotations

from typing import Any

from plateau.controller.children import LABEL
from plateau.controller.loop.registry import LAST_APPLIED, Registry
from plateau.engine.stopflow import WorkloadState
from tests.unit.loop_cases import body

NS, NAME = "team-a", "resnet"


def test_the_registry_keeps_a_body_with_nothing_to_drop_as_it_is() -> None:
    """No copy per watch event for the usual object (10,000 jobs: the registry is most of the memory)."""
    registry, b = Registry(), body()
    registry.on_trainingjob({"type": "ADDED", "object": b})
    assert registry.trainingjobs[("n", "j")] is b


def test_the_registry_wakes_the_loop_for_new_respecified_deleting_and_deleted_jobs_only() -> None:
    registry = Registry()

    def event(kind: str, generation: int, **meta: Any) -> bool:
        registry.changed.clear()
        body = {"metadata": {"namespace": NS, "name": NAME, "generation": generation, **meta}}
        registry.on_trainingjob({"type": kind, "object": body})
        return registry.changed.is_set()

    assert event("ADDED", 1)
    assert not event("MODIFIED", 1)  # our own status write
    assert event("MODIFIED", 2)  # a spec edit
    assert event("MODIFIED", 2, deletionTimestamp="2027-01-01T00:00:00Z")
    assert event("DELETED", 2) and (NS, NAME) not in registry.trainingjobs


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
