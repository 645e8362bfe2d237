"""The aggregate series (count, last, running min/max) lose no evaluation between scrapes.

The operator reads the sidecar's track instead (tests/unit/engine/test_history.py); these series are
for dashboards and alerts, and what they promise is checked here. Each scrape renders /metrics
and parses it back, as Prometheus does. `ScrapedPatience` models what a reader of these series
alone can compute; it is checked against an exact patience counter that saw every report:
- reports slower than scrapes: the count is exact (the report count tells a new evaluation
  from a repeated value, the step says which one it was);
- reports faster than scrapes: the count is never larger than the exact one (a stop can only
  come later, never earlier); with min_delta = 0 it is still exact;
- a best value reported and superseded between two scrapes is still visible.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from plateau.api import StopSpec
from plateau.engine.history import metric_spec_for
from plateau.prometheus.summaries import track_from_series
from plateau_sidecar import protocol as p
from plateau_sidecar.collector import Exposition
from plateau_sidecar.store import BadInput, MetricStore

METRIC = "val_loss"


class Sidecar:
    """A store and its registry: `report()` as the trainer does, `scrape()` as Prometheus does."""

    def __init__(self) -> None:
        self.store = MetricStore("tj")
        self.exposition = Exposition(self.store)

    def report(self, step: int, value: float) -> None:
        with self.store.lock:
            self.store.add_record(step, {"step": step, METRIC: value})

    def scrape(self) -> dict[str, float]:
        """The samples of METRIC, by series name, as Prometheus would store them."""
        samples: dict[str, dict[str, float]] = defaultdict(dict)
        for family in text_string_to_metric_families(self.exposition.render().decode()):
            for sample in family.samples:
                assert "job" not in sample.labels
                if p.LABEL_METRIC in sample.labels:
                    samples[sample.labels[p.LABEL_METRIC]][sample.name] = sample.value
        return samples[METRIC]


def exact_patience(values: list[float], mode: str, min_delta: float) -> int:
    """Evaluations since the last improvement by more than min_delta (Keras semantics)."""
    sign = 1.0 if mode == "min" else -1.0
    reference, since = math.inf, 0
    for raw in values:
        v = sign * raw
        if math.isfinite(v) and v < reference - min_delta:
            reference, since = v, 0
        else:
            since += 1
    return since


@dataclass
class ScrapedPatience:
    """The patience count the operator can derive from scrapes alone.

    With one new report per scrape it sees every value and counts exactly. After a scrape
    that covers several reports it knows only the running extreme and its report number, so
    it keeps bounds [lo, hi] on the reference an exact count would use (in "lower is better"
    orientation) and resets the count whenever an improvement is possible: the count stays a
    lower bound of the exact one."""

    mode: str
    min_delta: float
    reports: int = 0
    since: int = 0
    lo: float = math.inf
    hi: float = math.inf

    def see(self, sample: dict[str, float]) -> None:
        sign = 1.0 if self.mode == "min" else -1.0
        reports = int(sample.get(p.SERIES_REPORTS, 0))
        new, d = reports - self.reports, self.min_delta
        if new == 1:
            v = sign * sample[p.SERIES_VALUE]
            if not math.isfinite(v) or v >= self.hi - d:  # certainly no improvement
                self.since += 1
            elif v < self.lo - d:  # certainly an improvement: the reference is exact again
                self.lo = self.hi = v
                self.since = 0
            else:  # maybe an improvement: count from here, to stay on the safe side
                self.lo, self.hi = min(self.lo, v), v + d
                self.since = 0
        elif new > 1:
            extreme, at = (
                (p.SERIES_MIN, p.SERIES_MIN_REPORT) if self.mode == "min" else (p.SERIES_MAX, p.SERIES_MAX_REPORT)
            )
            if at in sample and sample[at] > self.reports and sign * sample[extreme] < self.hi - d:
                # The best so far came in this window, so the last improvement came no later.
                e = sign * sample[extreme]
                self.lo, self.hi = e, e + d
                self.since = reports - int(sample[at])
            else:
                self.since += new
        self.reports = reports


def test_slow_reports_reconstruct_every_evaluation_including_repeated_values() -> None:
    sidecar = Sidecar()
    reported = [(100, 0.9), (200, 0.5), (300, 0.5), (400, 0.5), (500, math.inf), (600, 0.5)]
    seen: list[tuple[int, float]] = []
    last_count = 0
    for step, value in reported:
        sidecar.report(step, value)
        for _ in range(2):  # two scrapes per report: the second sees nothing new
            sample = sidecar.scrape()
            if sample[p.SERIES_REPORTS] > last_count:  # a repeated value is still a new evaluation
                assert sample[p.SERIES_REPORTS] == last_count + 1
                last_count += 1
                seen.append((int(sample[p.SERIES_STEP]), sample[p.SERIES_VALUE]))
    assert seen == reported


def test_a_best_superseded_between_two_scrapes_is_still_visible() -> None:
    sidecar = Sidecar()
    sidecar.report(100, 0.8)
    assert sidecar.scrape()[p.SERIES_MIN] == 0.8
    for step, value in [(200, 0.6), (300, 0.2), (400, 0.7), (500, math.nan)]:
        sidecar.report(step, value)
    sample = sidecar.scrape()
    assert math.isnan(sample[p.SERIES_VALUE])
    assert (sample[p.SERIES_MIN], sample[p.SERIES_MIN_STEP], sample[p.SERIES_MIN_REPORT]) == (0.2, 300, 3)
    assert (sample[p.SERIES_MAX], sample[p.SERIES_MAX_STEP], sample[p.SERIES_MAX_REPORT]) == (0.8, 100, 1)
    assert (sample[p.SERIES_REPORTS], sample[p.SERIES_NONFINITE]) == (5, 1)


def test_fast_reports_count_conservatively() -> None:
    # min_delta 1: 9.5 is no improvement on 10, 8.7 is. A burst hides the 10 from the operator,
    # who must still not count 8.7 as a second evaluation without improvement.
    values, scrape_after = [10.0, 9.5, 8.7, 8.6, 8.65], {2, 3, 5}
    sidecar, tracker = Sidecar(), ScrapedPatience("min", 1.0)
    for n, value in enumerate(values, start=1):
        sidecar.report(n * 10, value)
        if n in scrape_after:
            tracker.see(sidecar.scrape())
            assert tracker.since <= exact_patience(values[:n], "min", 1.0)
    # 8.6 might have been an improvement for all the operator can tell: it counts 1, not 2.
    assert (tracker.since, exact_patience(values, "min", 1.0)) == (1, 2)


def test_fast_reports_are_exact_without_min_delta() -> None:
    values = [5.0, 3.0, 4.0, 2.0, 2.0, 6.0, math.nan, 7.0]
    sidecar, tracker = Sidecar(), ScrapedPatience("min", 0.0)
    for n, value in enumerate(values, start=1):
        sidecar.report(n, value)
        if n % 3 == 0 or n == len(values):
            tracker.see(sidecar.scrape())
            assert tracker.since == exact_patience(values[:n], "min", 0.0)
    assert tracker.since == 4  # reports since the first 2.0, read off reports_total - min_report


# Multiples of 0.25 are exact in binary floating point, so bounds like hi - d compare exactly.
_values = st.one_of(st.integers(0, 40).map(lambda i: i / 4), st.sampled_from([math.nan, math.inf]))


@settings(max_examples=200, deadline=None)
@given(
    reports=st.lists(st.tuples(_values, st.integers(0, 3)), min_size=1, max_size=30),
    mode=st.sampled_from(["min", "max"]),
    min_delta=st.sampled_from([0.0, 0.25, 1.0]),
)
def test_scraped_patience_is_exact_when_reports_are_slower_and_conservative_when_faster(
    reports: list[tuple[float, int]], mode: str, min_delta: float
) -> None:
    """Each report is followed by 0 to 3 scrapes; 0 means the next report comes first."""
    sidecar, tracker = Sidecar(), ScrapedPatience(mode, min_delta)
    values: list[float] = []
    every_report_seen = True
    for step, (value, scrapes) in enumerate(reports, start=1):
        sidecar.report(step, value)
        values.append(value)
        if step == len(reports):
            scrapes = max(scrapes, 1)
        for _ in range(scrapes):
            before = tracker.reports
            tracker.see(sidecar.scrape())
            every_report_seen &= tracker.reports - before <= 1
            exact = exact_patience(values, mode, min_delta)
            assert tracker.reports == len(values)
            if every_report_seen or min_delta == 0.0:
                assert tracker.since == exact
            else:
                assert tracker.since <= exact


def test_every_change_reaches_the_next_scrape_through_the_render_cache() -> None:
    sidecar = Sidecar()
    sidecar.report(1, 0.5)
    first = sidecar.exposition.render()
    assert sidecar.exposition.render().split(b"# HELP process_")[0] == first.split(b"# HELP process_")[0]
    sidecar.report(2, 0.5)  # same value: only the step and the count move
    assert (sidecar.scrape()[p.SERIES_STEP], sidecar.scrape()[p.SERIES_REPORTS]) == (2, 2)
    sidecar.store.report_bad(BadInput.MALFORMED_JSON, "a change outside any metric")
    assert b'plateau_sidecar_bad_input_total{kind="malformed_json",trainingjob="tj"} 1.0' in sidecar.exposition.render()
    sidecar.report(3, math.nan)
    sidecar.report(4, math.nan)  # a family holding NaN is never served from the cache
    assert sidecar.scrape()[p.SERIES_STEP] == 4


def test_a_forecast_s_regime_count_is_exported_only_by_a_forecasting_spec_and_reads_back_the_same() -> None:
    """Without a forecast the track has no regime count, so the sidecar exports none (10,000 jobs,
    10,000 fewer samples a scrape); the operator's read equals the sidecar's track either way."""
    for forecast, exported in ((None, False), ({"horizon": 100, "unit": "evaluations"}, True)):
        sidecar = Sidecar()
        rule = {"name": METRIC, "patience": 3, **({"forecast": forecast} if forecast else {})}
        sidecar.store.set_spec(metric_spec_for(StopSpec.model_validate({"metric": rule})).text)  # type: ignore[union-attr]
        for step in range(1, 13):
            sidecar.report(step, 1.0 / step)
        samples = sidecar.scrape()
        assert ("plateau_track_regime_evaluations" in samples) is exported
        read = track_from_series(samples, METRIC)
        with sidecar.store.lock:
            kept = sidecar.store.history.track  # type: ignore[union-attr]
        assert read is not None and read.current is not None
        assert read.current.regime_evaluations == kept.regime_evaluations == (12 if exported else None)
