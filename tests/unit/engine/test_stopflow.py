"""The TrainingJob state machine: transitions, the stop handshake, restarts, resume."""

from __future__ import annotations

from plateau.api import StopSpec, TrainingJobStatus
from plateau.engine.fold import Evaluation, track
from plateau.engine.rules import Observation, decide
from plateau.engine.status import summary_from_track
from plateau.engine.stopflow import (
    CreateWorkload,
    Event,
    JobState,
    RequestStop,
    Resume,
    Suspend,
    Waiting,
    WorkloadState,
    account,
    rfc3339_at,
    transition,
)

T0 = 1_800_000_000.0
STOP = StopSpec.model_validate({"metric": {"name": "l", "patience": 2}, "gracePeriod": "60s", "maxGpuHours": 10})
RUNNING = WorkloadState(exists=True, active=1, running=1, gpus=2)


def state(status: TrainingJobStatus, workload: WorkloadState = RUNNING, now: float = T0, generation: int = 1,
          replicas: int = 1, stop: StopSpec = STOP) -> JobState:
    return JobState(generation, replicas, stop, status, workload, has_template=True, now=now)


def plateaued():
    rule = STOP.metric
    assert rule is not None
    m = track(None, rule, [Evaluation(i, v) for i, v in enumerate([1.0, 0.5, 0.6, 0.7])])
    return decide(STOP, Observation(metric=m, gpu_hours=4.0, elapsed_seconds=100))


def kinds(actions) -> list[str]:
    return [type(a).__name__ + (f":{a.reason}" if isinstance(a, Event) else "") for a in actions]


def test_pending_without_workload_creates_it_once() -> None:
    plan = transition(state(TrainingJobStatus(), WorkloadState(exists=False)), None)
    assert plan.actions == (CreateWorkload(),)
    recorded = plan.status.model_copy(update={"workload": "Job/x"})
    again = transition(state(recorded, WorkloadState(exists=False)), None)
    assert again.status.phase == "Stopped" and again.status.reason == "WorkloadDeleted"


def test_pending_to_running_when_pods_run() -> None:
    plan = transition(state(TrainingJobStatus(workload="Job/x")), None)
    assert plan.status.phase == "Running" and plan.status.start_time == rfc3339_at(T0)
    assert kinds(plan.actions) == ["Event:Running"]


def test_pending_pods_are_not_running_and_the_status_says_why_they_wait() -> None:
    """The Job controller counts pending pods in `active`: they run nothing, use no time and
    no GPUs, and the job stays Pending with Ready=False naming the pods' own reason."""
    queued = WorkloadState(exists=True, active=1, waiting=Waiting("Unschedulable", "pod x-0: 0/4 nodes are available"))
    status = TrainingJobStatus(workload="Job/x", last_evaluation_time=rfc3339_at(T0))
    plan = transition(state(status, queued, now=T0 + 3600), None)
    assert plan.status.phase == "Pending" and plan.actions == ()
    ready = next(c for c in plan.status.conditions if c.type == "Ready")
    assert (ready.status, ready.reason, ready.message) == ("False", "Unschedulable", "pod x-0: 0/4 nodes are available")
    assert account(state(status, queued, now=T0 + 3600)).running_seconds == 0
    pulling = WorkloadState(exists=True, active=1, waiting=Waiting("ImagePullBackOff", "pod x-0: back-off"))
    again = transition(state(plan.status, pulling, now=T0 + 3700), None)
    assert next(c for c in again.status.conditions if c.type == "Ready").reason == "ImagePullBackOff"
    runs = transition(state(again.status, RUNNING, now=T0 + 3800), None)
    assert runs.status.phase == "Running" and runs.status.start_time == rfc3339_at(T0 + 3800)
    assert next(c for c in runs.status.conditions if c.type == "Ready").status == "True"


def test_time_and_gpu_hours_count_while_stopping_too() -> None:
    stopping = TrainingJobStatus(phase="Stopping", last_evaluation_time=rfc3339_at(T0))
    after = account(state(stopping, now=T0 + 1800))
    assert after.running_seconds == 1800 and after.gpu_hours == 1.0
    scheduled_again = WorkloadState(exists=True, active=1, running=0)
    assert account(state(stopping, scheduled_again, now=T0 + 1800)).running_seconds == 0


def test_a_job_whose_sidecar_was_dropped_fails_loudly_and_is_suspended() -> None:
    hung = WorkloadState(exists=True, active=1, sidecar_dropped=True)
    plan = transition(state(TrainingJobStatus(workload="Job/x"), hung), None)
    assert (plan.status.phase, plan.status.reason) == ("Failed", "SidecarUnsupported")
    assert "SidecarContainers" in (plan.status.message or "") and "1.29" in (plan.status.message or "")
    assert kinds(plan.actions) == ["Suspend", "Event:Failed"] and plan.actions[1].type == "Warning"  # type: ignore[union-attr]
    assert transition(state(plan.status, hung, now=T0 + 10), None).actions == ()  # once


