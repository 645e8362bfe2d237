"""The pydantic models reject bad specs with messages that name the field, and the status
the operator writes reads back whole."""

from __future__ import annotations

import json
import pickle
from enum import Enum
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin, get_type_hints

import pytest
from pydantic import BaseModel

from plateau.api import TrainingJobSpec, TrainingJobStatus
from plateau.api.manifest import load_training_job, parse_training_job
from plateau.api.errors import InputError
from plateau.engine.fold import FOLD_ONLY, MetricTrack
from plateau.engine.status import summary_from_track, track_from_summary

EXAMPLES = sorted(p for p in Path("examples").glob("*.yaml"))
CONTAINER = {"spec": {"containers": [{"name": "t", "image": "x"}]}}


def job(spec: dict) -> dict:
    return {"apiVersion": "plateau.dev/v1alpha1", "kind": "TrainingJob", "metadata": {"name": "j"}, "spec": spec}


def error_of(spec: dict) -> str:
    with pytest.raises(InputError) as info:
        parse_training_job(job(spec), "m.yaml")
    return str(info.value)


def test_examples_cover_the_common_cases_and_are_valid() -> None:
    names = {p.stem for p in EXAMPLES}
    assert {"plateau-patience", "target-metric", "gpu-idle", "budget", "dry-run", "attach-existing-job"} <= names
    for path in EXAMPLES:
        assert load_training_job(path).kind == "TrainingJob"


@pytest.mark.parametrize(
    ("stop", "expected"),
    [
        ({"metric": {"name": "l", "patience": 0}}, "spec.stop.metric.patience: Input should be greater than or equal to 1"),
        ({"maxDuration": "-5m"}, "spec.stop.maxDuration: Value error, negative durations are not allowed"),
        ({"maxDuration": "ten minutes"}, "spec.stop.maxDuration: Value error, 'ten minutes' is not a duration"),
        ({"gpuIdle": {"below": 0.1, "for": "20s"}}, "spec.stop.gpuIdle.for: Value error, must be at least 1m"),
        ({"metric": {"name": "l"}, "cohort": {"selector": {}}}, "cohort.selector must not be empty"),
        ({}, "stop has no rule"),
        ({"preset": "balanced", "maxDuration": "1h"}, "stop.cohort and stop.preset need stop.metric"),
        ({"metric": {"name": "l", "mode": "min", "target": 5, "divergence": 1}}, "in mode min the target must lie below"),
        ({"metric": {"name": "l", "target": 5, "divergence": 1}}, "in mode min the target must lie below"),  # the default mode
        ({"metric": {"name": "acc", "mode": "max", "target": 0.1, "divergence": 0.5}}, "in mode max the target must lie above"),
        ({"metric": {"name": "l", "patience": 3, "colour": "red"}}, "spec.stop.metric.colour: Extra inputs are not permitted"),
        ({"gpuIdle": {"below": 1.5, "for": "5m"}}, "spec.stop.gpuIdle.below: Input should be less than or equal to 1"),
    ],
)
def test_bad_stop_specs_name_the_field(stop: dict, expected: str) -> None:
    assert expected in error_of({"template": CONTAINER, "stop": stop})


def test_the_scrape_interval_is_at_least_a_second() -> None:
    for interval in ("500ms", "0s"):
        assert "spec.metrics.scrapeInterval: Value error, must be at least 1s" in error_of(
            {"template": CONTAINER, "metrics": {"scrapeInterval": interval}, "stop": {"maxDuration": "1h"}})


def test_exactly_one_workload() -> None:
    ref = {"apiVersion": "batch/v1", "kind": "Job", "name": "x"}
    stop = {"maxDuration": "1h"}
    assert "exactly one of spec.template and spec.workloadRef" in error_of({"stop": stop})
    assert "exactly one" in error_of({"template": CONTAINER, "workloadRef": ref, "stop": stop})
    assert parse_training_job(job({"workloadRef": ref, "stop": stop}), "m").spec.workload_ref is not None


def test_stdout_source_needs_a_pattern_and_a_log_file() -> None:
    assert "logFile and metrics.pattern" in error_of(
        {"template": CONTAINER, "metrics": {"source": "stdout"}, "stop": {"maxDuration": "1h"}}
    )


def test_defaults_match_the_documented_ones() -> None:
    tj = parse_training_job(job({"template": CONTAINER, "stop": {"metric": {"name": "l", "patience": 2}}}), "m")
    assert tj.spec.replicas == 1
    assert tj.spec.stop.grace_period == "60s" and tj.spec.stop.combine == "any" and tj.spec.stop.dry_run is None
    assert tj.spec.metrics.path == "/plateau/metrics.jsonl"
    assert tj.spec.stop.metric is not None and tj.spec.stop.metric.check_finite


def test_not_a_training_job() -> None:
    with pytest.raises(InputError, match="not a TrainingJob manifest"):
        parse_training_job({"kind": "Pod"}, "pod.yaml")


