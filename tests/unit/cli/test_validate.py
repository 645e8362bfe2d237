"""`plateau validate`: what `kubectl apply -f` would send and the API server take, every error told."""

from __future__ import annotations

from pathlib import Path

import pytest

from plateau.cli.main import main

JOB = ("apiVersion: plateau.dev/v1alpha1\nkind: TrainingJob\nmetadata: {name: %s}\n"
       "spec:\n  template: {spec: {containers: [{name: trainer, image: t}]}}\n  stop: {maxDuration: %s}\n")
UNNAMED = ("apiVersion: plateau.dev/v1alpha1\nkind: TrainingJob\n"
           "spec:\n  template: {spec: {containers: [{name: trainer, image: t}]}}\n  stop: {maxDuration: 1h}\n")


def run(capsys: pytest.CaptureFixture[str], *paths: Path) -> tuple[int, list[str], list[str]]:
    code = main(["validate", *map(str, paths)])
    out, err = capsys.readouterr()
    return code, out.splitlines(), err.splitlines()


def test_a_job_without_a_name_is_refused_as_kubectl_apply_refuses_it(tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "tj.yaml"
    path.write_text(UNNAMED)
    assert run(capsys, path) == (2, [], [f"plateau: error: {path}: metadata.name: Required value: kubectl apply"
                                         " needs the object's name"])


def test_every_job_of_a_file_is_checked_as_kubectl_apply_takes_them(tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "sweep.yaml"
    namespace = "apiVersion: v1\nkind: Namespace\nmetadata: {name: team-a}\n"
    path.write_text("---\n".join([namespace, JOB % ("trial-a", "1h"), JOB % ("trial-b", "1h")]))
    code, out, err = run(capsys, path)
    assert (code, err) == (0, [])
    assert out == [f"{path} (TrainingJob 1 of 2): TrainingJob trial-a is valid",
                   f"{path} (TrainingJob 2 of 2): TrainingJob trial-b is valid"]


def test_every_error_of_every_file_is_told_and_the_good_ones_still_checked(tmp_path: Path,
                                                                           capsys: pytest.CaptureFixture[str]) -> None:
    sweep, good, empty = tmp_path / "sweep.yaml", tmp_path / "good.yaml", tmp_path / "empty.yaml"
    sweep.write_text(JOB % ("trial-a", "ten minutes") + "---\n" + JOB % ("trial-b", "1h"))
    good.write_text(JOB % ("solo", "1h"))
    empty.write_text("apiVersion: v1\nkind: Namespace\nmetadata: {name: team-a}\n")
    code, out, err = run(capsys, sweep, tmp_path / "missing.yaml", empty, good)
    assert code == 2
    assert out == [f"{sweep} (TrainingJob 2 of 2): TrainingJob trial-b is valid", f"{good}: TrainingJob solo is valid"]
    assert len(err) == 3 and err[0].startswith(
        f"plateau: error: {sweep} (TrainingJob 1 of 2): spec.stop.maxDuration: Value error, 'ten minutes' is not a duration")
    assert err[1:] == [
        f"plateau: error: {tmp_path / 'missing.yaml'}: cannot read: No such file or directory",
        f"plateau: error: {empty}: no TrainingJob (kind: TrainingJob, apiVersion: plateau.dev/v1alpha1)",
    ]
