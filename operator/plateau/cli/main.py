"""The `plateau` command: generate the CRD, validate manifests, replay stop specs on past runs,
run a TrainingJob on this machine."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Callable, Iterator, Optional, Sequence, TextIO

from plateau.api.errors import InputError
from plateau.cli.replay import RunResult, load_stop_spec, metric_columns, read_runs, replay, summarise


def _cmd_crd(args: argparse.Namespace) -> int:
    from plateau.cli.crd import render_crd, write_crds

    if args.stdout:
        sys.stdout.write(render_crd())
        return 0
    for path in write_crds(_repository_root(args.root)):
        print(f"wrote {path}")
    return 0


def _repository_root(root: str) -> Path:
    """An existing directory: a typo must not grow a new tree of generated files elsewhere."""
    if not Path(root).is_dir():
        raise InputError(f"--root {root}: not a directory (the repository root)")
    return Path(root)


def _cmd_docs(args: argparse.Namespace) -> int:
    from plateau.cli.docs import render_reference, write_reference

    if args.stdout:
        sys.stdout.write(render_reference())
    else:
        print(f"wrote {write_reference(_repository_root(args.root))}")
    return 0


def _cmd_validate(args: argparse.Namespace) -> int:
    """Every TrainingJob of every file, as `kubectl apply -f` takes them: each error is told."""
    from plateau.api.manifest import check_for_the_api_server, training_job_documents

    failed = False
    for path in args.manifests:
        try:
            docs = training_job_documents(Path(path))
            if not docs:
                raise InputError(f"{path}: no TrainingJob (kind: TrainingJob, apiVersion: plateau.dev/v1alpha1)")
            for number, doc in enumerate(docs, start=1):
                source = path if len(docs) == 1 else f"{path} (TrainingJob {number} of {len(docs)})"
                try:
                    job = check_for_the_api_server(doc, source)
                    print(f"{source}: TrainingJob {job.metadata.name} is valid")
                except InputError as exc:
                    _tell(exc)
                    failed = True
        except InputError as exc:
            _tell(exc)
            failed = True
    return 2 if failed else 0


def _tell(error: InputError) -> None:
    print(f"plateau: error: {error}", file=sys.stderr)


def _cmd_replay(args: argparse.Namespace) -> int:
    if args.parallel < 1:
        raise InputError("--parallel must be at least 1")
    if args.limit is not None and args.limit < 1:
        raise InputError(f"--limit {args.limit}: must be at least 1 (the number of runs to replay)")
    stop = load_stop_spec(Path(args.spec))
    histories = read_runs(
        Path(args.curves),
        metric_columns(stop),
        run_column=args.run_column,
        step_column=args.step_column,
        cohort_column=args.cohort_column,
    )
    if stop.cohort is not None and args.cohort_column is None:
        raise InputError("the stop spec has a cohort rule: name the column that groups runs with --cohort-column")
    if args.limit is not None:
        histories = histories[: args.limit]
    results = list(replay(histories, stop, parallel=args.parallel))
    if args.json:
        for result in results:
            sys.stdout.write(json.dumps(result.as_json()) + "\n")
        return 0
    _print_table(results, stop.metric.name if stop.metric else None)
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from plateau.local.plan import RunOptions
    from plateau.local.runner import run

    options = RunOptions(
        workdir=Path(args.workdir) if args.workdir else None,
        status_out=Path(args.status_out) if args.status_out else None,
        interval=args.interval,
        metrics_port=args.metrics_port,
        prometheus=args.prometheus,
    )
    return run(Path(args.manifest), options)


def _table_rows(results: Sequence[RunResult]) -> Iterator[tuple[str, ...]]:
    for r in results:
        yield (
            r.run,
            "yes" if r.stopped else "no",
            str(r.stop_step),
            str(r.planned),
            r.reason or "",
            "" if r.best_value is None else f"{r.best_value:.4g}",
            "" if r.best_step is None else str(r.best_step),
        )


def _print_table(results: Sequence[RunResult], metric: Optional[str], out: TextIO = sys.stdout) -> None:
    """Plain aligned columns, one line per run, written in one pass: a table of 100,000 runs
    costs about what their JSON lines cost. (Run names are printed as they are, escaped only
    where they would break a line.)"""
    header = ("run", "stopped", "stop step", "of", "reason", f"best {metric or ''}".strip(), "best step")
    left = (True, False, False, False, True, False, False)
    rows = [tuple(_printable(c) for c in row) for row in _table_rows(results)]
    widths = [max([len(h), *(len(row[i]) for row in rows)]) for i, h in enumerate(header)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) if lft else c.rjust(w) for c, w, lft in zip(cells, widths, left)).rstrip()

    out.write(line(header) + "\n" + "  ".join("-" * w for w in widths) + "\n")
    for start in range(0, len(rows), 4096):
        out.write("".join(line(row) + "\n" for row in rows[start : start + 4096]))
    totals = summarise(results)
    skipped = f" {int(totals['missing'])} rows had no value of {metric} and were skipped." if totals["missing"] else ""
    # Time is what a user pays for: given `time` (and GPUs), say what the spec would have saved.
    if totals["gpu_hours_saved"] is not None:
        saved = f" {totals['gpu_hours_saved']:.4g} GPU-hours ({totals['hours_saved']:.4g} hours) would have been saved."
    elif totals["hours_saved"] is not None:
        saved = f" {totals['hours_saved']:.4g} hours of training would have been saved (add `gpus` for GPU-hours)."
    else:
        saved = ""
    out.write(
        f"{totals['stopped']}/{totals['runs']} runs stopped early; "
        f"{totals['evaluations_saved']:.0%} of the recorded evaluations would not have run.{saved}{skipped}\n"
    )


def _printable(text: str) -> str:
    return text if text.isprintable() else text.encode("unicode_escape").decode("ascii")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="plateau", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    crd = sub.add_parser("crd", help="write crds/trainingjob.yaml, the chart's copy and the pod template schema they embed"
                         " (operator/plateau/api/podtemplate.schema.json) from the API models")
    crd.add_argument("--root", default=".", help="repository root (default: .)")
    crd.add_argument("--stdout", action="store_true", help="print the CRD instead of writing files")
    crd.set_defaults(func=_cmd_crd)

    docs = sub.add_parser("docs", help="write docs/reference.md, the TrainingJob reference, from the API models")
    docs.add_argument("--root", default=".", help="repository root (default: .)")
    docs.add_argument("--stdout", action="store_true", help="print the reference instead of writing it")
    docs.set_defaults(func=_cmd_docs)

    validate = sub.add_parser("validate", help="validate TrainingJob manifests against the API models")
    validate.add_argument("manifests", nargs="+")
    validate.set_defaults(func=_cmd_validate)

    rp = sub.add_parser("replay", help="try a stop spec on past runs recorded in a CSV")
    rp.add_argument("spec", help="a TrainingJob manifest, or a YAML file holding its stop: block")
    rp.add_argument("curves", help="CSV (optionally .gz): run, step, one column per metric, optional time and gpu_util")
    rp.add_argument("--run-column", default="run")
    rp.add_argument("--step-column", default="step")
    rp.add_argument("--cohort-column", default=None, help="column grouping runs into cohorts, for cohort rules")
    rp.add_argument("--parallel", type=int, default=1, help="cohort runs replayed at once, in file order")
    rp.add_argument("--limit", type=int, default=None, help="replay only the first N runs")
    rp.add_argument("--json", action="store_true", help="one JSON object per run")
    rp.set_defaults(func=_cmd_replay)

    run = sub.add_parser("run", help="run a TrainingJob's trainer on this machine and stop it by its stop spec")
    run.add_argument("manifest", help="a TrainingJob with spec.template; its first container's command runs in the current directory")
    run.add_argument("--workdir", help="run directory, standing in for /plateau and /etc/plateau (default: plateau-runs/NAME-TIME)")
    run.add_argument("--status-out", help="also write the final status YAML here")
    run.add_argument("--interval", type=float, default=1.0, help="seconds between evaluations (default: 1)")
    run.add_argument("--metrics-port", type=int, help="127.0.0.1 port of the sidecar's /metrics (default: a free one)")
    run.add_argument("--prometheus", metavar="URL", help="read the sidecar's series from this Prometheus instead of the sidecar")
    run.set_defaults(func=_cmd_run)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.func
    try:
        return handler(args)
    except InputError as exc:
        _tell(exc)
        return 2
    except KeyboardInterrupt:
        return 130

