"""The sidecar's aggregates and its handling of bad records."""

from __future__ import annotations

import json
import logging
import math
import re

import pytest

from plateau.api import StopSpec
from plateau.api.stdout_pattern import compile_pattern
from plateau.engine.history import metric_spec_for
from plateau_sidecar.records import ingest_payload, jsonl_sink, pattern_sink
from plateau_sidecar.store import BadInput, MetricStore, RecordError


def feed(store: MetricStore, *records: object) -> None:
    jsonl_sink(store)([json.dumps(r).encode() if not isinstance(r, bytes) else r for r in records])


def test_aggregates_follow_every_report() -> None:
    store = MetricStore("tj")
    feed(
        store,
        {"step": 10, "val_loss": 0.5, "accuracy": 0.7, "time": 1.5},
        {"step": 20, "val_loss": 0.3, "accuracy": 0.8, "ts": "2024-01-01T00:00:00Z"},
        {"step": 30, "val_loss": 0.4},
    )
    snap = store.snapshot()
    assert set(snap.series) == {"val_loss", "accuracy"}  # step, time and ts are not metrics
    loss = snap.series["val_loss"]
    assert (loss.value, loss.step, loss.reports, loss.nonfinite) == (0.4, 30, 3, 0)
    assert (loss.min, loss.min_step, loss.min_report) == (0.3, 20, 2)
    assert (loss.max, loss.max_step, loss.max_report) == (0.5, 10, 1)
    assert snap.series["accuracy"].reports == 2
    assert sum(snap.bad_input.values()) == 0


def test_a_tie_keeps_the_first_report_since_a_repeat_is_no_improvement() -> None:
    store = MetricStore("tj")
    feed(store, {"step": 1, "m": 1.0}, {"step": 2, "m": 0.5}, {"step": 3, "m": 0.5}, {"step": 4, "m": 1.0})
    m = store.snapshot().series["m"]
    assert (m.min_step, m.min_report, m.max_step, m.max_report) == (2, 2, 1, 1)


def test_non_finite_values_are_reports_but_never_a_min_or_max() -> None:
    store = MetricStore("tj")
    feed(store, b'{"step": 1, "loss": NaN}', b'{"step": 2, "loss": Infinity}', {"step": 3, "loss": "-inf"})
    loss = store.snapshot().series["loss"]
    assert (loss.reports, loss.nonfinite, loss.step) == (3, 3, 3)
    assert loss.value == -math.inf
    assert loss.min is None and loss.max is None and loss.min_report is None
    feed(store, {"step": 4, "loss": 2.0}, {"step": 5, "loss": math.nan})
    loss = store.snapshot().series["loss"]
    assert (loss.min, loss.min_report, loss.reports, loss.nonfinite) == (2.0, 4, 5, 4)
    assert math.isnan(loss.value)


def test_integral_float_steps_are_accepted() -> None:
    store = MetricStore("tj")
    feed(store, {"step": 5.0, "m": 1})
    assert store.snapshot().series["m"].step == 5


@pytest.mark.parametrize(
    ("line", "kind"),
    [
        (b'{"step": 1, "m": ', BadInput.MALFORMED_JSON),
        (b"\xff\xfe", BadInput.MALFORMED_JSON),
        (b"[1, 2]", BadInput.NOT_AN_OBJECT),
        (b'{"m": 1}', BadInput.BAD_STEP),
        (b'{"step": "7", "m": 1}', BadInput.BAD_STEP),
        (b'{"step": 1.5, "m": 1}', BadInput.BAD_STEP),
        (b'{"step": true, "m": 1}', BadInput.BAD_STEP),
        (b'{"step": 1, "m": "high"}', BadInput.NON_NUMERIC),
        (b'{"step": 1, "m": true}', BadInput.NON_NUMERIC),
        (b'{"step": 1, "m": null}', BadInput.NON_NUMERIC),
        (b'{"step": 1, "m": [1]}', BadInput.NON_NUMERIC),
        (b'{"step": 1, "": 1}', BadInput.BAD_METRIC_NAME),
        (b'{"step": 1, "' + b"x" * 300 + b'": 1}', BadInput.BAD_METRIC_NAME),
    ],
)
def test_bad_records_are_counted_by_kind_and_ingest_nothing(line: bytes, kind: BadInput) -> None:
    store = MetricStore("tj")
    feed(store, line)
    snap = store.snapshot()
    assert snap.bad_input[kind] == 1
    assert sum(snap.bad_input.values()) == 1
    assert not snap.series


