"""Best-so-far histories for cohort rules, across resumes."""

from __future__ import annotations

from plateau.api import StopSpec
from plateau.cohort import record_best
from plateau.history import MetricHistory, metric_stop_spec


def test_a_resume_drops_the_bests_its_purged_evaluations_set() -> None:
    """What a peer sees after a resume is the best of the evaluations that survived it."""
    spec = metric_stop_spec(StopSpec.model_validate({"metric": {"name": "m"}}))
    assert spec is not None
    history = MetricHistory(spec)
    best: list[list[float]] = []
    for step, value in [(1, 5.0), (2, 4.0), (3, 3.0), (4, 2.0), (2, 4.5), (3, 4.2)]:
        history.add(step, value)
        track = history.track
        assert track is not None
        best = record_best(best, track.best_step, track.best, track.last_step)
    # The resume at step 2 purged the bests of steps 2 to 4; 4.5 and 4.2 are the new ones.
    assert best == [[1.0, 5.0], [2.0, 4.5], [3.0, 4.2]]
    assert record_best(best, 3, 4.2, 5) is best  # no resume, nothing new: the same history
