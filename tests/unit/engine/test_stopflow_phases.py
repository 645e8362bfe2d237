"""The TrainingJob state machine, edge by edge: which phase each input leads to, what it asks
for, and what is accounted on the way. (The handshake's story is in test_stopflow.py.)"""

from __future__ import annotations

import pytest

from plateau.api import TrainingJobStatus, WouldStop
from plateau.engine.fold import Evaluation, track
from plateau.engine.rules import Observation, decide
from plateau.engine.status import set_condition
from plateau.engine.stopflow import CreateWorkload, Event, JobState, RequestStop, Resume, Suspend, WorkloadState
from plateau.engine.stopflow import account, rfc3339_at, transition
from tests.unit.engine.test_stopflow import STOP, T0, kinds
from tests.unit.engine.test_stopflow import plateaued as plateau_decision

RUNS = WorkloadState(exists=True, active=2, running=2, gpus=4)
SUSPENDED = WorkloadState(exists=True, suspended=True)


def job(status: TrainingJobStatus, workload: WorkloadState = RUNS, now: float = T0, generation: int = 1,
        replicas: int = 1, has_template: bool = True) -> JobState:
    return JobState(generation, replicas, STOP, status, workload, has_template, now)


def stopped(**fields) -> TrainingJobStatus:
    return TrainingJobStatus.model_validate({
        "phase": "Stopped", "reason": "Plateau", "message": "no improvement", "workload": "Job/x",
        "observedGeneration": 2, "replicas": 0, "stopTime": rfc3339_at(T0), "stopRequestedTime": rfc3339_at(T0 - 60),
        "lastEvaluationTime": rfc3339_at(T0), "gpuHoursSaved": 3.0, "runningSeconds": 100.0,
        "metric": {"name": "l", "sinceImprovement": 7, "best": 0.5},
        "wouldStop": {"time": rfc3339_at(T0 - 120), "reason": "Plateau"}, **fields})


# --- Stopped: resumes only on a new generation that asks for replicas ---------------------------


@pytest.mark.parametrize("generation, replicas", [(2, 1), (3, 0), (1, 3)])
def test_a_stopped_job_stays_stopped_without_a_new_generation_asking_for_replicas(generation: int, replicas: int) -> None:
    """The same generation (a resync, our own status write), or a spec edit that keeps
    `replicas: 0` (e.g. a label added after `kubectl scale --replicas=0`), is no resume."""
    status = stopped()
    plan = transition(job(status, SUSPENDED, now=T0 + 600, generation=generation, replicas=replicas), plateau_decision())
    assert plan.status is status and plan.actions == ()


def test_a_new_generation_with_replicas_resumes_and_clears_the_stop() -> None:
    status = stopped()
    plan = transition(job(status, SUSPENDED, now=T0 + 600, generation=3, replicas=2), None)
    s = plan.status
    assert (s.phase, s.reason, s.message, s.stop_time, s.stop_requested_time) == ("Running", None, None, None, None)
    assert (s.would_stop, s.gpu_hours_saved, s.replicas_before_stop) == (None, None, None)
    assert (s.replicas, s.observed_generation, s.last_evaluation_time) == (2, 3, rfc3339_at(T0 + 600))
    assert s.metric is not None and s.metric.since_improvement == 0 and s.metric.best == 0.5  # patience restarts
    assert s.running_seconds == 100.0 and s.workload == "Job/x"  # what it used stays used
    requested = next(c for c in s.conditions if c.type == "StopRequested")
    assert (requested.status, requested.reason, requested.observed_generation) == ("False", "Resumed", 3)
    assert plan.actions == (Resume(2), Event("Normal", "Resumed", "resumed with 2 replica(s)"))


def test_a_resumed_workload_ref_gets_the_size_it_had_or_the_spec_asks() -> None:
    kept = transition(job(stopped(replicasBeforeStop=5), SUSPENDED, generation=3, replicas=2, has_template=False), None)
    assert Resume(5) in kept.actions
    unknown = transition(job(stopped(), SUSPENDED, generation=3, replicas=2, has_template=False), None)
    assert Resume(2) in unknown.actions
    child = transition(job(stopped(replicasBeforeStop=5), SUSPENDED, generation=3, replicas=2), None)
    assert Resume(2) in child.actions  # a child Job is ours: the spec's replicas


def test_a_resumed_job_without_a_metric_resumes_without_one() -> None:
    plan = transition(job(stopped(metric=None), SUSPENDED, generation=3, replicas=1), None)
    assert plan.status.phase == "Running" and plan.status.metric is None


# --- Succeeded and Failed are final ---------------------------------------------------------------