def test_a_bad_field_does_not_spoil_the_rest_of_its_record() -> None:
    store = MetricStore("tj")
    feed(store, {"step": 1, "loss": "oops", "accuracy": 0.5})
    snap = store.snapshot()
    assert snap.series["accuracy"].reports == 1 and "loss" not in snap.series
    assert snap.bad_input[BadInput.NON_NUMERIC] == 1


def test_blank_lines_are_not_bad_input() -> None:
    store = MetricStore("tj")
    feed(store, b"", b"  \r")
    assert sum(store.snapshot().bad_input.values()) == 0


def test_allow_list_counts_unknown_metrics() -> None:
    store = MetricStore("tj", allowed=["val_loss"])
    feed(store, {"step": 1, "val_loss": 1.0, "lr": 0.1, "grad_norm": 3.0})
    snap = store.snapshot()
    assert set(snap.series) == {"val_loss"}
    assert snap.bad_input[BadInput.UNKNOWN_METRIC] == 2


def test_distinct_metric_names_are_bounded() -> None:
    store = MetricStore("tj", max_metrics=3)
    feed(store, {"step": 1, **{f"m{i}": i for i in range(5)}}, {"step": 2, "m0": 9})
    snap = store.snapshot()
    assert set(snap.series) == {"m0", "m1", "m2"} and snap.series["m0"].reports == 2
    assert snap.bad_input[BadInput.TOO_MANY_METRICS] == 2


def test_the_names_the_spec_reads_pass_the_allow_list_and_the_count() -> None:
    """A rule's metric and learning rate are never refused: without them the sidecar would
    fold the metric with no rate (or not at all), unlike replay."""
    spec = metric_spec_for(StopSpec.model_validate({"metric": {"name": "val_loss", "patience": 3,
                                                               "schedule": {"learningRate": "lr"}}}))
    assert spec is not None
    store = MetricStore("tj", allowed=["val_loss", "acc"], max_metrics=2)
    store.set_spec(spec.text)
    feed(store, {"step": 1, "acc": 0.5, "grad_norm": 3.0, "val_loss": 1.0, "lr": 0.1}, {"step": 2, "val_loss": 0.9, "lr": 0.01})
    snap = store.snapshot()
    assert set(snap.series) == {"acc", "val_loss", "lr"} and snap.series["lr"].reports == 2
    assert snap.bad_input[BadInput.UNKNOWN_METRIC] == 1 and snap.bad_input[BadInput.TOO_MANY_METRICS] == 0
    assert snap.track is not None and snap.track.current.drop_step == 2  # the rate's drop was read


def test_a_spec_reading_a_metric_that_was_refused_gets_no_track_rather_than_part_of_one() -> None:
    """A spec edit to a metric the allow-list (or the count) refused so far: the sidecar has
    only the reports after the edit, so it folds none instead of deciding on the tail."""
    for store in (MetricStore("tj", allowed=["val_loss"]), MetricStore("tj", max_metrics=1)):
        feed(store, *({"step": s, "val_loss": 1.0 / s, "acc": 0.1 * s} for s in range(1, 11)))
        spec = metric_spec_for(StopSpec.model_validate({"metric": {"name": "acc", "mode": "max", "patience": 3}}))
        assert spec is not None
        store.set_spec(spec.text)
        feed(store, {"step": 11, "val_loss": 0.05, "acc": 0.9})
        assert store.snapshot().track is None and store.history is None
        kept = metric_spec_for(StopSpec.model_validate({"metric": {"name": "val_loss", "patience": 3}}))
        assert kept is not None
        store.set_spec(kept.text)  # every report of val_loss was kept: folded whole
        track = store.snapshot().track
        assert track is not None and track.current.evaluations == 11


def test_each_kind_of_bad_input_is_logged_once_but_counted_every_time(caplog: pytest.LogCaptureFixture) -> None:
    store = MetricStore("tj")
    with caplog.at_level(logging.WARNING, logger="plateau_sidecar"):
        feed(store, *[b"{broken"] * 50, *[{"step": i, "m": "x"} for i in range(50)])
        feed(store, *[{"step": i, "m": math.nan} for i in range(50)])
    snap = store.snapshot()
    assert snap.bad_input[BadInput.MALFORMED_JSON] == 50 and snap.bad_input[BadInput.NON_NUMERIC] == 50
    assert snap.series["m"].nonfinite == 50
    assert len(caplog.records) == 3
    assert all("counted, not logged" in r.getMessage() for r in caplog.records)


