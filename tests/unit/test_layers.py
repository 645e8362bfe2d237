"""The tree's layers hold: the command line over the runners (operator and local, which never
import each other), over reading series, over the pure engine, over the API models; the engine
and the API import no I/O client, and the sidecar takes only the engine and the API from plateau.
In the evaluation loop, the stages import downward from the cycle, and the pure ones (plan,
assemble, the cycle's types) take no clock, event loop or client. The contracts live in pyproject.toml's [tool.importlinter]; import-linter checks them."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def lint_imports(root: Path, config: Path) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    assert exe, "lint-imports is missing: scripts/bootstrap installs import-linter with the dev extras"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(str(root / d) for d in ("operator", "sidecar", "client"))}
    return subprocess.run([exe, "--config", str(config), "--no-cache"], capture_output=True, text=True,
                          env=env, cwd=root, timeout=120)


def test_the_layers_in_pyproject_are_kept() -> None:
    result = lint_imports(REPO, REPO / "pyproject.toml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "7 kept, 0 broken" in result.stdout


@pytest.mark.parametrize(("module", "line", "contract"), [
    ("engine/rules.py", "from plateau.controller import kube", "layers point down"),
    ("api/models.py", "from plateau.engine import rules", "layers point down"),
    ("engine/status.py", "import aiohttp", "engine is pure"),
    ("controller/kube.py", "from plateau.local import runner", "layers point down"),
    ("engine/stopflow.py", "import time", "engine reads no clock"),
    ("../../client/plateau_client/__init__.py", "import plateau_sidecar", "client stands alone"),
    ("controller/loop/plan.py", "import asyncio", "pure stages do no I/O"),
    ("controller/loop/assemble.py", "from plateau.prometheus.client import PrometheusClient", "pure stages do no I/O"),
    ("controller/loop/context.py", "from plateau.controller.workloads import Workload", "pure stages do no I/O"),
    ("controller/loop/write.py", "from plateau.controller.loop import act", "stages import downward"),
    ("controller/loop/plan.py", "from plateau.controller.loop import write", "stages import downward"),
])
def test_a_wrong_way_import_breaks_a_contract(tmp_path: Path, module: str, line: str, contract: str) -> None:
    """The check can fail: a copy of the tree with one wrong-way import is refused, naming it.
    (`module` is relative to operator/plateau.)"""
    shutil.copytree(REPO / "operator", tmp_path / "operator", ignore=shutil.ignore_patterns("__pycache__"))
    for tree in ("sidecar", "client"):
        shutil.copytree(REPO / tree, tmp_path / tree, ignore=shutil.ignore_patterns("__pycache__"))
    target = tmp_path / "operator" / "plateau" / module
    target.write_text(target.read_text() + f"\n{line}  # a wrong-way import\n")
    result = lint_imports(tmp_path, REPO / "pyproject.toml")
    assert result.returncode != 0
    assert contract in result.stdout and "BROKEN" in result.stdout
