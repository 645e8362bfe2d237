"""Small slices of the committed learning curves, for benchmark commands run in a test."""

from __future__ import annotations

import gzip
from pathlib import Path


def subset(path: Path, per_task: int) -> list[str]:
    """The CSV lines (header first) of the first `per_task` runs of every task in `path`."""
    with gzip.open(path, "rt") as fh:
        header, *lines = fh.read().splitlines()
    keep: dict[str, set[str]] = {}
    out = [header]
    for line in lines:
        run, task = line.split(",", 2)[:2]
        runs = keep.setdefault(task, set())
        if run in runs or len(runs) < per_task:
            runs.add(run)
            out.append(line)
    return out
