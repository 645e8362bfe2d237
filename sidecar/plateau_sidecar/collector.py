"""Exposition: a prometheus_client Collector over the store's snapshot.

A custom collector instead of labelled Gauges: ingest then never touches prometheus_client
(whose `.labels()` lookup and per-child locks cost more than the whole ingest), and every
scrape sees one consistent snapshot of all series.

Formatting costs prometheus_client several microseconds per sample (10 series x 100 metrics
is 1,000 samples), so the text is cached: per family, re-rendered only when its samples
changed (an evaluation usually moves the last value, step and count, not the min, max or
non-finite count), and as a whole while the store has not changed at all (evaluations are
usually rarer than scrapes). The process metrics are always fresh.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from operator import attrgetter

from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample

from . import protocol as p
from .store import MetricStore, SeriesView, TrackView

_LABELS = [p.LABEL_METRIC, p.LABEL_TRAININGJOB]

# (series name, help, which field of SeriesView); a None field (min/max before any finite
# value) is left out rather than exported as a made-up number.
_Field = Callable[[SeriesView], float | None]
_GAUGES: tuple[tuple[str, str, _Field], ...] = (
    (p.SERIES_VALUE, "Last value reported for the metric (NaN and inf included).", attrgetter("value")),
    (p.SERIES_STEP, "Training step of the last report of the metric.", attrgetter("step")),
    (p.SERIES_MIN, "Smallest finite value reported so far.", attrgetter("min")),
    (p.SERIES_MIN_STEP, "Training step of the smallest finite value.", attrgetter("min_step")),
    (p.SERIES_MIN_REPORT, "Report number (1-based) of the smallest finite value.", attrgetter("min_report")),
    (p.SERIES_MAX, "Largest finite value reported so far.", attrgetter("max")),
    (p.SERIES_MAX_STEP, "Training step of the largest finite value.", attrgetter("max_step")),
    (p.SERIES_MAX_REPORT, "Report number (1-based) of the largest finite value.", attrgetter("max_report")),
)
_COUNTERS: tuple[tuple[str, str, _Field], ...] = (
    (p.SERIES_REPORTS, "Reports (evaluations) of the metric received by the sidecar.", attrgetter("reports")),
    (p.SERIES_NONFINITE, "Reports of the metric whose value was NaN or infinite.", attrgetter("nonfinite")),
)


class StoreCollector(Collector):
    def __init__(self, store: MetricStore) -> None:
        self.store = store
        self.scraped_generation = -1  # the store generation the latest render saw

    def collect(self) -> Iterator[Metric]:
        snap = self.store.snapshot()
        self.scraped_generation = snap.generation
        tj = self.store.trainingjob
        items = [([name, tj], view) for name, view in sorted(snap.series.items())]
        # CounterMetricFamily takes the name with or without "_total" and prints it with.
        for family_type, specs in ((GaugeMetricFamily, _GAUGES), (CounterMetricFamily, _COUNTERS)):
            for name, doc, field in specs:
                family = family_type(name, doc, labels=_LABELS)
                for labels, view in items:
                    value = field(view)
                    if value is not None:
                        family.add_metric(labels, value)
                yield family
        yield from _track_families(snap.track, tj)
        bad = CounterMetricFamily(
            p.SERIES_BAD_INPUT,
            "Input the sidecar rejected or could not read, by kind.",
            labels=["kind", p.LABEL_TRAININGJOB],
        )
        for kind, count in snap.bad_input.items():
            bad.add_metric([kind.value, tj], count)
        yield bad


def _track_families(view: TrackView | None, tj: str) -> Iterator[Metric]:
    """The monitored metric's track; a field the engine has no value for yet is left out."""
    if view is None:
        return
    labels = [view.metric, tj]
    scalars = (
        (GaugeMetricFamily, p.SERIES_TRACK_SPEC, "Key of the metric stop spec the track was folded under.", view.spec_key),
        (CounterMetricFamily, p.SERIES_TRACK_RESUMES, "Reports whose step went back: resumes from a checkpoint.", view.resumes),
        (GaugeMetricFamily, p.SERIES_TRACK_KEPT, "1 while every evaluation is kept, so a resume can purge.", int(view.kept)),
    )
    for family_type, name, doc, value in scalars:
        family = family_type(name, doc, labels=_LABELS)
        family.add_metric(labels, value)
        yield family
    for series, track in ((p.TRACK_SERIES, view.current), (p.STOPPED_SERIES, view.stopped)):
        if track is None:
            continue
        for name, field in series.items():
            value = getattr(track, field)
            if value is not None:
                family = GaugeMetricFamily(name, f"The engine's {field} of the monitored metric.", labels=_LABELS)
                family.add_metric(labels, value)
                yield family


class _Families(Collector):
    """Already collected families, for generate_latest."""

    def __init__(self, families: Iterable[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterable[Metric]:
        return self.families


class Exposition:
    """The body of /metrics: the store's series, then the sidecar's own process metrics."""

    def __init__(self, store: MetricStore) -> None:
        self.store = store
        self.collector = StoreCollector(store)
        self._process_registry = CollectorRegistry(auto_describe=False)
        ProcessCollector(registry=self._process_registry)  # memory, CPU and fds of the sidecar
        self._lock = threading.Lock()  # concurrent scrapes render once
        self._families: dict[str, tuple[list[Sample], bytes]] = {}
        self._cached = b""

    def render(self) -> bytes:
        with self._lock:
            if self.collector.scraped_generation != self.store.generation:
                self._cached = b"".join(self._render(family) for family in self.collector.collect())
            store_part = self._cached
        return store_part + generate_latest(self._process_registry)

    def _render(self, family: Metric) -> bytes:
        cached = self._families.get(family.name)
        # Sample equality compares names, label dicts and values (a NaN never equals itself,
        # so a family holding one is rendered again: correct, merely uncached).
        if cached is None or cached[0] != family.samples:
            cached = self._families[family.name] = (family.samples, generate_latest(_Families([family])))
        return cached[1]