def test_load_reports_missing_file_and_bad_yaml(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="cannot read"):
        load_training_job(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("spec: [unclosed")
    with pytest.raises(InputError, match="not valid YAML"):
        load_training_job(bad)


# --- status round trips: what the operator writes, a restarted operator reads back ------------------


def _sample(annotation: Any, name: str, seed: int) -> Any:
    """A value of the field's type that differs from its default (and from other fields')."""
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Annotated:  # a bounded list ([step, best]): the two items a list sample has fit
        return _sample(args[0], name, seed)
    if origin in (Union, UnionType):
        return _sample(next(a for a in args if a is not type(None)), name, seed)
    if origin is list:
        return [_sample(args[0], name, seed), _sample(args[0], name, seed + 1)]
    if origin is Literal:
        return args[-1]
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        return list(annotation)[seed % len(annotation) or 1]
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        fields = annotation.model_fields.items()
        return annotation(**{f: _sample(info.annotation, f, seed + i) for i, (f, info) in enumerate(fields)})
    if annotation is bool:
        return True
    if annotation is int:
        return 7 + seed
    if annotation is float:
        return 0.25 + seed
    if annotation is str:
        return f"{name}-{seed}"
    raise AssertionError(f"no sample for {name}: {annotation!r}: teach _sample this type")


def _fields(model: BaseModel, prefix: str = "") -> dict[str, Any]:
    """Every leaf field of a model, by dotted path."""
    out: dict[str, Any] = {}
    for name in type(model).model_fields:
        value = getattr(model, name)
        items = value if isinstance(value, list) else [value]
        for i, item in enumerate(items):
            path = f"{prefix}{name}" + (f"[{i}]" if isinstance(value, list) else "")
            if isinstance(item, BaseModel):
                out.update(_fields(item, path + "."))
            else:
                out[path] = item
    return out


def test_every_status_field_survives_a_write_and_a_read_after_a_restart() -> None:
    """The status as the operator patches it (by alias, as JSON) and as it reads it back when it
    starts: every field, of every nested model, comes back. Generated from the model, so a new
    field cannot be forgotten; a field whose type the sampler does not know fails the test."""
    status = _sample(TrainingJobStatus, "status", 0)
    written = json.loads(json.dumps(status.model_dump(by_alias=True, mode="json")))
    back = TrainingJobStatus.model_validate(written)
    before, after = _fields(status), _fields(back)
    assert "metric.bestHistory[0]" not in before and "metric.best_history[0]" in before  # leaves, by path
    default = _fields(TrainingJobStatus.model_validate({
        "conditions": [{"type": "t", "status": "True", "reason": "r", "lastTransitionTime": "t"}] * 2,
        "metric": {"name": "m"}, "wouldStop": {"time": "t", "reason": "Plateau"}}))
    for path, value in before.items():
        assert after[path] == value, path
        assert value != default.get(path), f"{path}: the sample is the default, so the round trip proves nothing"
    assert back == status


def test_the_engine_state_in_status_metric_survives_a_restart() -> None:
    """status.metric holds the engine's state (MetricTrack): every field but the evaluation
    count (status.evaluations) and the fold's own state (FOLD_ONLY) comes back through the status."""
    hints = get_type_hints(MetricTrack)
    fields = tuple(f for f in MetricTrack._fields if f not in FOLD_ONLY)
    track = MetricTrack(**{f: _sample(hints[f], f, i) for i, f in enumerate(fields)})
    status = TrainingJobStatus(metric=summary_from_track(track), evaluations=track.evaluations)
    back = TrainingJobStatus.model_validate(json.loads(json.dumps(status.model_dump(by_alias=True, mode="json"))))
    again = track_from_summary(back.metric, back.evaluations)
    assert again is not None
    for f in fields:
        assert getattr(again, f) == getattr(track, f), f
        assert getattr(track, f) != MetricTrack._field_defaults.get(f), f


def test_durations_are_parsed_once_at_validation_and_stay_text_on_the_wire() -> None:
    """The engine reads `.seconds`; dumps, the spec's hash and the CRD see the user's text."""
    spec = TrainingJobSpec.model_validate({
        "template": {"spec": {"containers": [{"name": "t", "image": "i"}]}},
        "metrics": {"scrapeInterval": "1m30s"},
        "stop": {"maxDuration": "1h30m", "gpuIdle": {"below": 0.1, "for": "10m"}},
    })
    stop = spec.stop
    assert (stop.max_duration.seconds, stop.gpu_idle.for_.seconds, stop.grace_period.seconds,
            spec.metrics.scrape_interval.seconds) == (5400.0, 600.0, 60.0, 90.0)
    dumped = spec.model_dump(by_alias=True, mode="json")
    assert dumped["stop"]["maxDuration"] == "1h30m" and type(dumped["stop"]["maxDuration"]) is str
    assert dumped["stop"]["gracePeriod"] == "60s" and dumped["metrics"]["scrapeInterval"] == "1m30s"
    assert json.loads(spec.model_dump_json(by_alias=True))["stop"]["gpuIdle"]["for"] == "10m"
    again = pickle.loads(pickle.dumps(stop))
    assert again == stop and again.max_duration.seconds == 5400.0
