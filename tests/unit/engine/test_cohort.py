"""Cohort rules' inputs: best-so-far histories (across resumes, thinned), a peer's best at a
step, and the label selector that picks the peers."""

from __future__ import annotations

from plateau.api import MetricSummary, StopSpec
from plateau.engine.cohort import MAX_POINTS, best_at, record_best, selector_matches
from plateau.engine.history import MetricHistory, metric_stop_spec


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


# --- best_at: a peer's best at a step ----------------------------------------------------------


def peer(history: list[list[float]], last_step: int | None) -> MetricSummary:
    return MetricSummary(name="m", last_step=last_step, best_history=history)


def test_a_peer_counts_with_its_best_at_or_before_the_step() -> None:
    summary = peer([[1.0, 5.0], [4.0, 3.0], [9.0, 2.0]], last_step=10)
    assert [best_at(summary, s) for s in (1, 3, 4, 8, 9, 10)] == [5.0, 5.0, 3.0, 3.0, 2.0, 2.0]


def test_a_peer_that_has_not_reached_the_step_does_not_count() -> None:
    """Its best so far says nothing of what it will be at a step it has not reached."""
    summary = peer([[1.0, 5.0], [4.0, 3.0]], last_step=6)
    assert best_at(summary, 6) == 3.0  # reached exactly: it counts
    assert best_at(summary, 7) is None
    assert best_at(peer([[1.0, 5.0]], last_step=None), 1) is None  # no report yet


def test_a_peer_without_a_best_by_the_step_does_not_count() -> None:
    assert best_at(peer([[3.0, 5.0]], last_step=10), 2) is None  # its first best came later
    assert best_at(peer([], last_step=10), 5) is None
    assert best_at(None, 5) is None


# --- record_best: history thinning ----------------------------------------------------------------


def test_only_a_moved_best_is_recorded() -> None:
    history = record_best([], 1, 5.0)
    assert history == [[1.0, 5.0]]
    assert record_best(history, 2, 5.0) is history  # the best stood still
    assert record_best(history, None, 4.0) is history and record_best(history, 2, None) is history
    assert record_best(history, 2, 4.0) == [[1.0, 5.0], [2.0, 4.0]]
    assert history == [[1.0, 5.0]]  # never modified: histories share their points


def test_thinning_keeps_the_first_and_the_latest_and_halves_the_rest() -> None:
    history: list[list[float]] = []
    for step in range(1, MAX_POINTS + 1):
        history = record_best(history, step, 1000.0 - step)
    assert len(history) == MAX_POINTS  # at the cap: nothing dropped yet
    thinned = record_best(history, MAX_POINTS + 1, 0.0)
    # 65 points: the first, every second of the 63 between (steps 3, 5, ..., 63), the latest
    assert thinned[0] == [1.0, 999.0] and thinned[-1] == [float(MAX_POINTS + 1), 0.0]
    assert [p[0] for p in thinned[1:-1]] == [float(s) for s in range(3, MAX_POINTS + 1, 2)]
    assert len(thinned) == 2 + (MAX_POINTS - 1) // 2


def test_a_history_however_long_fits_the_status_field_that_keeps_it() -> None:
    history: list[list[float]] = []
    for step in range(1, 1000):
        history = record_best(history, step, 1000.0 - step)
        MetricSummary(name="loss", best_history=history)  # at most 64 points: the API refuses more


def test_a_thinned_peer_looks_no_better_than_it_was() -> None:
    """Thinning drops improvements: at any step, the thinned best is the true best or worse."""
    history: list[list[float]] = []
    truth: dict[int, float] = {}
    for step in range(1, 200):
        best = 1000.0 - step
        truth[step] = best
        history = record_best(history, step, best)
        assert len(history) <= MAX_POINTS
    summary = peer(history, last_step=199)
    for step in range(1, 200):
        seen = best_at(summary, step)
        assert seen is not None and seen >= truth[step]
    assert best_at(summary, 199) == truth[199]  # the latest is always kept


def test_a_resume_drops_exactly_the_points_at_or_after_the_resumed_step() -> None:
    history = [[1.0, 5.0], [3.0, 4.0], [5.0, 3.0]]
    assert record_best(history, None, None, last_step=3) == [[1.0, 5.0]]
    assert record_best(history, None, None, last_step=5) == [[1.0, 5.0], [3.0, 4.0]]
    assert record_best(history, None, None, last_step=6) is history  # nothing purged


# --- selector_matches: a metav1.LabelSelector -----------------------------------------------------


LABELS = {"team": "vision", "size": "large"}


def expr(key: str, operator: str, *values: str) -> dict:
    return {"matchExpressions": [{"key": key, "operator": operator, "values": list(values)}]}


def test_match_labels_needs_every_pair() -> None:
    assert selector_matches({"matchLabels": {"team": "vision"}}, LABELS)
    assert selector_matches({"matchLabels": {"team": "vision", "size": "large"}}, LABELS)
    assert not selector_matches({"matchLabels": {"team": "vision", "size": "small"}}, LABELS)
    assert not selector_matches({"matchLabels": {"owner": "x"}}, LABELS)
    assert selector_matches({}, LABELS) and selector_matches({"matchLabels": None, "matchExpressions": None}, {})


def test_in() -> None:
    assert selector_matches(expr("team", "In", "vision", "nlp"), LABELS)
    assert not selector_matches(expr("team", "In", "nlp"), LABELS)
    assert not selector_matches(expr("owner", "In", "vision"), LABELS)  # absent: not in any set


def test_not_in() -> None:
    assert not selector_matches(expr("team", "NotIn", "vision", "nlp"), LABELS)
    assert selector_matches(expr("team", "NotIn", "nlp"), LABELS)
    assert selector_matches(expr("owner", "NotIn", "vision"), LABELS)  # absent: matches, as in Kubernetes


def test_exists_and_does_not_exist() -> None:
    assert selector_matches(expr("team", "Exists"), LABELS)
    assert not selector_matches(expr("owner", "Exists"), LABELS)
    assert selector_matches(expr("owner", "DoesNotExist"), LABELS)
    assert not selector_matches(expr("team", "DoesNotExist"), LABELS)
    assert selector_matches({"matchExpressions": [{"key": "team", "operator": "Exists", "values": None}]}, LABELS)


def test_every_requirement_must_hold() -> None:
    both = {"matchLabels": {"size": "large"},
            "matchExpressions": [{"key": "team", "operator": "In", "values": ["vision"]},
                                 {"key": "owner", "operator": "DoesNotExist"}]}
    assert selector_matches(both, LABELS)
    assert not selector_matches(both, {**LABELS, "owner": "x"})  # the last requirement fails
    assert not selector_matches(both, {**LABELS, "size": "small"})  # matchLabels fails
    assert not selector_matches({**both, "matchExpressions": [both["matchExpressions"][1],
                                                               {"key": "team", "operator": "In", "values": ["nlp"]}]}, LABELS)
