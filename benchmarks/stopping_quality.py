"""Stopping-quality benchmark: every registered family side by side on real curves.

  .venv/bin/python -m benchmarks.stopping_quality                 # committed curves
  .venv/bin/python -m benchmarks.stopping_quality --curves benchmarks/data/curves-holdout.csv.gz
  .venv/bin/python -m benchmarks.stopping_quality --smoke --json  # first 20 runs, machine-readable
  .venv/bin/python -m benchmarks.stopping_quality --all-curves --cv tasks   # + presets out of sample

--cv tasks adds the presets chosen by leave-one-task-out cross-validation (benchmarks/calibrate.py)
with their out-of-sample figures per preset and per task family, the clairvoyant beside them.

Definitions are in benchmarks/harness.py. To add a family, register it before main()
runs, e.g. from a module that wraps Plateau's rule engine:

  from benchmarks.stopping_quality import register_family, main
  register_family("plateau", [("balanced", policy_from_spec(spec)), ...])
  main()
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a file: make "benchmarks" importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import baselines, calibrate, plateau_policies
from benchmarks.harness import (
    DEFAULT_CURVES,
    REGRET_BUDGET,
    CohortFamily,
    Family,
    RunCurve,
    clairvoyant_stop,
    evaluate_cohort_policy,
    evaluate_family,
    evaluate_policy,
    evaluate_policy_in_cohorts,
    group_cohorts,
    load_curves,
    s_at,
)

SMOKE_RUNS = 20
CLAIRVOYANT = "clairvoyant (reference)"

RUN_FAMILIES: list[tuple[str, Family]] = baselines.run_families()
COHORT_FAMILIES: list[tuple[str, CohortFamily]] = baselines.cohort_families()


def _check_new(name: str) -> None:
    if name in {n for n, _ in RUN_FAMILIES} | {n for n, _ in COHORT_FAMILIES} | {CLAIRVOYANT}:
        raise ValueError(f"family {name!r} is already registered")


def register_family(name: str, settings: Family) -> None:
    """Add a per-run family: (setting name, Policy) pairs. It appears in the per-run
    tables and, as sweeps whose runs stop where the policy says, in the cohort tables."""
    _check_new(name)
    RUN_FAMILIES.append((name, list(settings)))


def register_cohort_family(name: str, settings: CohortFamily) -> None:
    """Add a cohort family: (setting name, CohortPolicy) pairs, replayed per worker count."""
    _check_new(name)
    COHORT_FAMILIES.append((name, list(settings)))


def _pick(results: Sequence[Any]) -> dict[str, Any] | None:
    best = s_at(results)
    return None if best is None else asdict(best)


def evaluate(curves: Sequence[RunCurve], workers: Sequence[int]) -> dict[str, Any]:
    """All families on `curves`; a JSON-ready dict that the tables are printed from."""
    per_run = []
    cohort = []
    for name, family in RUN_FAMILIES:
        results = evaluate_family(curves, family)
        per_run.append({"family": name, "s_at": _pick(results), "settings": [asdict(r) for r in results]})
        rows = [row for setting, policy in family for row in evaluate_policy_in_cohorts(curves, setting, policy)]
        cohort += _cohort_entries(name, rows)
    clairvoyant = evaluate_policy(curves, f"tolerance={REGRET_BUDGET:g}", clairvoyant_stop)
    cohort += _cohort_entries(CLAIRVOYANT, evaluate_policy_in_cohorts(curves, clairvoyant.setting, clairvoyant_stop))
    for name, cohort_family in COHORT_FAMILIES:
        for w in workers:
            rows = [
                row for setting, policy in cohort_family for row in evaluate_cohort_policy(curves, setting, policy, w)
            ]
            cohort += _cohort_entries(name, rows)
    return {
        "runs": len(curves),
        "tasks": sorted({c.task for c in curves}),
        "cohorts": len(group_cohorts(curves)),
        "planned_epochs": sum(c.planned for c in curves),
        "regret_budget": REGRET_BUDGET,
        "per_run": per_run,
        "clairvoyant": asdict(clairvoyant),
        "cohort": cohort,
    }


def _cohort_entries(name: str, rows: Sequence[Any]) -> list[dict[str, Any]]:
    """One entry per (workers, semantics) with its S@0.5 and all its settings."""
    entries = []
    for key in dict.fromkeys((r.workers, r.semantics) for r in rows):
        group = [r for r in rows if (r.workers, r.semantics) == key]
        entries.append(
            {
                "family": name,
                "workers": key[0],
                "semantics": key[1],
                "s_at": _pick(group),
                "settings": [asdict(r) for r in group],
            }
        )
    return entries


def _pct(x: float) -> str:
    return f"{x:6.1%}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]

    def line(cells: Sequence[str]) -> str:  # names left-aligned, numbers right-aligned
        return "  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))

    return "\n".join([line(header), line(["-" * w for w in widths])] + [line(r) for r in rows])


def render(report: dict[str, Any], source: str) -> str:
    b = report["regret_budget"]
    out = [
        f"Stopping quality on {source}: {report['runs']} runs, tasks {', '.join(report['tasks'])},"
        f" {report['cohorts']} cohorts, {report['planned_epochs']} planned epochs",
        f"regret = points of score lost at the restore-best checkpoint vs the run trained to the end;"
        f" S@{b:g} = most mean saved with mean regret <= {b:g} pt",
        "",
        f"PER-RUN: S@{b:g} by family",
    ]
    rows = []
    for fam in report["per_run"]:
        s = fam["s_at"]
        rows.append(
            [
                fam["family"],
                s["setting"] if s else "(none)",
                _pct(s["mean_saved"]) if s else "-",
                f"{s['mean_regret']:.2f}" if s else "-",
            ]
        )
    c = report["clairvoyant"]
    rows.append([CLAIRVOYANT, c["setting"], _pct(c["mean_saved"]), f"{c['mean_regret']:.2f}"])
    out += [_table(["family", "setting", f"S@{b:g}", "regret"], rows), "", "PER-RUN: every setting"]
    rows = [
        [
            fam["family"],
            r["setting"],
            _pct(r["mean_saved"]),
            f"{r['mean_regret']:.2f}",
            f"{r['p99_regret']:.2f}",
            _pct(r["share_regret_gt1"]),
        ]
        for fam in report["per_run"]
        for r in fam["settings"]
    ]
    rows.append([CLAIRVOYANT, c["setting"], _pct(c["mean_saved"]), f"{c['mean_regret']:.2f}",
                 f"{c['p99_regret']:.2f}", _pct(c["share_regret_gt1"])])
    out += [_table(["family", "setting", "saved", "regret", "p99", ">1pt"], rows), ""]
    out += [
        f"COHORT: S@{b:g} by family (saved = 1 - epochs run / planned over all sweeps; regret = points lost by"
        " the sweep's best-found config vs all runs to the end, mean over cohorts)",
        "W = parallel workers (any: per-run policy, W does not matter); keep-best: a stopped run keeps its"
        " best checkpoint; pruned-lost: a stopped run cannot be the winner (Optuna)",
    ]
    rows = []
    for e in report["cohort"]:
        s = e["s_at"]
        rows.append(
            [
                e["family"],
                s["setting"] if s else "(none)",
                "any" if e["workers"] is None else str(e["workers"]),
                e["semantics"],
                _pct(s["compute_saved"]) if s else "-",
                f"{s['mean_regret']:.2f}" if s else "-",
            ]
        )
    out += [_table(["family", "setting", "W", "semantics", f"S@{b:g}", "regret"], rows), ""]
    out.append("COHORT: every setting of the cohort families")
    cohort_names = {n for n, _ in COHORT_FAMILIES}
    rows = [
        [
            e["family"],
            r["setting"],
            str(r["workers"]),
            r["semantics"],
            _pct(r["compute_saved"]),
            f"{r['mean_regret']:.2f}",
            f"{r['max_regret']:.2f}",
            _pct(r["share_regret_gt1"]),
        ]
        for e in report["cohort"]
        if e["family"] in cohort_names
        for r in e["settings"]
    ]
    out.append(_table(["family", "setting", "W", "semantics", "saved", "regret", "max", ">1pt"], rows))
    return "\n".join(out)


plateau_policies.register(register_family, register_cohort_family)  # Plateau's rows, through the real engine


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--curves", type=Path, action="append", help=f"curves CSV, repeatable (default {DEFAULT_CURVES})")
    parser.add_argument("--all-curves", action="store_true", help="every committed curves file (calibrate.ALL_CURVES)")
    parser.add_argument("--cv", choices=("tasks",), help="add the presets' leave-one-task-out calibration")
    parser.add_argument("--json", action="store_true", help="print machine-readable results instead of tables")
    parser.add_argument("--smoke", action="store_true", help=f"only the first {SMOKE_RUNS} runs, for a quick check")
    parser.add_argument("--workers", default="1,4", help="comma-separated parallel-worker counts for the cohort replay")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    paths = list(calibrate.ALL_CURVES) if args.all_curves else args.curves or [DEFAULT_CURVES]
    curves = [c for path in paths for c in load_curves(path, limit=SMOKE_RUNS if args.smoke else None)]
    report = evaluate(curves, [int(w) for w in args.workers.split(",")])
    report["curves"] = " + ".join(map(str, paths))
    if args.cv:
        table = calibrate.build_table(curves, calibrate.registered_grids(), calibrate.CACHE)
        report["calibration"] = calibrate.cross_validate(table, args.cv)
    report["seconds"] = round(time.perf_counter() - started, 1)
    if args.json:
        json.dump(report, sys.stdout, indent=1)
        print()
    else:
        print(render(report, report["curves"]))
        if args.cv:
            print("\nPRESETS BY LEAVE-ONE-TASK-OUT CROSS-VALIDATION (benchmarks/calibrate.py)")
            print(calibrate.render(report["calibration"]))
        print(f"\n({report['seconds']}s)")


if __name__ == "__main__":
    main()
