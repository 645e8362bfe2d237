"""What this leader remembers of each job between cycles, and the forgetting of what is gone."""

from __future__ import annotations

import copy
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
    return read_status(body.get("status"), f'{body["metadata"].get("namespace")}/{body["metadata"].get("name")}')


SALVAGE_PASSES = 4  # each pass drops every field the last one refused


def read_status(raw: Any, job: str) -> api.TrainingJobStatus:
    """The status as the API has it, keeping all that can be read. A field the model refuses (one
    an older version wrote, which an old CRD still serves, or a value of the wrong type) is
    dropped alone: the phase, the stop in progress and the budgets' counts outlive it. Only a
    status that is no object at all starts afresh."""
    data = copy.deepcopy(raw) if isinstance(raw, dict) else {}
    dropped: list[str] = []
    for _ in range(SALVAGE_PASSES):
        try:
            status = api.TrainingJobStatus.model_validate(data)
        except ValidationError as exc:
            marked = [path for error in exc.errors() if (path := _mark(data, error["loc"]))]
            if not marked:
                break
            dropped += marked
            _purge(data)
            continue
        if dropped:
            log.warning("status of %s: ignoring what this version cannot read: %s", job, ", ".join(dropped))
        return status
    log.warning("ignoring unreadable status of %s", job)
    return api.TrainingJobStatus()


class _Dropped:
    """Stands where a refused field was, until _purge removes it."""


_DROPPED = _Dropped()


def _mark(data: dict[str, Any], loc: tuple[Any, ...]) -> Optional[str]:
    """Mark the field at `loc` (or, where it is missing, the object that lacks it) for dropping;
    its dotted path, or None if there is nothing to drop."""
    parents: list[tuple[Any, Any]] = []
    node: Any = data
    for key in loc:
        if isinstance(node, dict) and key in node or isinstance(node, list) and isinstance(key, int) and 0 <= key < len(node):
            parents.append((node, key))
            node = node[key]
        else:
            break  # a missing required field: the object that lacks it goes
    if not parents:
        return None
    container, key = parents[-1]
    container[key] = _DROPPED
    return ".".join(str(k) for _, k in parents)


def _purge(node: Any) -> None:
    """Remove the marked fields (list items included) from `node`, in place."""
    stack = [node]
    while stack:
        current = stack.pop()
        if isinstance(current, dict):
            for key in [k for k, v in current.items() if v is _DROPPED]:
                del current[key]
            stack.extend(current.values())
        elif isinstance(current, list):
            current[:] = [v for v in current if v is not _DROPPED]
            stack.extend(current)


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
