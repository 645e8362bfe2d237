"""The image the chart deploys: the Dockerfile lints clean and keeps the chart's contract
(entrypoints, a numeric non-root user, no torch)."""

from __future__ import annotations

import re
import subprocess
import tomllib

import yaml

from tests.support.chart import REPO, only, render, tool

DOCKERFILE = REPO / "Dockerfile"


def test_hadolint_passes() -> None:
    hadolint = tool("hadolint", REPO / ".venv" / "bin" / "hadolint")
    result = subprocess.run([hadolint, str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_image_runs_as_the_charts_user_with_the_operator_by_default() -> None:
    text = DOCKERFILE.read_text()
    assert re.findall(r"^USER (\S+)$", text, re.M) == ["65532:65532"]
    assert re.findall(r"^CMD (.+)$", text, re.M) == ['["plateau-operator"]']
    pod = only(render(), "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsUser"] == 65532 and pod["containers"][0]["command"] == ["plateau-operator"]


def test_image_installs_the_wheel_without_extras() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert {"plateau-operator", "plateau-sidecar"} <= project["scripts"].keys()
    assert yaml.safe_load((REPO / "charts/plateau/Chart.yaml").read_text())["appVersion"] == project["version"]
    installs = re.findall(r"pip install [^\n]*", DOCKERFILE.read_text())
    assert installs and all("plateau_operator-*.whl" in line and "[" not in line for line in installs)
