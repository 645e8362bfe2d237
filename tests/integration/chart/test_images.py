"""Plateau's three images: scripts/build-image's plan, the Dockerfile's stages, and the names the
chart, the examples and the docs use for them. The slim sidecar image installs the wheel without
its dependencies plus a short list: the sidecar must run with that list alone."""

from __future__ import annotations

import importlib.metadata as md
import re
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from prometheus_client.parser import text_string_to_metric_families

from plateau.api import StopSpec
from plateau.engine.history import metric_spec_for
from plateau_sidecar import protocol as p
from tests.support.chart import REPO, only, render, tool
from tests.support.images import build_plan
from tests.support.prometheus import SidecarProcess

pytestmark = pytest.mark.integration

DOCKERFILE = REPO / "Dockerfile"
IMAGES = ("operator", "sidecar", "trainer")
OPERATOR_ONLY = {"kubernetes", "kopf", "aiohttp"}  # the operator's Kubernetes side: never in the sidecar image


def stage(name: str) -> str:
    """The text of the Dockerfile's stage `name`, up to the next FROM."""
    text = DOCKERFILE.read_text()
    match = re.search(rf"^FROM \$\{{BASE\}} AS {name}\n(.*?)(?=^FROM |\Z)", text, re.M | re.S)
    assert match, f"the Dockerfile has no stage {name}"
    return match.group(1)


def sidecar_requirements() -> list[Requirement]:
    """The packages the sidecar stage installs besides the wheel (which goes in with --no-deps)."""
    [install] = re.findall(r"^RUN (?:.*\\\n)*.*$", stage("sidecar"), re.M)
    assert re.search(r"pip install [^\n]*--no-deps [^\n]*\$\{SIDECAR_WHEEL\}", install)
    return [Requirement(r) for r in re.findall(r'"([A-Za-z][^"]*)"', install)]