def test_the_full_handshake() -> None:
    running = TrainingJobStatus(phase="Running", workload="Job/x", start_time=rfc3339_at(T0))
    requested = transition(state(running), plateaued())
    assert requested.status.phase == "Stopping" and requested.status.reason == "Plateau"
    assert kinds(requested.actions) == ["RequestStop", "Event:StopRequested"]
    assert requested.status.gpu_hours_saved == 6.0

    waiting = transition(state(requested.status, now=T0 + 30), None)
    assert waiting.status == requested.status and waiting.actions == (RequestStop("Plateau"),)

    done = transition(state(requested.status, now=T0 + 61), None)
    assert done.status.phase == "Stopped" and done.status.stop_time == rfc3339_at(T0 + 61)
    assert "gracePeriod 60s is over" in (done.status.message or "")
    assert kinds(done.actions) == ["Suspend", "Event:Stopped"]

    after = transition(state(done.status, now=T0 + 200), plateaued())
    assert after.actions == () and after.status == done.status  # exactly once


def test_a_trainer_that_exits_ends_the_grace_period_early() -> None:
    stopping = transition(state(TrainingJobStatus(phase="Running", workload="Job/x")), plateaued()).status
    exited = transition(state(stopping, WorkloadState(exists=True, active=0), now=T0 + 5), None)
    assert exited.status.phase == "Stopped" and "the trainer exited" in (exited.status.message or "")
    assert Suspend() in exited.actions


def test_restart_mid_stop_repeats_only_idempotent_steps() -> None:
    """Killed after writing Stopping but before annotating pods: the next cycle annotates."""
    stopping = transition(state(TrainingJobStatus(phase="Running", workload="Job/x")), plateaued()).status
    restarted = transition(state(stopping, now=T0 + 1), plateaued())
    assert restarted.actions == (RequestStop("Plateau"),) and restarted.status == stopping


def test_target_reached_succeeds() -> None:
    stop = StopSpec.model_validate({"metric": {"name": "acc", "mode": "max", "target": 0.9}})
    rule = stop.metric
    assert rule is not None
    d = decide(stop, Observation(metric=track(None, rule, [Evaluation(1, 0.95)])))
    stopping = transition(state(TrainingJobStatus(phase="Running", workload="Job/x"), stop=stop), d).status
    done = transition(state(stopping, WorkloadState(exists=True, succeeded=True), now=T0 + 3, stop=stop), None)
    assert done.status.phase == "Succeeded" and done.status.reason == "TargetReached"
    assert Suspend() not in done.actions  # a finished Job needs no suspending


def test_dry_run_reports_once_and_never_acts() -> None:
    stop = STOP.model_copy(update={"dry_run": True})
    rule = stop.metric
    assert rule is not None
    m = track(None, rule, [Evaluation(i, v) for i, v in enumerate([1.0, 0.5, 0.6, 0.7])])
    d = decide(stop, Observation(metric=m))
    running = TrainingJobStatus(phase="Running", workload="Job/x")
    first = transition(state(running, stop=stop), d)
    assert first.status.phase == "Running" and first.status.would_stop is not None
    assert first.status.would_stop.reason == "Plateau"
    assert kinds(first.actions) == ["Event:WouldStop"]
    second = transition(state(first.status, now=T0 + 10, stop=stop), d)
    assert second.actions == ()


def test_manual_stop_and_resume_by_replicas() -> None:
    running = TrainingJobStatus(phase="Running", workload="Job/x", observed_generation=1)
    stopping = transition(state(running, generation=2, replicas=0), None)
    assert stopping.status.reason == "Manual" and stopping.status.phase == "Stopping"
    stopped = transition(state(stopping.status, WorkloadState(exists=True, active=0), generation=2, replicas=0), None)
    assert stopped.status.phase == "Stopped" and stopped.status.observed_generation == 2
    still = transition(state(stopped.status, WorkloadState(exists=True, suspended=True), generation=2, replicas=0), None)
    assert still.actions == ()
    resumed = transition(state(stopped.status, WorkloadState(exists=True, suspended=True), generation=3, replicas=2), None)
    assert resumed.status.phase == "Running" and resumed.status.reason is None
    assert kinds(resumed.actions) == ["Resume", "Event:Resumed"] and Resume(2) in resumed.actions


def test_a_scaled_workload_resumes_to_the_size_the_status_kept() -> None:
    """Deployments and the like are scaled to 0: the TrainingJob's status, not the user's
    object, remembers their size, from the stop request on (before anything is scaled)."""
    scaled = WorkloadState(exists=True, active=3, running=3, scale_replicas=3)
    running = TrainingJobStatus(phase="Running", workload="Deployment/x", observed_generation=1)
    job = JobState(1, 1, STOP, running, scaled, has_template=False, now=T0)
    stopping = transition(job, plateaued()).status
    assert stopping.replicas_before_stop == 3
    gone = WorkloadState(exists=True, active=0, suspended=True, scale_replicas=0)
    stopped = transition(job._replace(status=stopping, workload=gone, now=T0 + 5), None).status
    assert (stopped.phase, stopped.replicas_before_stop) == ("Stopped", 3)
    resumed = transition(job._replace(status=stopped, workload=gone, generation=2, now=T0 + 60), None)
    assert Resume(3) in resumed.actions and resumed.status.replicas_before_stop is None


