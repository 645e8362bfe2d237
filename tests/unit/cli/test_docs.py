"""docs/reference.md is generated from the API models, current, and covers every field."""

from __future__ import annotations

from pathlib import Path

import pytest

from plateau import api
from plateau.cli.main import main
from plateau.cli.docs import REFERENCE_PATH, render_reference

MODELS = (api.TrainingJobSpec, api.WorkloadRef, api.MetricsSpec, api.StopSpec, api.MetricRule, api.MinDelta,
          api.GpuIdleRule, api.CohortRule, api.LabelSelector, api.TrainingJobStatus, api.Condition,
          api.MetricSummary, api.WouldStop)


def test_committed_reference_is_current() -> None:
    assert REFERENCE_PATH.read_text() == render_reference(), f"{REFERENCE_PATH} is stale: run `plateau docs`"


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
def test_every_field_is_documented(model: type[api.Model]) -> None:
    text = render_reference()
    section = text.split(f"### {model.__name__}\n", 1)[1].split("\n### ", 1)[0]
    for name, field in model.model_fields.items():
        assert f"| `{field.alias or name}`" in section, f"{model.__name__}.{name}"


def test_every_reason_is_listed() -> None:
    assert all(f"`{reason.value}`" in render_reference() for reason in api.Reason)


def test_docs_command_writes_the_reference(tmp_path: Path) -> None:
    assert main(["docs", "--root", str(tmp_path)]) == 0
    assert (tmp_path / REFERENCE_PATH).read_text() == render_reference()


@pytest.mark.parametrize("command", ["docs", "crd"])
def test_a_root_that_is_no_directory_is_refused_and_nothing_written(command: str, tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    afile, missing = tmp_path / "README.md", tmp_path / "typo"
    afile.write_text("")
    for root in (afile, missing):
        assert main([command, "--root", str(root)]) == 2
        assert capsys.readouterr().err == f"plateau: error: --root {root}: not a directory (the repository root)\n"
    assert not missing.exists()
