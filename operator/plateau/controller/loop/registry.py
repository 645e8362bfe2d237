"""The latest watched objects, fed by kopf's watch-event handlers; a change wakes the loop."""

from __future__ import annotations

import asyncio
from typing import Any

from plateau.controller.children import LABEL
from plateau.controller.workload_state import job_state
from plateau.engine.stopflow import WorkloadState

# What the loop never reads and a real API server sends with every object: the field managers,
# and kubectl's copy of the whole applied manifest.
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


class Registry:
    """The latest watched objects, fed by kopf's watch-event handlers.

    At 10,000 jobs this is most of the operator's memory, so it keeps only what the loop reads:
    TrainingJobs without managedFields and kubectl's last-applied copy, and child Jobs as the
    WorkloadState the loop derives from them (a Job is mostly its pod template).
    """

    def __init__(self) -> None:
        self.trainingjobs: dict[tuple[str, str], dict[str, Any]] = {}
        self.child_jobs: dict[tuple[str, str], WorkloadState] = {}
        self.changed = asyncio.Event()

    def on_trainingjob(self, event: dict[str, Any]) -> None:
        meta = (event.get("object") or {}).get("metadata") or {}
        key = (meta.get("namespace", ""), meta.get("name", ""))
        before = (self.trainingjobs.get(key) or {}).get("metadata") or {}
        if event.get("type") == "DELETED":
            self.trainingjobs.pop(key, None)
        elif event.get("object"):
            self.trainingjobs[key] = _slim(event["object"])
        # Wake the loop for new, deleted or re-specified jobs, not for our own status writes.
        if event.get("type") != "MODIFIED" or before.get("generation") != meta.get("generation") \
                or before.get("deletionTimestamp") != meta.get("deletionTimestamp"):
            self.changed.set()

    def on_child_job(self, event: dict[str, Any]) -> None:
        meta = (event.get("object") or {}).get("metadata") or {}
        key = (meta.get("namespace", ""), (meta.get("labels") or {}).get(LABEL, ""))
        before = self.child_jobs.get(key)
        if event.get("type") == "DELETED":
            self.child_jobs.pop(key, None)
            self.changed.set()
        elif event.get("object"):
            state = self.child_jobs[key] = job_state(event["object"])
            if state != before:
                self.changed.set()


def _slim(body: dict[str, Any]) -> dict[str, Any]:
    """The object less what the loop never reads (a copy: kopf owns the original)."""
    meta = body.get("metadata") or {}
    annotations = meta.get("annotations") or {}
    if "managedFields" not in meta and LAST_APPLIED not in annotations:
        return body
    meta = {k: v for k, v in meta.items() if k != "managedFields"}
    if LAST_APPLIED in annotations:
        meta["annotations"] = {k: v for k, v in annotations.items() if k != LAST_APPLIED}
    return {**body, "metadata": meta}
