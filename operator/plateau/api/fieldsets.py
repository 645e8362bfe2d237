"""One shared set per combination of fields set, for every model instance that has it. Pure.

pydantic keeps, on each model instance, the set of the fields it was given
(`__pydantic_fields_set__`). The set is the largest part of a small model: 2,264 bytes for the
17 fields of a validated TrainingJobStatus or the 21 of a MetricSummary, 728 for a Condition's
6, beside a __dict__ of about 460. The operator keeps a status and a parsed spec per job, and
makes new ones every cycle: those sets were 7.8 kB of the 19 kB the loop kept per job (status,
last written status, parsed spec), 78 MB at 10,000 jobs. Models are
values here (copied with `model_copy`, never assigned to), so instances with the same fields
set can share one set; `plateau.api.base.Model` shares it, and unshares it before an
assignment, the only way pydantic changes it in place.
"""

from __future__ import annotations

from typing import AbstractSet

# Bounded: a model has a few combinations of fields set in practice, far fewer than its 2^n.
LIMIT = 4096
_shared: dict[frozenset[str], set[str]] = {}


def shared(fields: AbstractSet[str]) -> set[str]:
    """The one set equal to `fields` (a new one while fewer than LIMIT are held; else `fields`
    itself, when it is a set). Never to be changed in place."""
    key = frozenset(fields)
    one = _shared.get(key)
    if one is None:
        if len(_shared) >= LIMIT:
            return fields if isinstance(fields, set) else set(fields)
        one = _shared[key] = set(key)
    return one
