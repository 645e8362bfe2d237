"""Exactness: does a cluster stop where replay stops, whatever the reports per read?

    .venv/bin/python -m benchmarks.exactness [--curves benchmarks/data/curves-holdout.csv.gz]

Every held-out curve is reported, evaluation by evaluation, to a real sidecar store folding
under each preset; the track is read from the rendered /metrics text (parsed as Prometheus
parses it) every k reports, and `rules.decide` runs on each read, as the operator does.
Replay (`plateau replay`'s RunReplay) sees every evaluation.

- plateau: decides on the sidecar's first track that said stop, once there is one.
- baseline (same run): decides on the track as of each read, without the kept first stop: what
  an exporter of the latest engine state alone would give.

Per preset and k: runs whose stop has replay's reason and evidence at the first read at or
after replay's stop evaluation ("agree"), and, for the rest, stops earlier or later than replay
or missed; the read lag in evaluations (0 when k = 1).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections import Counter
from pathlib import Path
from typing import Optional

if __package__ in (None, ""):  # run as a file: make "benchmarks" importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from prometheus_client.parser import text_string_to_metric_families

from benchmarks.harness import RunCurve, load_curves
from plateau.api import StopSpec
from plateau.engine.history import metric_spec_for
from plateau.cli.replay import Row, RunHistory, RunReplay
from plateau.engine.rules import Decision, Observation, decide
from plateau.prometheus.summaries import TRACK_READ_SERIES, track_from_series
from plateau_sidecar.collector import Exposition
from plateau_sidecar.store import MetricStore

HOLDOUT = Path(__file__).resolve().parent / "data" / "curves-holdout.csv.gz"
PRESETS = ("balanced", "conservative", "aggressive")
PER_READ = (1, 2, 5, 20)
METRIC = "val_loss"


def replay_stop(stop: StopSpec, curve: RunCurve) -> tuple[Optional[int], Optional[Decision]]:
    """Replay's stop: the evaluation (1-based) it stopped at, and its decision."""
    rows = [Row(int(s), {METRIC: float(v)}, None, None) for s, v in zip(curve.steps, curve.val_loss)]
    run = RunReplay(RunHistory(str(curve.run), None, rows), stop)
    while not run.done:
        run.decide(run.advance())
    if run.decision is not None and run.decision.would_stop:
        return run.position, run.decision
    return None, None


def cluster_stops(stop: StopSpec, curve: RunCurve, per_read: int) -> tuple[Optional[tuple[int, Decision]], Optional[tuple[int, Decision]]]:
    """(plateau, baseline): each the (reports read, decision) of its first read that stops."""
    store = MetricStore("bench")
    exposition = Exposition(store)
    store.set_spec(metric_spec_for(stop).text)  # type: ignore[union-attr]
    plateau = baseline = None
    n, sent = len(curve.steps), 0
    for read in [*range(per_read, n, per_read), n]:  # the last read takes what is left
        with store.lock:
            for i in range(sent, read):
                store.add_record(int(curve.steps[i]), {METRIC: float(curve.val_loss[i])})
        sent = read
        values = {s.name: s.value for f in text_string_to_metric_families(exposition.render().decode())
                  for s in f.samples if s.name in TRACK_READ_SERIES and s.labels.get("metric") == METRIC}
        got = track_from_series(values, METRIC)
        assert got is not None and got.current is not None
        if plateau is None and (d := decide(stop, Observation(metric=got.stopped or got.current))).would_stop:
            plateau = (read, d)
        if baseline is None and (d := decide(stop, Observation(metric=got.current))).would_stop:
            baseline = (read, d)
        if plateau and baseline:
            break
    return plateau, baseline


def judge(expected: tuple[Optional[int], Optional[Decision]], got: Optional[tuple[int, Decision]], per_read: int) -> tuple[str, int]:
    """The cluster's stop against replay's: agree (its first read at or after replay's stop, with
    replay's reason, message and step), earlier, later or missed; and the read lag."""
    at, decision = expected
    if at is None or decision is None:
        return ("agree", 0) if got is None else ("earlier", 0)
    if got is None:
        return "missed", 0
    read, d = got
    if (d.reason, d.message, d.step) == (decision.reason, decision.message, decision.step) and read >= at \
            and read - at < per_read:
        return "agree", read - at
    return ("earlier" if read < at else "later"), read - at


def main() -> int:
    logging.getLogger("plateau_sidecar").setLevel(logging.ERROR)  # each store logs its first NaN
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--curves", default=str(HOLDOUT))
    ap.add_argument("--limit", type=int, default=None, help="only the first N curves")
    args = ap.parse_args()
    curves = load_curves(args.curves, args.limit)
    print(f"{len(curves)} curves from {args.curves}; reads every k reports; replay sees every evaluation")
    header = ("preset", "k", "replay stops", "plateau: agree", "lag mean/max", "baseline: agree", "earlier", "later", "missed")
    rows = []
    for preset in PRESETS:
        stop = StopSpec.model_validate({"preset": preset, "metric": {"name": METRIC}})
        expected = [replay_stop(stop, c) for c in curves]
        stops = sum(1 for at, _ in expected if at is not None)
        for k in PER_READ:
            ours, theirs, lags = Counter(), Counter(), []
            for curve, exp in zip(curves, expected):
                plateau, baseline = cluster_stops(stop, curve, k)
                verdict, lag = judge(exp, plateau, k)
                ours[verdict] += 1
                if verdict == "agree" and exp[0] is not None:
                    lags.append(lag)
                theirs[judge(exp, baseline, k)[0]] += 1
            lag = f"{sum(lags) / len(lags):.1f}/{max(lags)}" if lags else "-"
            rows.append((preset, str(k), str(stops), f"{ours['agree']}/{len(curves)}", lag,
                         f"{theirs['agree']}/{len(curves)}", str(theirs["earlier"]), str(theirs["later"]),
                         str(theirs["missed"])))
            assert ours["agree"] == len(curves), (preset, k, ours)
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header))]
    for r in (header, *rows):
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    return 0


if __name__ == "__main__":
    sys.exit(main())
