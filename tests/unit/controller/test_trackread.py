"""What the operator takes from a read of a job's sidecar: status.metric, MetricsAvailable, the
track to decide on, and the news a read brings (the spec to share, resumes to tell)."""

from __future__ import annotations

from typing import Any, Optional

from plateau import api
from plateau.controller.loop.context import JobContext
from plateau.engine.fold import MetricTrack
from plateau.engine.stopflow import Event, ShareSpec
from plateau.prometheus.summaries import SidecarTrack
from plateau.controller.trackread import TrackReads
from plateau.controller.workloads import Workload

NOW = "2027-01-01T00:00:00Z"
STOP = {"metric": {"name": "loss", "patience": 3}}


def context(uid: str = "u1", status: Optional[dict[str, Any]] = None, stop: Optional[dict[str, Any]] = None) -> JobContext:
    body = {"metadata": {"namespace": "n", "name": "j", "uid": uid, "generation": 1},
            "spec": {"template": {"spec": {"containers": [{"name": "t", "image": "x"}]}}, "stop": stop or STOP}}
    spec = api.TrainingJobSpec.model_validate(body["spec"])
    ctx = JobContext(body, spec, spec.stop, api.TrainingJobStatus.model_validate({"phase": "Running", **(status or {})}))
    ctx.workload = Workload(None, "n", "batch/v1", "Job", "j")  # type: ignore[arg-type]
    return ctx


def read(ctx: JobContext, evaluations: int, best: float, step: int, resumes: int = 0,
         stopped: Optional[MetricTrack] = None) -> SidecarTrack:
    current = MetricTrack("loss", evaluations=evaluations, last=best, last_step=step, best=best, best_step=step)
    return SidecarTrack(evaluations, ctx.spec_key, current, stopped, resumes)


def take(reads: TrackReads, ctx: JobContext, sidecar: Optional[SidecarTrack],
         error: Optional[tuple[str, str]] = None) -> tuple[Optional[MetricTrack], dict[str, Any]]:
    update: dict[str, Any] = {}
    return reads.take(ctx, update, sidecar, error, NOW, 1), update


def metrics_available(update: dict[str, Any]) -> Any:
    return next(c for c in update["conditions"] if c.type == "MetricsAvailable")


def available(update: dict[str, Any]) -> tuple[str, str]:
    c = metrics_available(update)
    return c.status, c.reason


def test_a_read_becomes_status_metric_and_the_track_to_decide_on() -> None:
    reads, ctx = TrackReads(), context()
    track, update = take(reads, ctx, read(ctx, 3, 0.5, 300))
    assert track is not None and (track.evaluations, track.best) == (3, 0.5)
    metric = update["metric"]
    assert (metric.sidecar_reports, metric.spec_key, metric.best_history) == (3, ctx.spec_key, [[300.0, 0.5]])
    assert update["evaluations"] == 3 and available(update) == ("True", "SeriesFound")
    # the next cycle, with that status: the track the take made, not one rebuilt from the status
    after = context(status={"evaluations": 3})
    after.status = after.status.model_copy(update={"metric": metric})
    assert reads.previous(after) is track
    rebuilt = reads.previous(context(status={"evaluations": 3, "metric": metric.model_dump(by_alias=True)}))
    assert rebuilt == track and rebuilt is not track  # another status (a restart): rebuilt from it


def test_the_first_track_that_said_stop_is_decided_on_once_there_is_one() -> None:
    reads, ctx = TrackReads(), context()
    stopped = MetricTrack("loss", evaluations=2, best=0.4)
    track, _ = take(reads, ctx, read(ctx, 5, 0.3, 500, stopped=stopped))
    assert track is stopped


def test_no_read_or_an_error_keeps_the_track_the_status_holds() -> None:
    status = {"metric": {"name": "loss", "best": 0.5, "lastStep": 300, "sinceImprovement": 1, "sidecarReports": 3},
              "evaluations": 3}
    reads, ctx = TrackReads(), context(status=status)
    track, update = take(reads, ctx, None)
    assert track is not None and (track.best, track.evaluations, track.since_improvement) == (0.5, 3, 1)
    assert available(update) == ("False", "NoSeries") and "metric" not in update
    assert "since its report 3 (step 300)" in metrics_available(update).message  # not "yet": the status keeps reads
    track, update = take(reads, ctx, read(ctx, 9, 0.1, 900), ("Timeout", "query timed out"))
    assert track is not None and track.best == 0.5 and available(update) == ("False", "Timeout")


