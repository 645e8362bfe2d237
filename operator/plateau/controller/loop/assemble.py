"""Prometheus' answers to per-job tracks: the reporting replica's series, whose counter moved. Pure."""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any, Optional

from plateau.controller.loop.context import JobContext, Key
from plateau.controller.trackread import TrackReads
from plateau.engine.fold import Evaluation, forecast_anew, track
from plateau.prometheus.promql import Sample
from plateau.prometheus.summaries import SidecarTrack, track_from_series

# A sidecar query's answer: (labels, value) per series, with only the labels the loop reads
# (promql.SidecarDecoder's struct: name, namespace, trainingjob, metric, pod, instance).
Answer = list[tuple[Any, float]]


def tracks(answer: Answer, wanted: set[tuple[str, str, str]], pods: Optional[dict[Key, set[str]]] = None
           ) -> dict[Key, SidecarTrack]:
    """Per job, the summary of its reporting replica; and its pods into `pods`, if given."""
    series: dict[tuple[str, str, str, str, str], dict[str, float]] = defaultdict(dict)
    for labels, value in answer:
        # A pod scraped twice (PodMonitor and annotations) gives two copies: keep them apart.
        series[(labels.namespace, labels.trainingjob, labels.metric, labels.pod, labels.instance)][labels.name] = value
    best: dict[Key, SidecarTrack] = {}
    for (ns, name, metric, pod, _instance), values in series.items():
        if (ns, name, metric) not in wanted:
            continue
        summary = track_from_series(values, metric)
        if summary is None:
            continue
        if pods is not None and pod:
            pods[(ns, name)].add(pod)
        current = best.get((ns, name))
        if current is None or summary.reports > current.reports:  # the reporting replica
            best[(ns, name)] = summary
    return best


def moved(jobs: list[JobContext], counters: Answer, pods: dict[Key, set[str]],
          unmoved: dict[Key, SidecarTrack]) -> list[JobContext]:
    """The jobs whose report counter moved from the one recorded in their status. The others'
    tracks, nothing new to fold, go into `unmoved`; every job's pods into `pods`."""
    wanted = {(c.key[0], c.key[1], c.rule.name) for c in jobs}  # type: ignore[union-attr]
    reports: dict[Key, float] = {}
    for labels, value in counters:
        key = (labels.namespace, labels.trainingjob, labels.metric)
        if key in wanted:
            reports[key[:2]] = max(value, reports.get(key[:2], value))  # the reporting replica
            if labels.pod:
                pods[key[:2]].add(labels.pod)
    out = []
    for ctx in jobs:
        if ctx.key not in reports:
            continue  # no series: the fold says NoSeries
        metric = ctx.status.metric
        if has_news(ctx, reports[ctx.key]):
            out.append(ctx)
        else:
            unmoved[ctx.key] = SidecarTrack(metric.sidecar_reports, metric.spec_key, None)  # type: ignore[union-attr]
    return out


def has_news(ctx: JobContext, reports: float) -> bool:
    """Whether the sidecar's report counter moved from the one recorded in status.metric."""
    metric = ctx.status.metric
    return metric is None or metric.name != ctx.rule.name or metric.sidecar_reports != reports \
        or metric.spec_key != ctx.spec_key  # type: ignore[union-attr]


def custom_track(ctx: JobContext, samples: list[Sample], reads: TrackReads) -> Optional[SidecarTrack]:
    """A workloadRef's own query, folded here: each change of value read is one evaluation (no
    sidecar sees the reports, so the sequence is what the reads saw)."""
    if len(samples) != 1:
        return None
    value = samples[0].value
    previous = reads.previous(ctx)
    if previous is not None:
        previous = forecast_anew(previous, ctx.rule)  # type: ignore[arg-type]  # after a restart
    reports = ctx.status.metric.sidecar_reports if ctx.status.metric else 0
    # A query's NaN (a 0/0 ratio, say) is no trainer's report of one: missing data, never a stop.
    if not math.isfinite(value) or (previous is not None and previous.last == value):
        return SidecarTrack(reports, ctx.spec_key, None)  # nothing new
    return SidecarTrack(reports + 1, ctx.spec_key, track(previous, ctx.rule, (Evaluation(int(samples[0].timestamp), value),)))  # type: ignore[arg-type]
