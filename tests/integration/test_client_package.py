"""The two distributions: `plateau-client` (client/) installs alone, with no dependency, into a
bare virtualenv; `plateau-operator` (the root) builds the wheel the Dockerfile installs."""

from __future__ import annotations

import email
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


def wheel(source: Path, into: Path) -> Path:
    """`pip wheel` of a copy of `source`: the build leaves its build/ and egg-info in the copy."""
    copy = into / "src"
    shutil.copytree(source, copy, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__", ".*"))
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(into), str(copy)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    (built,) = into.glob("*.whl")
    return built


def metadata(built: Path) -> email.message.Message:
    with zipfile.ZipFile(built) as archive:
        (name,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        return email.message_from_bytes(archive.read(name))


def test_the_client_wheel_has_no_dependency_and_installs_into_a_bare_virtualenv(tmp_path: Path) -> None:
    built = wheel(REPO / "client", tmp_path)
    assert built.name == "plateau_client-0.1.0-py3-none-any.whl"
    meta = metadata(built)
    assert meta["Name"] == "plateau-client"
    requires = meta.get_all("Requires-Dist") or []
    assert requires and all("; extra == " in r for r in requires)  # the frameworks come only with an extra
    assert set(meta.get_all("Provides-Extra") or []) == {"torch", "lightning", "keras", "transformers"}
    with zipfile.ZipFile(built) as archive:
        assert {n.split("/")[0] for n in archive.namelist()} == {"plateau_client", "plateau_client-0.1.0.dist-info"}

    subprocess.run([sys.executable, "-m", "venv", str(tmp_path / "venv")], check=True, timeout=120)
    python = str(tmp_path / "venv" / "bin" / "python")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # only what the venv installed
    install = [python, "-m", "pip", "install", "-q", "--no-index", "--disable-pip-version-check", str(built)]
    subprocess.run(install, check=True, env=env, cwd=tmp_path, timeout=120)  # --no-index: nothing else to fetch
    use = (
        "import plateau_client; plateau_client.report(7, val_loss=0.5); print(plateau_client.should_stop()); "
        "import plateau_client.integrations.keras"
    )
    env |= {"PLATEAU_METRICS_FILE": str(tmp_path / "m.jsonl"), "PLATEAU_STOP_FILE": str(tmp_path / "stop")}
    result = subprocess.run([python, "-c", use], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert result.stdout == "False\n" and '"step": 7, "val_loss": 0.5' in (tmp_path / "m.jsonl").read_text()
    assert result.stderr.strip().splitlines()[-1].startswith("ImportError: plateau_client.integrations.keras needs Keras 3")


def test_the_operator_wheel_is_named_for_the_dockerfile_and_leaves_the_client_out(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, root)
    for name in ("operator", "sidecar"):  # what .dockerignore lets into the build
        shutil.copytree(REPO / name, root / name, ignore=shutil.ignore_patterns("__pycache__"))
    built = wheel(root, tmp_path)
    assert built.name == "plateau_operator-0.1.0-py3-none-any.whl"
    assert not any("plateau-client" in r or "plateau_client" in r for r in metadata(built).get_all("Requires-Dist") or [])
    with zipfile.ZipFile(built) as archive:
        assert {n.split("/")[0] for n in archive.namelist()} == {"plateau", "plateau_sidecar", "plateau_operator-0.1.0.dist-info"}