@pytest.mark.parametrize("phase, reason", [("Succeeded", "TargetReached"), ("Failed", "WorkloadFailed")])
@pytest.mark.parametrize("workload", [RUNS, WorkloadState(exists=False), WorkloadState(exists=True, failed=True),
                                      WorkloadState(exists=True, sidecar_dropped=True)])
def test_succeeded_and_failed_are_final(phase: str, reason: str, workload: WorkloadState) -> None:
    status = TrainingJobStatus.model_validate({"phase": phase, "reason": reason, "observedGeneration": 1,
                                               "lastEvaluationTime": rfc3339_at(T0), "workload": "Job/x"})
    for generation, replicas in ((1, 1), (2, 3), (2, 0)):
        plan = transition(job(status, workload, now=T0 + 60, generation=generation, replicas=replicas), plateau_decision())
        assert plan.status is status and plan.actions == ()
    assert account(job(status, workload, now=T0 + 3600)) is status  # nothing runs: no writes either


# --- what is accounted, phase by phase --------------------------------------------------------------


@pytest.mark.parametrize("phase", ["Running", "Stopping"])
def test_time_and_gpu_hours_accrue_while_running_and_while_stopping(phase: str) -> None:
    """A stopping trainer still holds its GPUs until it exits: the checkpoint costs GPU-hours."""
    status = TrainingJobStatus.model_validate({"phase": phase, "lastEvaluationTime": rfc3339_at(T0),
                                               "runningSeconds": 50.0, "gpuHours": 1.5})
    after = account(job(status, now=T0 + 900))
    assert (after.running_seconds, after.gpu_hours) == (950.0, 2.5)  # 4 GPUs for a quarter hour
    assert after.last_evaluation_time == rfc3339_at(T0 + 900)


@pytest.mark.parametrize("phase", ["Pending", "Stopped", "Succeeded", "Failed"])
def test_no_time_accrues_outside_running_and_stopping(phase: str) -> None:
    status = TrainingJobStatus.model_validate({"phase": phase, "lastEvaluationTime": rfc3339_at(T0)})
    after = account(job(status, now=T0 + 900))
    assert (after.running_seconds, after.gpu_hours) == (0.0, 0.0)
    expected = rfc3339_at(T0 + 900) if phase == "Pending" else rfc3339_at(T0)  # finished jobs are not written
    assert after.last_evaluation_time == expected


def test_the_first_evaluation_starts_the_clock_and_counts_nothing() -> None:
    after = account(job(TrainingJobStatus(phase="Running"), now=T0))
    assert (after.running_seconds, after.gpu_hours, after.last_evaluation_time) == (0.0, 0.0, rfc3339_at(T0))


def test_a_clock_that_goes_back_counts_nothing() -> None:
    status = TrainingJobStatus(phase="Running", last_evaluation_time=rfc3339_at(T0), running_seconds=10.0)
    after = account(job(status, now=T0 - 30))
    assert (after.running_seconds, after.gpu_hours) == (10.0, 0.0)


# --- Running ------------------------------------------------------------------------------------------


def running(**fields) -> TrainingJobStatus:
    return TrainingJobStatus.model_validate({"phase": "Running", "workload": "Job/x", "observedGeneration": 1,
                                             "replicas": 1, **fields})


def test_a_spec_edit_while_running_is_observed_without_actions() -> None:
    plan = transition(job(running(), generation=2, replicas=3), None)
    assert (plan.status.phase, plan.status.observed_generation, plan.status.replicas) == ("Running", 2, 3)
    assert plan.actions == ()


def test_a_decision_not_to_stop_changes_nothing() -> None:
    rule = STOP.metric
    assert rule is not None
    improving = decide(STOP, Observation(metric=track(None, rule, [Evaluation(i, 1.0 / (i + 1)) for i in range(6)])))
    assert not improving.would_stop
    status = running()
    plan = transition(job(status), improving)
    assert plan.status is status and plan.actions == ()


def test_replicas_zero_asks_the_trainer_to_stop_first() -> None:
    plan = transition(job(running(), generation=2, replicas=0), None)
    s = plan.status
    assert (s.phase, s.reason, s.stop_requested_time, s.observed_generation) == ("Stopping", "Manual", rfc3339_at(T0), 2)
    assert kinds(plan.actions) == ["RequestStop", "Event:StopRequested"] and plan.actions[0] == RequestStop("Manual")
    requested = next(c for c in s.conditions if c.type == "StopRequested")
    assert (requested.status, requested.reason) == ("True", "Manual")


