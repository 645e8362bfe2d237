"""Resident memory of a spec edit at the sidecar's kept-reports bound: 1,000,000 reports of the
monitored metric (or 500,000 each of it and its learning rate), refolded under a new spec.

    .venv/bin/python -m benchmarks.refold_memory [--reports 1000000]

Each case runs in a fresh process that imports what the sidecar process imports (in the
third, numpy and the forecast too, as every preset loads them), ingests the reports, and
refolds them; printed: resident memory after ingest and its peak through the refold (VmRSS
and VmHWM, from /proc), against the chart's sidecar limit of 128Mi.
"""

from __future__ import annotations

import argparse
import subprocess
import sys

LIMIT_MB = 128 * 2**20 / 1e6

CASE = """
import math, sys
import plateau_sidecar.main, plateau_sidecar.collector
from plateau.api import StopSpec
from plateau.engine.history import metric_spec_for
from plateau_sidecar.store import MetricStore
reports, lr, forecast = int(sys.argv[1]), sys.argv[2] == "1", sys.argv[3] == "1"
if forecast:
    import numpy, plateau.engine.forecast
schedule = {"schedule": {"learningRate": "lr"}} if lr else {}
old, new = (metric_spec_for(StopSpec.model_validate({"metric": {"name": "m", "patience": p, **schedule}}))
            for p in (100000, 99999))
def mb(field):
    return int(open("/proc/self/status").read().split(field + ":")[1].split()[0]) / 1000
store = MetricStore("tj")
store.set_spec(old.text)
with store.lock:
    for i in range(1, (reports // 2 if lr else reports) + 1):
        store.add_record(i, {"m": 1 / math.sqrt(i), "lr": 0.1 * 0.5 ** (i // 100000)} if lr else {"m": 1 / math.sqrt(i)})
after = mb("VmRSS")
store.set_spec(new.text)
assert store.snapshot().track.spec_key == new.key
print(after, mb("VmHWM"))
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reports", type=int, default=1_000_000)
    args = parser.parse_args()
    print(f"{args.reports:,} kept reports; resident MB; the chart's sidecar limit is {LIMIT_MB:.1f} MB")
    print("| reports | after ingest | peak through the refold |")
    print("| --- | --- | --- |")
    for lr, forecast in ((False, False), (True, False), (False, True)):
        out = subprocess.run([sys.executable, "-c", CASE, str(args.reports), str(int(lr)), str(int(forecast))],
                             check=True, capture_output=True, text=True).stdout.split()
        label = "the metric's and its learning rate's, half each" if lr else "the metric's"
        print(f"| {label}{', numpy loaded' if forecast else ''} | {float(out[0]):.1f} | {float(out[1]):.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
