"""A spec edit mid-run: the sidecar folds every kept report again, without holding up scrapes
and pushes, and ends with the track a fold of every report would give."""

from __future__ import annotations

import math
import threading
import time
from pathlib import Path

from plateau.api import StopSpec
from plateau.engine.history import MetricHistory, metric_spec_for
from plateau_sidecar.spec import SpecFollower
from plateau_sidecar.store import MetricStore

METRIC = "loss"


def loss(step: int) -> float:
    return 1.0 / math.sqrt(step) + 0.01 * math.sin(step)


def test_a_refold_leaves_scrapes_and_pushes_free_and_folds_the_reports_that_came_meanwhile(tmp_path: Path) -> None:
    store = MetricStore("tj")
    old = metric_spec_for(StopSpec.model_validate({"metric": {"name": METRIC, "patience": 3}}))
    new = metric_spec_for(StopSpec.model_validate({"preset": "balanced", "metric": {"name": METRIC}}))
    assert old is not None and new is not None
    store.set_spec(old.text)
    sent = [(step, loss(step)) for step in range(1, 8001)]
    with store.lock:
        for step, value in sent:
            store.add_record(step, {METRIC: value})
    path = tmp_path / "spec"
    path.write_text(new.text)
    follower = SpecFollower(str(path), store)
    refold = threading.Thread(target=follower.poll)  # the forecast refits at each report: seconds
    refold.start()
    while store.spec_text != new.text:
        time.sleep(0.001)
    snap = store.snapshot()  # a scrape, answered while the fold still runs
    assert refold.is_alive() and snap.track is not None and snap.track.spec_key == old.key
    meanwhile = [(step, loss(step)) for step in range(8001, 8011)]
    with store.lock:  # a push, taken while the fold still runs
        for step, value in meanwhile:
            store.add_record(step, {METRIC: value})
    assert refold.is_alive()
    refold.join(60)
    view = store.snapshot().track
    expected = MetricHistory.folded(StopSpec.model_validate_json(new.text), sent + meanwhile)
    assert view is not None and view.spec_key == new.key
    assert view.current == expected.track and view.stopped == expected.stopped
    assert view.current.evaluations == len(sent) + len(meanwhile)

