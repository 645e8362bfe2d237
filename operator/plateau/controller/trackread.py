"""A job's metric track, taken from a read of its sidecar: status.metric, the MetricsAvailable
condition, the track the rules decide on, and what the read asks the operator to do.

The sidecar folds every report (plateau.engine.history); nothing here folds, except that a status
written before a restart is turned back into the engine's state.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Optional

from plateau import api
from plateau.engine.cohort import record_best
from plateau.engine.fold import MetricTrack
from plateau.engine.status import METRICS_AVAILABLE, set_condition, summary_from_track, track_from_summary
from plateau.engine.stopflow import Event, ShareSpec
from plateau.prometheus.summaries import SPEC_PENDING, SidecarTrack, availability

if TYPE_CHECKING:
    from plateau.controller.loop.context import JobContext


class TrackReads:
    """What the operator remembers of the tracks it took, by job uid; the API has the rest."""

    def __init__(self) -> None:
        self._made: dict[str, tuple[api.MetricSummary, MetricTrack]] = {}  # the last take's
        self._resumes_told: dict[str, int] = {}  # the resumes the Events have told

    def forget(self, keep: Optional[set[str]] = None) -> None:
        """Drop every job's memory, or the memory of jobs not in `keep`."""
        for memory in (self._made, self._resumes_told):
            for uid in [u for u in memory if keep is None or u not in keep]:
                del memory[uid]

    def previous(self, ctx: JobContext) -> Optional[MetricTrack]:
        """The engine state behind status.metric: what the last take made, while it stands."""
        status = ctx.status
        if status.metric is None:
            return None
        made = self._made.get(ctx.uid)
        if made is not None and made[0] is status.metric and made[1].evaluations == status.evaluations:
            return made[1]
        return track_from_summary(status.metric, status.evaluations)

    def take(self, ctx: JobContext, update: dict[str, Any], read: Optional[SidecarTrack],
             error: Optional[tuple[str, str]], now: str, generation: int) -> Optional[MetricTrack]:
        """The metric's track as the sidecar folded it, with status.metric, evaluations and the
        MetricsAvailable condition added to `update`. Returns the track to decide on: the first
        one that said stop, once there is one, so a read that comes later decides the same."""
        rule, status = ctx.rule, ctx.status
        if rule is None:
            return None
        previous = self.previous(ctx)
        if previous is not None and previous.name != rule.name:
            previous = None  # the spec now watches another metric: start its history afresh
        # The messages are constant: the report count is status.metric.sidecarReports, and a
        # condition that changed every cycle would cost every job a new condition list.
        kept = status.metric if previous is not None else None  # what a read without series leaves standing
        seen = (kept.sidecar_reports, kept.last_step) if kept is not None else (0, None)
        state, reason, message = ("False", *error) if error is not None else availability(read, rule.name, ctx.spec_key, seen)
        update["conditions"] = set_condition(status.conditions, METRICS_AVAILABLE, state, reason, message, now, generation)
        if reason == SPEC_PENDING:
            return None  # folded under another spec: unknown, never a reason to stop
        if read is None or error is not None or read.current is None:
            return previous  # no read, or nothing new since the last one (most jobs, most cycles)
        current = read.current
        history = record_best(status.metric.best_history if status.metric and previous else [],
                              current.best_step, current.best, current.last_step)
        update["metric"] = metric = summary_from_track(current, read.reports, read.spec_key, read.resumes, history,
                                                       previous=status.metric if previous else None)
        update["evaluations"] = current.evaluations
        if current.last is None or math.isfinite(current.last):  # else status.metric.last is null
            self._made[ctx.uid] = (metric, current)
        return read.stopped or current

    def news(self, ctx: JobContext, status: api.TrainingJobStatus) -> tuple[Any, ...]:
        """What a read asks for besides the transition: the current spec handed to sidecars that
        fold under another, and an Event for the resumes seen since the last one told."""
        news: tuple[Any, ...] = ()
        pending = any(c.type == METRICS_AVAILABLE and c.reason == SPEC_PENDING for c in status.conditions)
        if pending and ctx.metric_spec is not None and ctx.workload is not None \
                and status.phase == api.Phase.RUNNING.value:
            news += (ShareSpec(ctx.metric_spec.text),)
        metric, before = status.metric, ctx.status.metric
        if metric is not None:
            # Counted from what the API had at first sight, so a restart posts no resume twice.
            told = self._resumes_told.setdefault(ctx.uid, before.resumes if before and before.name == metric.name else 0)
            if metric.resumes > told:
                self._resumes_told[ctx.uid] = metric.resumes
                news += (Event("Normal", "Resumed", f"{metric.name} went back to step {metric.last_step}: the trainer"
                               " resumed from a checkpoint, and the evaluations after it left the track"
                               f" ({metric.resumes} resumes so far)"),)
        return news
