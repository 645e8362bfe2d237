"""`plateau replay` on many runs: the table output side by side with `--json`, in the same run.

    .venv/bin/python benchmarks/replay_bench.py [--runs 100000] [--rows-per-run 5]

Writes a CSV of RUNS runs (ROWS-PER-RUN rows each, interleaved as a sweep logs them), then runs
`python -m plateau.cli replay` on it twice, as separate processes: with `--json` (the baseline)
and with the table (and, with --before, with the table of another checkout). Prints the wall
time, the CPU time and the peak resident memory (ru_maxrss) of each, and their ratio, judged on
CPU seconds, which a loaded machine does not inflate. Issue 15 measured 83 s and 690 MB for the
table against 9.4 s for `--json`; the target is a table within a small factor (2x) of `--json`.
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_RATIO = 2.0
SPEC = "stop:\n  metric: {name: val_loss, patience: 2}\n  maxDuration: 10m\n"


def write_curves(path: Path, runs: int, rows_per_run: int, seed: int = 15) -> None:
    rng = random.Random(seed)
    with path.open("w") as out:
        out.write("run,step,val_loss,time,gpu_util\n")
        for step in range(1, rows_per_run + 1):
            out.write("".join(
                f"run-{r:06d},{step},{1.0 / step + rng.random() * 0.1:.5f},{step * 60},{0.5 + rng.random() / 2:.3f}\n"
                for r in range(runs)))


ROOT = Path(__file__).resolve().parents[1]


def measure(args: list[str], root: Path = ROOT) -> tuple[float, float, float, int]:
    """Wall seconds, CPU seconds, peak RSS in MB and output bytes of one `plateau` process, with
    the code of `root`. (CPU seconds hold on a loaded machine, where wall seconds do not.)"""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root / d) for d in ("operator", "sidecar", ".")])}
    started = time.perf_counter()
    with tempfile.TemporaryFile() as out:
        process = subprocess.Popen([sys.executable, "-m", "plateau.cli", *args], stdout=out, stderr=subprocess.PIPE, env=env)
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        if process.returncode != 0:
            raise SystemExit(f"plateau {' '.join(args)} failed: {process.stderr.read().decode() if process.stderr else ''}")
        size = out.tell()
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, size


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--rows-per-run", type=int, default=5)
    parser.add_argument("--before", type=Path, metavar="CHECKOUT",
                        help="also time the table with another checkout's code (e.g. the commit before the change)")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        spec, curves = Path(tmp) / "spec.yaml", Path(tmp) / "curves.csv"
        spec.write_text(SPEC)
        write_curves(curves, options.runs, options.rows_per_run)
        print(f"{options.runs} runs, {options.runs * options.rows_per_run} rows ({curves.stat().st_size / 1e6:.1f} MB CSV);"
              f" load average {os.getloadavg()[0]:.2f}")
        json = measure(["replay", str(spec), str(curves), "--json"])
        table = measure(["replay", str(spec), str(curves)])
        before = measure(["replay", str(spec), str(curves)], options.before) if options.before else None
    print(f"{'output':<14}{'wall s':>9}{'CPU s':>9}{'peak MB':>9}{'output MB':>11}")
    rows = [("--json", json, "(baseline)"), ("table", table, "")]
    rows += [("table before", before, f"({options.before})")] if before else []
    for label, (wall, cpu, rss, size), note in rows:
        print(f"{label:<14}{wall:>9.2f}{cpu:>9.2f}{rss:>9.0f}{size / 1e6:>11.1f}   {note}")
    ratio = table[1] / json[1]
    print(f"table / --json: {ratio:.2f}x CPU, {table[0] / json[0]:.2f}x wall, {table[2] / json[2]:.2f}x memory"
          f" (target: within {TARGET_RATIO:g}x)")
    return 0 if ratio <= TARGET_RATIO else 1


if __name__ == "__main__":
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    sys.exit(main())