def test_hadolint_passes() -> None:
    hadolint = tool("hadolint", REPO / ".venv" / "bin" / "hadolint")
    result = subprocess.run([hadolint, str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_image_runs_as_the_charts_numeric_user_with_its_own_entrypoint() -> None:
    commands = {"operator": '["plateau-operator"]', "sidecar": '["plateau-sidecar"]', "trainer": '["python", "train.py"]'}
    for name, command in commands.items():
        assert re.findall(r"^USER (\S+)$", stage(name), re.M) == ["65532:65532"], name
        assert re.findall(r"^CMD (.+)$", stage(name), re.M) == [command], name
    pod = only(render(), "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsUser"] == 65532 and pod["containers"][0]["command"] == ["plateau-operator"]
    assert re.findall(r"^CMD (.+)$", DOCKERFILE.read_text(), re.M)[-1] == commands["operator"]  # docker build's default


def test_the_operator_image_installs_the_wheel_without_extras() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert {"plateau-operator", "plateau-sidecar"} <= project["scripts"].keys()
    assert yaml.safe_load((REPO / "charts/plateau/Chart.yaml").read_text())["appVersion"] == project["version"]
    installs = re.findall(r"pip install [^\n]*", stage("operator"))
    assert installs and all(line.endswith("/tmp/dist/${OPERATOR_WHEEL} \\") for line in installs), installs


def test_the_plan_builds_three_images_from_the_dockerfiles_stages_on_one_pinned_base() -> None:
    builds = build_plan()
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    assert {name: tag for name, (tag, _) in builds.items()} == {
        name: f"localhost/plateau-{name}:{version}" for name in IMAGES}
    for name, (_, argv) in builds.items():
        assert argv[argv.index("--target") + 1] == name and argv[argv.index("-f") + 1] == "Dockerfile"
        assert stage(name)  # the target exists
    # Every stage starts from the one BASE, whose default is a registry image pinned by digest.
    text = DOCKERFILE.read_text()
    assert set(re.findall(r"^FROM (\S+)", text, re.M)) == {"${BASE}"}
    assert re.search(r"^ARG BASE=python:3\.11-slim@sha256:[0-9a-f]{64}$", text, re.M)


def test_the_chart_and_every_cluster_example_name_the_images_the_script_builds() -> None:
    builds = build_plan()
    container = only(render(), "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == builds["operator"][0]
    assert {e["name"]: e.get("value") for e in container["env"]}["PLATEAU_SIDECAR_IMAGE"] == builds["sidecar"][0]
    trainers = []
    for path in sorted((REPO / "examples").glob("*.yaml")):
        doc = yaml.safe_load(path.read_text())
        for c in doc["spec"].get("template", {}).get("spec", {}).get("containers", []):
            assert c["image"] == builds["trainer"][0], path.name
            if not c["command"][0].startswith(".venv/"):  # local-digits.yaml runs the checkout's trainer
                trainers.append((path.name, c["command"] + c.get("args", [])))
    assert len(trainers) >= 6
    # Each runs the image's train.py (WORKDIR /app holds examples/trainer/), with flags it accepts.
    assert re.search(r"^WORKDIR /app\nCOPY examples/trainer/ \./$", stage("trainer"), re.M)
    sys.path.insert(0, str(REPO / "examples/trainer"))
    try:
        import train  # the real argument parser
    finally:
        sys.path.remove(str(REPO / "examples/trainer"))
    for name, command in trainers:
        assert command[:2] == ["python", "train.py"], name
        train.parse_args(command[2:])  # exits (fails the test) on a flag train.py does not take


def test_the_install_guide_builds_and_loads_the_images_with_the_script() -> None:
    install = (REPO / "docs/install.md").read_text()
    assert "scripts/build-image --archive" in install
    for tag, _ in build_plan().values():
        assert tag in install


def test_the_sidecar_stage_installs_pyprojects_own_ranges_and_nothing_of_the_operators() -> None:
    declared = {Requirement(d).name: str(Requirement(d))
                for d in tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]}
    requirements = sidecar_requirements()
    assert requirements, "the sidecar stage installs no packages"
    for r in requirements:
        assert declared.get(r.name) == str(r), f"{r} is not pyproject.toml's {declared.get(r.name)}"
    assert not OPERATOR_ONLY & {r.name for r in requirements}


def image_modules(requirements: list[Requirement]) -> set[str]:
    """Top-level import names of these distributions and everything they require (as installed here)."""
    by_distribution: dict[str, set[str]] = {}
    for module, distributions in md.packages_distributions().items():
        for d in distributions:
            by_distribution.setdefault(Requirement(d).name.lower().replace("_", "-"), set()).add(module)
    names, todo = set(), [r.name for r in requirements]
    while todo:
        name = todo.pop().lower().replace("_", "-")
        if name not in names:
            names.add(name)
            todo += [Requirement(r).name for r in md.requires(name) or []
                     if not Requirement(r).marker or Requirement(r).marker.evaluate({"extra": ""})]
    return set().union(*(by_distribution.get(n, set()) for n in names))


# Runs plateau-sidecar with every import outside the standard library, plateau and the allowed
# modules refused, as in the slim image.
ONLY_THE_IMAGES_PACKAGES = """
import importlib.abc, runpy, sys
allowed = set(sys.argv.pop(1).split(","))
class OnlyTheImagesPackages(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        top = name.partition(".")[0]
        if top in sys.stdlib_module_names or top.startswith("_sysconfigdata") or top in allowed:
            return None
        raise ImportError(f"{top} is not in the sidecar image")
sys.meta_path.insert(0, OnlyTheImagesPackages())
sys.argv[0] = "plateau-sidecar"
runpy.run_module("plateau_sidecar.main", run_name="__main__")
"""


def test_the_sidecar_runs_and_folds_its_track_with_the_slim_images_packages_alone(tmp_path: Path) -> None:
    allowed = image_modules(sidecar_requirements()) | {"plateau", "plateau_sidecar"}
    assert not OPERATOR_ONLY & allowed
    metrics, spec = tmp_path / "metrics.jsonl", tmp_path / "spec"
    spec.write_text(metric_spec_for(StopSpec.model_validate({"preset": "balanced", "metric": {"name": "val_loss"}})).text)  # type: ignore[union-attr]
    metrics.write_text("".join(f'{{"step": {s}, "val_loss": {1 / s}}}\n' for s in range(1, 21)))
    sidecar = SidecarProcess(tmp_path, "slim", "--metrics-file", str(metrics), "--spec-file", str(spec),
                             launcher=[sys.executable, "-c", ONLY_THE_IMAGES_PACKAGES, ",".join(sorted(allowed))])
    try:
        sidecar.wait_ready()
        for _ in range(100):
            values = {(s.name, s.labels.get(p.LABEL_METRIC)): s.value
                      for f in text_string_to_metric_families(sidecar.scrape()) for s in f.samples}
            if values.get((p.SERIES_STEP, "val_loss")) == 20:
                break
            time.sleep(0.1)
        assert values[(p.SERIES_STEP, "val_loss")] == 20 and values[(p.SERIES_REPORTS, "val_loss")] == 20, sidecar.log()
        assert values[(p.SERIES_MIN, "val_loss")] == pytest.approx(1 / 20)
        assert sidecar.process.poll() is None, sidecar.log()
    finally:
        assert sidecar.stop() == 0, sidecar.log()
    assert "is not in the sidecar image" not in sidecar.log()
