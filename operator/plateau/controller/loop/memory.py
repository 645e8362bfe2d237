"""What this leader remembers of each job between cycles, and the forgetting of what is gone."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Optional

from pydantic import ValidationError

from plateau import api
from plateau.engine.stopflow import WorkloadState

if TYPE_CHECKING:
    from plateau.controller.loop.cycle import Loop

log = logging.getLogger("plateau.controller.loop")


@dataclass(slots=True)
class Memory:
    """What this leader last computed and wrote for one job (slots: one per job)."""

    status: api.TrainingJobStatus
    written: api.TrainingJobStatus
    written_at: float
    # (generation, workload state) of the last plan, when it asked for nothing and its status
    # is recorded: while these and the metric stand still, the job's plan cannot change.
    steady: Optional[tuple[int, WorkloadState]] = None


def current_status(memory: dict[str, Memory], body: dict[str, Any]) -> api.TrainingJobStatus:
    """The job's status as this leader last computed it, else as the API has it."""
    uid = body["metadata"].get("uid", "")
    if uid in memory:
        return memory[uid].status
    try:
        return api.TrainingJobStatus.model_validate(body.get("status") or {})
    except ValidationError:
        log.warning("ignoring unreadable status of %s/%s", body["metadata"].get("namespace"), body["metadata"].get("name"))
        return api.TrainingJobStatus()


def forget_gone(loop: Loop) -> None:
    """Deleted jobs and superseded generations must not stay in memory forever."""
    live = {(b["metadata"].get("uid", ""), int(b["metadata"].get("generation") or 1))
            for b in loop.registry.trainingjobs.values()}
    uids = {uid for uid, _ in live}
    for uid in [u for u in loop.memory if u not in uids]:
        del loop.memory[uid]
    loop.tracks.forget(keep=uids)
    for key in [k for k in loop.specs if k not in live]:
        del loop.specs[key]