def test_pattern_lines_use_named_groups_and_skip_other_output() -> None:
    store = MetricStore("tj")
    pattern = compile_pattern(r"step=(?P<step>\d+) val_loss=(?P<val_loss>\S+)(?: acc=(?P<acc>\S+))?")
    pattern_sink(store, pattern)(
        [
            b"Epoch 1: 100%|##########| loading...",
            b"step=10 val_loss=0.5 acc=0.7",
            b"step=20 val_loss=nan",
            b"step=30 val_loss=abc acc=0.9",
            "step=40 val_loss=0.25 \u00e9".encode(),
        ]
    )
    snap = store.snapshot()
    assert snap.series["val_loss"].reports == 3 and snap.series["val_loss"].nonfinite == 1
    assert (snap.series["val_loss"].min, snap.series["val_loss"].min_step) == (0.25, 40)
    assert snap.series["acc"].reports == 2  # the optional group did not take part in step 20
    assert snap.bad_input[BadInput.NON_NUMERIC] == 1


@pytest.mark.parametrize("pattern", [r"loss=(?P<loss>\S+)", r"step=(?P<step>\d+)", r"step=(\d+"])
def test_a_pattern_needs_a_step_and_a_metric_group(pattern: str) -> None:
    with pytest.raises((ValueError, re.error)):
        compile_pattern(pattern)


def test_a_push_body_is_one_record_or_a_list() -> None:
    store = MetricStore("tj")
    assert ingest_payload(store, b'{"step": 1, "m": 1}') == (1, 0)
    assert ingest_payload(store, b'[{"step": 2, "m": 2}, {"step": 3, "m": 3}]') == (2, 0)
    assert store.snapshot().series["m"].reports == 3


@pytest.mark.parametrize(
    ("body", "kind", "message"),
    [
        (b"{nope", BadInput.MALFORMED_JSON, "invalid JSON"),
        (b'"text"', BadInput.NOT_AN_OBJECT, "record 0: a record must be a JSON object"),
        (b'[{"step": 1, "m": 1}, {"m": 2}]', BadInput.BAD_STEP, "record 1: 'step' must be an integer"),
    ],
)
def test_a_bad_push_body_is_rejected_whole_with_a_message(body: bytes, kind: BadInput, message: str) -> None:
    store = MetricStore("tj")
    with pytest.raises(RecordError) as raised:
        ingest_payload(store, body)
    assert raised.value.kind == kind and str(raised.value).startswith(message)
    snap = store.snapshot()
    assert not snap.series  # all or nothing: a fixed body can be resent without duplicates
    assert snap.bad_input[kind] == 1


HUGE = "1" + "0" * 400  # a valid JSON integer, beyond the largest float


@pytest.mark.parametrize(
    ("line", "kind"),
    [
        (b'{"step": 1, "m": %s}' % HUGE.encode(), BadInput.NON_NUMERIC),
        (b'{"step": %s, "m": 1}' % HUGE.encode(), BadInput.BAD_STEP),
        (b'{"step": 9007199254740992, "m": 1}', BadInput.BAD_STEP),  # 2**53: not exact as a float
        (b'{"step": 1e300, "m": 1}', BadInput.BAD_STEP),
        (b'{"step": -1, "m": 1}', BadInput.BAD_STEP),
        (b'{"step": -2.0, "m": 1}', BadInput.BAD_STEP),
        (b"[" * 100_000, BadInput.MALFORMED_JSON),  # deeper than the decoder's recursion
    ],
)
def test_numbers_out_of_range_are_bad_input_and_the_batch_goes_on(line: bytes, kind: BadInput) -> None:
    store = MetricStore("tj")
    feed(store, line, {"step": 0, "m": 2.0}, {"step": 2**53 - 1, "m": 1.0})
    snap = store.snapshot()
    assert snap.bad_input[kind] == 1 and sum(snap.bad_input.values()) == 1
    assert (snap.series["m"].reports, snap.series["m"].step) == (2, 2**53 - 1)


def test_a_pattern_step_outside_0_to_2_53_is_a_bad_step() -> None:
    store = MetricStore("tj")
    pattern = compile_pattern(r"step=(?P<step>-?\d+) loss=(?P<loss>\S+)")
    lines = [f"step={HUGE} loss=0.5", "step=-3 loss=0.5", "step=9007199254740992 loss=0.5", "step=7 loss=1e400"]
    pattern_sink(store, pattern)([line.encode() for line in lines])
    snap = store.snapshot()
    assert snap.bad_input[BadInput.BAD_STEP] == 3
    loss = snap.series["loss"]
    assert (loss.reports, loss.step, loss.nonfinite) == (1, 7, 1)  # 1e400 parses as inf: a non-finite report
