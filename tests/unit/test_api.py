"""The pydantic models reject bad specs with messages that name the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from plateau.manifest import load_training_job, parse_training_job
from plateau.replay import InputError

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
