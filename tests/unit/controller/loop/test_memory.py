"""The loop's memory: it forgets deleted jobs and superseded generations, and reads what it can of a status."""

from __future__ import annotations

import logging

import pytest

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


STOPPING = {"phase": "Stopping", "reason": "Plateau", "message": "no improvement", "observedGeneration": 1,
            "stopRequestedTime": "2027-01-15T08:00:00Z", "startTime": "2027-01-15T07:01:00Z", "runningSeconds": 3540.0,
            "gpuHours": 7.8, "replicas": 1, "evaluations": 40,
            "conditions": [{"type": "StopRequested", "status": "True", "reason": "Plateau", "message": "",
                            "lastTransitionTime": "2027-01-15T08:00:00Z"}],
            "metric": {"name": "loss", "last": 0.5, "lastStep": 400, "best": 0.4, "bestStep": 100, "sinceImprovement": 30}}


def body(status: object) -> dict:
    return {"metadata": {"namespace": "n", "name": "j", "uid": "u1"}, "status": status}


def test_a_field_an_older_version_wrote_is_dropped_alone(caplog: pytest.LogCaptureFixture) -> None:
    # metric.referenceExact was a field until 803ac5b; Helm never upgrades a CRD, so an old one still serves it
    older = {**STOPPING, "metric": {**STOPPING["metric"], "referenceExact": True}}
    with caplog.at_level(logging.WARNING):
        status = memory.current_status({}, body(older))
    assert status == TrainingJobStatus.model_validate(STOPPING)
    assert (status.phase, status.gpu_hours, status.stop_requested_time) == ("Stopping", 7.8, "2027-01-15T08:00:00Z")
    assert "status of n/j: ignoring what this version cannot read: metric.referenceExact" in caplog.text


@pytest.mark.parametrize("bad, gone", [
    ({"gpuHoursSaved": "lots"}, "gpuHoursSaved"),  # a value of the wrong type: that field alone
    ({"conditions": [STOPPING["conditions"][0], {"type": "Ready", "status": 5}]}, "conditions.1"),  # that condition
    ({"metric": {"best": 0.4}}, "metric"),  # a required field missing: the object that lacks it
    ({"metric": {**STOPPING["metric"], "bestHistory": [[5.0, 0.4], "x"]}, "surprise": {"a": 1}}, "metric.bestHistory.1"),
])
def test_a_field_the_model_refuses_is_dropped_and_the_rest_kept(bad: dict, gone: str,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        status = memory.read_status({**STOPPING, **bad}, "n/j")
    assert (status.phase, status.reason, status.running_seconds, status.gpu_hours) == ("Stopping", "Plateau", 3540.0, 7.8)
    assert status.stop_requested_time == "2027-01-15T08:00:00Z" and gone in caplog.text


def test_a_status_that_is_no_object_starts_afresh_and_the_apis_own_is_not_changed() -> None:
    assert memory.read_status(["not", "a", "status"], "n/j") == TrainingJobStatus()
    older = {**STOPPING, "metric": {**STOPPING["metric"], "referenceExact": True}}
    memory.read_status(older, "n/j")
    assert older["metric"]["referenceExact"] is True  # a copy is salvaged, not the watch's object