def test_a_read_folded_under_another_spec_is_unknown() -> None:
    reads, ctx = TrackReads(), context()
    other = read(ctx, 3, 0.5, 300)._replace(spec_key=(ctx.spec_key or 0) + 1)
    track, update = take(reads, ctx, other)
    assert track is None and "metric" not in update and available(update) == ("False", "SpecPending")


def test_a_job_without_a_metric_rule_takes_nothing() -> None:
    reads, ctx = TrackReads(), context(stop={"maxDuration": "1h"})
    assert take(reads, ctx, None) == (None, {})


def test_a_new_metric_starts_its_history_afresh() -> None:
    status = {"metric": {"name": "accuracy", "best": 0.9, "bestHistory": [[10.0, 0.9]]}, "evaluations": 4}
    reads, ctx = TrackReads(), context(status=status)
    assert reads.previous(ctx) is not None and reads.previous(ctx).name == "accuracy"  # type: ignore[union-attr]
    _, update = take(reads, ctx, read(ctx, 1, 0.7, 100))
    assert update["metric"].best_history == [[100.0, 0.7]]


def test_the_history_grows_from_the_status_s() -> None:
    status = {"metric": {"name": "loss", "best": 0.9, "bestStep": 100, "lastStep": 100, "bestHistory": [[100.0, 0.9]]},
              "evaluations": 1}
    reads, ctx = TrackReads(), context(status=status)
    _, update = take(reads, ctx, read(ctx, 2, 0.7, 200))
    assert update["metric"].best_history == [[100.0, 0.9], [200.0, 0.7]]


def test_news_shares_the_spec_with_sidecars_that_fold_under_another() -> None:
    reads, ctx = TrackReads(), context()
    _, update = take(reads, ctx, read(ctx, 3, 0.5, 300)._replace(spec_key=1))
    status = ctx.status.model_copy(update=update)
    assert ctx.metric_spec is not None and reads.news(ctx, status) == (ShareSpec(ctx.metric_spec.text),)
    assert reads.news(ctx, status.model_copy(update={"phase": "Stopping"})) == ()  # only a running job's
    _, update = take(reads, ctx, read(ctx, 3, 0.5, 300))
    assert reads.news(ctx, ctx.status.model_copy(update=update)) == ()


def test_news_tells_each_resume_once_and_a_restart_tells_none_twice() -> None:
    reads, ctx = TrackReads(), context(status={"metric": {"name": "loss", "resumes": 1}})
    _, update = take(reads, ctx, read(ctx, 5, 0.5, 200, resumes=2))
    status = ctx.status.model_copy(update=update)
    news = reads.news(ctx, status)
    assert len(news) == 1 and isinstance(news[0], Event) and news[0].reason == "Resumed"
    assert "went back to step 200" in news[0].message and "(2 resumes so far)" in news[0].message
    assert reads.news(ctx, status) == ()  # told
    restarted = TrackReads()  # a new leader: what the API had at first sight was told already
    assert restarted.news(context(status={"metric": {"name": "loss", "resumes": 2}}), status) == ()


def test_forget_drops_the_memory_of_the_jobs_not_kept() -> None:
    reads = TrackReads()
    kept, gone = context("u1"), context("u2")
    for ctx in (kept, gone):
        take(reads, ctx, read(ctx, 3, 0.5, 300))
        reads.news(ctx, ctx.status.model_copy(update={"metric": api.MetricSummary(name="loss", resumes=1)}))
    reads.forget(keep={"u1"})
    assert set(reads._made) == {"u1"} and set(reads._resumes_told) == {"u1"}
    reads.forget()
    assert reads._made == {} and reads._resumes_told == {}


def test_a_resume_in_the_first_read_of_a_job_is_told() -> None:
    for status in ({}, {"metric": {"name": "accuracy", "resumes": 4}}):  # no metric yet, or another one
        reads, ctx = TrackReads(), context(status=status)
        _, update = take(reads, ctx, read(ctx, 5, 0.5, 200, resumes=1))
        news = reads.news(ctx, ctx.status.model_copy(update=update))
        assert [n.reason for n in news if isinstance(n, Event)] == ["Resumed"], status


def test_a_track_without_a_last_value_is_taken_and_remembered() -> None:
    """A read can carry a track but no value series (a scrape that lost it): still a track."""
    reads, ctx = TrackReads(), context()
    bare = SidecarTrack(2, ctx.spec_key, MetricTrack("loss", evaluations=2, best=0.5))
    track, update = take(reads, ctx, bare)
    assert track is bare.current and update["metric"].last is None
    after = context(status={"evaluations": 2})
    after.status = after.status.model_copy(update={"metric": update["metric"]})
    assert reads.previous(after) is track
