"""What scripts/build-image would build, from its --dry-run (which builds nothing)."""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def build_plan() -> dict[str, tuple[str, list[str]]]:
    """{image: (tag, buildah build argv)} for each image the script builds."""
    result = subprocess.run([str(REPO / "scripts/build-image"), "--dry-run"], capture_output=True, text=True,
                            timeout=30, check=True)
    builds = {}
    for line in result.stdout.splitlines():
        if line.startswith("build "):
            name, _, command = line.removeprefix("build ").partition(": ")
            argv = shlex.split(command)
            builds[name] = (argv[argv.index("-t") + 1], argv)
    return builds