def test_workload_finishing_or_failing_by_itself() -> None:
    running = TrainingJobStatus(phase="Running", workload="Job/x")
    ok = transition(state(running, WorkloadState(exists=True, succeeded=True)), None)
    bad = transition(state(running, WorkloadState(exists=True, failed=True, message="BackoffLimitExceeded")), None)
    assert (ok.status.phase, ok.status.reason) == ("Succeeded", "Completed")
    assert (bad.status.phase, bad.status.reason, bad.status.message) == ("Failed", "WorkloadFailed", "BackoffLimitExceeded")
    assert kinds(bad.actions) == ["Event:Failed"] and bad.actions[0].type == "Warning"  # type: ignore[union-attr]


def test_a_workload_ref_applied_before_its_workload_waits_for_it() -> None:
    """GitOps tools apply in any order: a missing target is not a deleted one while Pending."""
    pending = TrainingJobStatus()
    job = JobState(1, 1, STOP, pending, WorkloadState(exists=False), has_template=False, now=T0)
    plan = transition(job, None)
    assert plan.status.phase == "Pending" and plan.actions == ()
    ready = next(c for c in plan.status.conditions if c.type == "Ready")
    assert (ready.status, ready.reason) == ("False", "WorkloadNotFound")
    created = transition(job._replace(status=plan.status, workload=RUNNING, now=T0 + 60), None)
    assert created.status.phase == "Running" and next(c for c in created.status.conditions if c.type == "Ready").status == "True"
    gone = transition(job._replace(status=created.status, now=T0 + 120), None)
    assert gone.status.phase == "Stopped" and gone.status.reason == "WorkloadDeleted"


def test_deleted_child_ends_the_job_without_recreating() -> None:
    running = TrainingJobStatus(phase="Running", workload="Job/x")
    plan = transition(state(running, WorkloadState(exists=False)), None)
    assert plan.status.reason == "WorkloadDeleted" and CreateWorkload() not in plan.actions


def test_accounting_counts_only_running_time() -> None:
    running = TrainingJobStatus(phase="Running", last_evaluation_time=rfc3339_at(T0))
    after = account(state(running, now=T0 + 3600))
    assert after.running_seconds == 3600 and after.gpu_hours == 2.0
    idle = account(state(running, WorkloadState(exists=True, active=0, suspended=True), now=T0 + 3600))
    assert idle.running_seconds == 0 and idle.last_evaluation_time == rfc3339_at(T0 + 3600)


def test_zero_grace_period_asks_and_stops_in_one_cycle() -> None:
    stop = StopSpec.model_validate({"metric": {"name": "l", "patience": 2}, "gracePeriod": "0s", "maxGpuHours": 10})
    rule = stop.metric
    assert rule is not None
    d = decide(stop, Observation(metric=track(None, rule, [Evaluation(i, v) for i, v in enumerate([1.0, 0.5, 0.6, 0.7])])))
    plan = transition(state(TrainingJobStatus(phase="Running", workload="Job/x"), stop=stop), d)
    assert plan.status.phase == "Stopped" and plan.status.stop_requested_time == plan.status.stop_time
    assert kinds(plan.actions) == ["RequestStop", "Event:StopRequested", "Suspend", "Event:Stopped"]


def test_finished_jobs_are_not_accounted_and_resume_restarts_the_clock() -> None:
    stopped = TrainingJobStatus(phase="Stopped", last_evaluation_time=rfc3339_at(T0), running_seconds=10.0,
                                observed_generation=1)
    assert account(state(stopped, now=T0 + 3600)) == stopped
    resumed = transition(state(stopped, WorkloadState(exists=True, suspended=True), now=T0 + 3600, generation=2), None)
    assert resumed.status.last_evaluation_time == rfc3339_at(T0 + 3600)
    later = account(state(resumed.status, now=T0 + 3660))
    assert later.running_seconds == 70.0  # the hour spent stopped does not count


def test_a_dry_run_reports_the_step_the_rules_fired_at_not_the_last_step_read() -> None:
    """A read may see reports past the one the rules fired at (the sidecar kept that one's
    track): wouldStop names the decision's step, whatever status.metric has reached since."""
    stop = STOP.model_copy(update={"dry_run": True})
    rule = stop.metric
    assert rule is not None
    fired = track(None, rule, [Evaluation(i, v) for i, v in enumerate([1.0, 0.5, 0.6, 0.7])])
    d = decide(stop, Observation(metric=fired))
    later = summary_from_track(track(fired, rule, [Evaluation(9, 0.1)]))
    running = TrainingJobStatus(phase="Running", workload="Job/x", metric=later, evaluations=5)
    plan = transition(state(running, stop=stop), d)
    assert plan.status.would_stop is not None and plan.status.would_stop.step == 3 == d.step