def test_a_dry_run_already_reported_is_not_reported_again() -> None:
    stop = STOP.model_copy(update={"dry_run": True})
    rule = stop.metric
    assert rule is not None
    d = decide(stop, Observation(metric=track(None, rule, [Evaluation(i, v) for i, v in enumerate([1.0, 0.5, 0.6, 0.7])])))
    status = running(wouldStop=WouldStop(time=rfc3339_at(T0 - 5), reason="Plateau").model_dump(by_alias=True))
    plan = transition(JobState(1, 1, stop, status, RUNS, True, T0), d)
    assert plan.status is status and plan.actions == ()


# --- Stopping -----------------------------------------------------------------------------------------


def stopping(**fields) -> TrainingJobStatus:
    return running(**{"phase": "Stopping", "reason": "Plateau", "message": "no improvement",
                      "stopRequestedTime": rfc3339_at(T0), **fields})


def test_the_grace_period_ends_exactly_at_its_length() -> None:
    before = transition(job(stopping(), now=T0 + 59.5), None)
    assert before.status.phase == "Stopping" and before.actions == (RequestStop("Plateau"),)
    at = transition(job(stopping(), now=T0 + 60), None)
    assert at.status.phase == "Stopped" and kinds(at.actions) == ["Suspend", "Event:Stopped"]
    assert at.status.message == "no improvement (gracePeriod 60s is over)"
    assert (at.status.replicas, at.status.stop_time) == (0, rfc3339_at(T0 + 60))
    ready = next(c for c in at.status.conditions if c.type == "Ready")
    assert (ready.status, ready.reason) == ("False", "Plateau")


def test_a_stop_request_with_no_time_recorded_ends_at_once() -> None:
    plan = transition(job(stopping(stopRequestedTime=None), now=T0), None)
    assert plan.status.phase == "Stopped" and Suspend() in plan.actions


def test_a_workload_that_finishes_while_stopping_ends_the_stop_without_suspending() -> None:
    """The trainer checkpointed and exited 0: the Job completed, nothing to suspend. The phase
    follows the stop's reason, not the Job's ending."""
    for ended in (WorkloadState(exists=True, succeeded=True), WorkloadState(exists=True, failed=True)):
        plan = transition(job(stopping(), ended, now=T0 + 5), None)
        assert (plan.status.phase, plan.status.reason) == ("Stopped", "Plateau")
        assert "(the trainer exited)" in (plan.status.message or "")
        assert kinds(plan.actions) == ["Event:Stopped"]


def test_a_stopping_job_whose_workload_is_deleted_is_stopped() -> None:
    plan = transition(job(stopping(), WorkloadState(exists=False), now=T0 + 5), None)
    assert (plan.status.phase, plan.status.reason) == ("Stopped", "WorkloadDeleted")
    assert CreateWorkload() not in plan.actions and Suspend() not in plan.actions


def test_a_manual_stop_without_a_recorded_reason_is_manual() -> None:
    plan = transition(job(stopping(reason=None, message=None), now=T0 + 5), None)
    assert plan.actions == (RequestStop("Manual"),)
    done = transition(job(stopping(reason=None, message=None), now=T0 + 61), None)
    assert (done.status.phase, done.status.reason) == ("Stopped", "Manual")


def test_a_dropped_sidecar_does_not_interrupt_a_stop() -> None:
    hung = WorkloadState(exists=True, active=1, running=1, sidecar_dropped=True)
    plan = transition(job(stopping(), hung, now=T0 + 5), None)
    assert plan.status.phase == "Stopping" and plan.actions == (RequestStop("Plateau"),)


# --- Pending ----------------------------------------------------------------------------------------------


def test_a_pending_job_whose_pods_went_away_says_so() -> None:
    waited = set_condition([], "Ready", "False", "Unschedulable", "0/4 nodes", rfc3339_at(T0 - 60), 1)
    status = TrainingJobStatus(workload="Job/x", conditions=waited)
    plan = transition(job(status, SUSPENDED, now=T0), None)
    ready = next(c for c in plan.status.conditions if c.type == "Ready")
    assert (plan.status.phase, ready.status, ready.reason) == ("Pending", "False", "NoPods")
    assert plan.actions == ()
    fresh = transition(job(TrainingJobStatus(workload="Job/x"), SUSPENDED), None)
    assert fresh.status.conditions == [] and fresh.status.replicas == 1  # never waited: nothing to say


def test_a_pending_job_with_replicas_zero_is_stopped_by_hand() -> None:
    plan = transition(job(TrainingJobStatus(workload="Job/x"), WorkloadState(exists=True, active=1), replicas=0), None)
    assert (plan.status.phase, plan.status.reason) == ("Stopping", "Manual")
