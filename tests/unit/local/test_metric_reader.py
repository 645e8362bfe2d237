"""MetricReader's reads while the sidecar shuts down, from sources that answer as the real ones do."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Optional, Union

from plateau.api import StopSpec
from plateau.engine.fold import Evaluation, track
from plateau.engine.history import metric_spec_for
from plateau.local.metrics import MetricReader
from plateau.local.scrape import SourceError
from plateau.prometheus.summaries import SidecarTrack

SPEC = StopSpec.model_validate({"metric": {"name": "val_loss", "patience": 3}})
KEY = metric_spec_for(SPEC).key  # type: ignore[union-attr]
RULE = SPEC.metric
assert RULE is not None


class Answers:
    """A source that gives its answers in order: a read, None (no series), or an error."""

    def __init__(self, *answers: Union[Optional[SidecarTrack], SourceError]) -> None:
        self.answers: Iterator[Union[Optional[SidecarTrack], SourceError]] = iter(answers)

    def read(self, metric: str) -> Optional[SidecarTrack]:
        answer = next(self.answers)
        if isinstance(answer, SourceError):
            raise answer
        return answer


def _read(*values: float) -> SidecarTrack:
    state = track(None, RULE, [Evaluation(step, v) for step, v in enumerate(values, start=1)])
    return SidecarTrack(reports=len(values), spec_key=KEY, current=state)


def test_a_last_read_that_finds_no_series_keeps_what_the_reads_found() -> None:
    # Prometheus marks a target's series stale at the first failed scrape after the sidecar exits:
    # a last read can find none, which says the sidecar has gone, not that metrics never came.
    reader = MetricReader(RULE, Answers(_read(1.0, 0.5), None, SourceError("Unreachable", "refused")), KEY)
    reader.read()
    for _ in range(2):
        reader.read_last()
        assert reader.availability[0] == "True" and reader.track is not None and reader.track.best == 0.5


def test_a_last_read_with_reports_still_folds_them() -> None:
    reader = MetricReader(RULE, Answers(_read(1.0), _read(1.0, 0.4)), KEY)
    reader.read()
    reader.read_last()
    assert reader.track is not None and reader.track.evaluations == 2 and reader.points[-1] == (2, 0.4)


def test_a_live_read_that_finds_no_series_says_so() -> None:
    reader = MetricReader(RULE, Answers(None, _read(1.0, 0.5), None), KEY)
    reader.read()
    assert reader.availability == ("False", "NoSeries", "no val_loss series from the sidecar yet")
    reader.read()
    reader.read()
    assert reader.availability[:2] == ("False", "NoSeries") and "since its report 2 (step 2)" in reader.availability[2]
