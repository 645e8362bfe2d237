"""Models with the same fields set share one set of their names, and stay the values they were:
the same fields set, dumps and equality; an assignment changes only its own model's set."""

from __future__ import annotations

import copy
import pickle

from plateau import api
from plateau.api import fieldsets

WIRE = {"phase": "Running", "evaluations": 3,
        "conditions": [{"type": "Ready", "status": "True", "reason": "Running", "lastTransitionTime": "2026-01-01T00:00:00Z"}],
        "metric": {"name": "loss", "last": 0.5, "bestHistory": [[1.0, 0.5]]}}


def test_validated_models_share_their_fields_set() -> None:
    a, b = (api.TrainingJobStatus.model_validate(WIRE) for _ in range(2))
    assert a.__pydantic_fields_set__ is b.__pydantic_fields_set__
    assert a.metric.__pydantic_fields_set__ is b.metric.__pydantic_fields_set__  # type: ignore[union-attr]
    assert a.conditions[0].__pydantic_fields_set__ is b.conditions[0].__pydantic_fields_set__
    assert a.model_fields_set == {"phase", "evaluations", "conditions", "metric"}
    assert a.model_dump(by_alias=True, mode="json", exclude_unset=True) == WIRE


def test_a_copy_shares_the_set_or_takes_the_shared_one_with_the_fields_it_adds() -> None:
    status = api.TrainingJobStatus.model_validate(WIRE)
    same = status.model_copy(update={"evaluations": 4})
    assert same.__pydantic_fields_set__ is status.__pydantic_fields_set__
    more = status.model_copy(update={"gpu_hours": 1.5})
    assert more.model_fields_set == status.model_fields_set | {"gpu_hours"}
    assert more.__pydantic_fields_set__ is fieldsets.shared(status.model_fields_set | {"gpu_hours"})
    assert status.model_fields_set == {"phase", "evaluations", "conditions", "metric"}
    assert more == status.model_copy(update={"gpu_hours": 1.5}) and more != status
    assert status.model_copy(deep=True) == status == copy.deepcopy(status) == pickle.loads(pickle.dumps(status))


def test_an_assignment_changes_only_its_own_models_set() -> None:
    a, b = (api.TrainingJobStatus.model_validate(WIRE) for _ in range(2))
    a.gpu_hours = 2.0
    assert a.model_fields_set == {"phase", "evaluations", "conditions", "metric", "gpu_hours"}
    assert b.model_fields_set == {"phase", "evaluations", "conditions", "metric"}
    assert api.TrainingJobStatus.model_validate(WIRE).model_fields_set == b.model_fields_set


def test_past_the_limit_a_set_is_its_own(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(fieldsets, "_shared", {})
    monkeypatch.setattr(fieldsets, "LIMIT", 1)
    first = fieldsets.shared({"a"})
    assert fieldsets.shared({"a"}) is first
    own = {"b"}
    assert fieldsets.shared(own) is own and fieldsets.shared(frozenset({"c"})) == {"c"}
