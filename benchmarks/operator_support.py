"""Fixtures for the operator benchmark, each run as its own process by benchmarks/operator_bench.py.

    python -m benchmarks.operator_support exporter --jobs N --port P [--shard-size 500] [--latency]
    python -m benchmarks.operator_support emulator --jobs N --kubeconfig-out PATH [--latency]

- exporter: a synthetic scrape target serving the sidecar's series for N TrainingJobs, with the
  labels Prometheus puts on them in a cluster (metric, trainingjob, namespace, pod), split into
  shards of `--shard-size` jobs at /metrics/<shard> (one Prometheus target per shard, like one
  target per pod, without thousands of scrape configs). Every scrape of a shard is one more
  report of val_loss for each of its jobs (or, with --report-every K, every K-th scrape,
  staggered over the jobs): the counters and the step advance, the loss falls.
  With --latency the loss stays flat at 1.0 until the job is armed (POST /arm?job=NS/NAME); the
  first scrape after that reports 0.4, below the TrainingJobs' target 0.5, and its time is kept
  (GET /crossings): the "first scrape that makes the stop condition true".
- emulator: the emulated API server (tests/support/apiserver) with the CRD and N TrainingJobs in
  phase Running, each with its child batch/v1 Job marked active, written straight into the
  emulator's store (one of each goes through the full create path first, so the shape is one
  the real validation accepts). Prints `ready <url>` once it serves.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import signal
import sys
import threading
import time
import urllib.parse
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from plateau_sidecar import protocol as p

ROOT = Path(__file__).resolve().parents[1]
METRIC = "val_loss"
TARGET = 0.5  # latency jobs: stop (TargetReached) once val_loss <= 0.5
LABEL = "plateau.dev/trainingjob"  # plateau.controller.children.LABEL (kept literal: no operator import here)
SCALE_NAMESPACES = 4
LATENCY_NAMESPACE = "bench-latency"


# --- the jobs ------------------------------------------------------------------------------


def job_keys(n: int, latency: bool = False, namespaces: int = SCALE_NAMESPACES) -> list[tuple[str, str]]:
    """(namespace, name) of N benchmark jobs, spread over a few namespaces."""
    if latency:
        return [(LATENCY_NAMESPACE, f"lat-{i:02d}") for i in range(n)]
    return [(f"bench-{i % namespaces}", f"tj-{i:05d}") for i in range(n)]


def pod_name(name: str) -> str:
    return f"{name}-0-x7k2p"  # an Indexed Job's pod: <job>-<index>-<suffix>


# --- the synthetic exporter ----------------------------------------------------------------

# The track fields a real sidecar exports of a job without smoothing and without a learning-rate
# drop seen; those of a forecast rule (its regime's evaluations, plateau.engine.forecast's fit)
# come only with one.
FORECAST_FIELDS = ("regime_evaluations", "forecast_level", "forecast_level_sd", "forecast_gain", "forecast_gain_sd")
_UNEXPORTED = {"smoothed", "drop_step", "drop_gap", *FORECAST_FIELDS}


def families(forecast: bool) -> tuple[tuple[str, str], ...]:
    """(series, type): what a real sidecar exports of a job whose rules have not said stop (the
    stopped track's series appear only once they do), in the order of `Shard._values`."""
    track = [f"plateau_track_{f}" for f in p.TRACK_FIELDS if f not in _UNEXPORTED]
    return (
        (p.SERIES_VALUE, "gauge"),
        (p.SERIES_STEP, "gauge"),
        (p.SERIES_REPORTS, "counter"),
        (p.SERIES_TRACK_SPEC, "gauge"),
        (p.SERIES_TRACK_RESUMES, "counter"),
        (p.SERIES_TRACK_KEPT, "gauge"),
        *((name, "gauge") for name in track),
        *((f"plateau_track_{f}", "gauge") for f in (FORECAST_FIELDS if forecast else ())),
    )


BASE_REPORTS = 10  # reports already made before the first scrape: the jobs have some history
STEPS_PER_REPORT = 100


def loss(reports: int, offset: float = 0.0) -> float:
    """A falling loss curve: every report is an improvement, so no scale job ever plateaus."""
    return round(0.2 + 1.0 / (1.0 + 0.01 * reports) + offset, 9)


class Shard:
    """One scrape target: the series of a slice of the jobs."""

    def __init__(self, keys: list[tuple[str, str]], latency: bool, report_every: int = 1, forecast: bool = False) -> None:
        self.keys = keys
        self.latency = latency
        self.forecast = forecast
        self.families = families(forecast)
        self.report_every = max(1, report_every)  # scrapes between two reports of a job (staggered)
        self.scrapes = 0
        self.armed: set[tuple[str, str]] = set()
        self.crossed: dict[tuple[str, str], tuple[float, int]] = {}  # job -> (time served, report)
        self._prefixes = [
            [
                f'{series}{{{p.LABEL_METRIC}="{METRIC}",{p.LABEL_TRAININGJOB}="{name}",'
                f'namespace="{ns}",pod="{pod_name(name)}"}} '
                for ns, name in keys
            ]
            for series, _ in self.families
        ]
        self._offsets = [(i % 97) * 1e-4 for i in range(len(keys))]
        self.spec_key = spec_key_of(trainingjob("", "", latency, forecast))

    def _values(self, i: int, key: tuple[str, str], reports: int, now: float) -> tuple[float, ...]:
        """value, step, reports, spec key, resumes, kept, then the track (plateau.engine.fold.track's
        fold of these reports): evaluations, best, best_step, reference, first, since, non_finite,
        and with a forecast its regime's evaluations and its fit: the curve heads for 0.2 by its
        horizon, far more gain than minGain, so no scale job converges."""
        step = reports * STEPS_PER_REPORT
        head = (step, reports, self.spec_key, 0, 1, reports)
        if not self.latency:  # every report improves
            value = loss(reports, self._offsets[i])
            fit = (reports, 0.2, 0.01, value - 0.2, 0.01) if self.forecast else ()
            return value, *head, value, step, value, loss(1, self._offsets[i]), 0, 0, *fit
        crossed = self.crossed.get(key)
        if crossed is None and key in self.armed:
            crossed = self.crossed[key] = (now, reports)
        if crossed is None:  # flat at 1.0: no improvement, never the target
            return 1.0, *head, 1.0, STEPS_PER_REPORT, 1.0, 1.0, reports - 1, 0
        at = crossed[1]
        return 0.4, *head, 0.4, at * STEPS_PER_REPORT, 0.4, 1.0, reports - at, 0

    def render(self) -> bytes:
        now = time.time()
        self.scrapes += 1
        every = self.report_every
        rows = [self._values(i, key, BASE_REPORTS + (self.scrapes + i % every) // every, now)
                for i, key in enumerate(self.keys)]
        out: list[str] = []
        for f, (series, kind) in enumerate(self.families):
            out.append(f"# TYPE {series} {kind}\n")
            prefixes = self._prefixes[f]
            out.extend(f"{prefixes[i]}{row[f]}\n" for i, row in enumerate(rows))
        return "".join(out).encode()


class Exporter:
    def __init__(self, keys: list[tuple[str, str]], shard_size: int, latency: bool, report_every: int = 1,
                 forecast: bool = False) -> None:
        self.shards = [Shard(keys[i:i + shard_size], latency, report_every, forecast)
                       for i in range(0, len(keys), shard_size)]
        self._where = {key: shard for shard in self.shards for key in shard.keys}
        self.lock = threading.Lock()

    def arm(self, key: tuple[str, str]) -> None:
        with self.lock:
            self._where[key].armed.add(key)

    def crossings(self) -> dict[str, dict[str, float]]:
        with self.lock:
            return {f"{ns}/{name}": {"time": t, "report": r}
                    for shard in self.shards for (ns, name), (t, r) in shard.crossed.items()}

    def handler(self) -> type[BaseHTTPRequestHandler]:
        exporter = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, body: bytes, content_type: str = "text/plain; version=0.0.4", code: int = 200) -> None:
                self.send_response(code)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                url = urllib.parse.urlsplit(self.path)
                if url.path.startswith("/metrics/"):
                    try:
                        shard = exporter.shards[int(url.path.rsplit("/", 1)[1])]
                    except (ValueError, IndexError):
                        return self._send(b"no such shard\n", code=404)
                    with exporter.lock:
                        body = shard.render()
                    return self._send(body)
                if url.path == "/crossings":
                    return self._send(json.dumps(exporter.crossings()).encode(), "application/json")
                if url.path == "/healthz":
                    return self._send(b"ok\n")
                self._send(b"not found\n", code=404)

            def do_POST(self) -> None:
                url = urllib.parse.urlsplit(self.path)
                query = urllib.parse.parse_qs(url.query)
                if url.path == "/arm" and query.get("job"):
                    ns, name = query["job"][0].split("/", 1)
                    try:
                        exporter.arm((ns, name))
                    except KeyError:
                        return self._send(b"no such job\n", code=404)
                    return self._send(b"armed\n")
                self._send(b"not found\n", code=404)

        return Handler


def serve_exporter(args: argparse.Namespace) -> None:
    exporter = Exporter(job_keys(args.jobs, args.latency), args.shard_size, args.latency, args.report_every, args.forecast)
    server = ThreadingHTTPServer(("127.0.0.1", args.port), exporter.handler())
    server.daemon_threads = True
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    print(f"ready http://127.0.0.1:{server.server_address[1]} shards={len(exporter.shards)}", flush=True)
    server.serve_forever()


# --- the API emulation -----------------------------------------------------------------------


def _rfc3339(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


# The forecast scenario's rule: the job's planned length, and the gain worth going on for.
FORECAST = {"horizon": 10**9, "unit": "steps", "minGain": {"progress": 0.02}, "confidence": 0.9}


def trainingjob(namespace: str, name: str, latency: bool, forecast: bool = False) -> dict[str, Any]:
    rule: dict[str, Any] = {"name": METRIC, "mode": "min", "patience": 100000}
    if latency:
        rule["target"] = TARGET
    if forecast:
        rule["forecast"] = FORECAST
    return {
        "apiVersion": "plateau.dev/v1alpha1",
        "kind": "TrainingJob",
        "metadata": {"name": name, "namespace": namespace, "labels": {"bench": "operator"}},
        "spec": {
            "template": {"spec": {"containers": [{
                "name": "trainer",
                "image": "ghcr.io/example/trainer:1.0",
                "command": ["python", "train.py"],
                "resources": {"limits": {"nvidia.com/gpu": 1}},
            }]}},
            "metrics": {"names": [METRIC]},
            "stop": {"metric": rule, "gracePeriod": "0s", "dryRun": False},
        },
    }


def spec_key_of(body: dict[str, Any]) -> int:
    """The key of the metric stop spec a sidecar of this job folds under."""
    from plateau.api import StopSpec
    from plateau.engine.history import metric_spec_for

    found = metric_spec_for(StopSpec.model_validate(body["spec"]["stop"]))
    assert found is not None
    return found.key


def running_status(name: str, started: float) -> dict[str, Any]:
    """What the operator had written for a job it saw start running: phase Running."""
    at = _rfc3339(started)
    return {
        "phase": "Running",
        "startTime": at,
        "observedGeneration": 1,
        "lastEvaluationTime": at,
        "replicas": 1,
        "workload": f"Job/{name}",
        "selector": f"{LABEL}={name}",
        "conditions": [{"type": "Ready", "status": "True", "reason": "Running", "message": "the trainer is running",
                        "lastTransitionTime": at, "observedGeneration": 1}],
    }


def child_job(tj: dict[str, Any]) -> dict[str, Any]:
    meta = tj["metadata"]
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": meta["name"],
            "namespace": meta["namespace"],
            "labels": {LABEL: meta["name"]},
            "ownerReferences": [{"apiVersion": "plateau.dev/v1alpha1", "kind": "TrainingJob", "name": meta["name"],
                                 "uid": meta["uid"], "controller": True, "blockOwnerDeletion": True}],
        },
        "spec": {
            "parallelism": 1,
            "completions": 1,
            "completionMode": "Indexed",
            "suspend": False,
            "template": {
                "metadata": {"labels": {LABEL: meta["name"]}},
                "spec": {"restartPolicy": "Never", "containers": [{
                    "name": "trainer", "image": "ghcr.io/example/trainer:1.0",
                    "resources": {"limits": {"nvidia.com/gpu": 1}},
                }]},
            },
        },
    }


def _stamp(template: dict[str, Any], namespace: str, name: str, **fields: Any) -> dict[str, Any]:
    """A copy of a stored object under a new name and uid (the store stamps resourceVersion)."""
    obj = copy.deepcopy(template)
    meta = obj["metadata"]
    meta.update(name=name, namespace=namespace, uid=str(uuid.uuid4()), **fields)
    return obj


def seed(api: Any, keys: list[tuple[str, str]], latency: bool, forecast: bool = False) -> None:
    """N TrainingJobs in phase Running and their active child Jobs, into the emulator's store."""
    cluster = api.cluster
    tj_rt = api.resource_for("plateau.dev/v1alpha1", "TrainingJob")
    job_rt = api.resource_for("batch/v1", "Job")
    for ns in sorted({ns for ns, _ in keys}):
        api.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    started = time.time() - 60
    tj_template = job_template = None
    for ns, name in keys:
        if tj_template is None:  # the first of each kind goes through create and the status subresource
            created = cluster.create(tj_rt, ns, trainingjob(ns, name, latency, forecast))
            cluster.update(tj_rt, ns, name, {**created, "status": running_status(name, started)}, subresource="status")
            tj_template = cluster.store.get(tj_rt.key, ns, name)
            job = cluster.create(job_rt, ns, child_job(tj_template))
            cluster.update(job_rt, ns, name, {**job, "status": {"active": 1, "ready": 1, "startTime": _rfc3339(started)}},
                           subresource="status")
            job_template = cluster.store.get(job_rt.key, ns, name)
            continue
        tj = _stamp(tj_template, ns, name)
        tj["status"] = running_status(name, started)
        cluster.store.put(tj_rt.key, tj)
        job = _stamp(job_template, ns, name, labels={LABEL: name})
        job["metadata"]["ownerReferences"][0].update(name=name, uid=tj["metadata"]["uid"])
        job["spec"]["template"]["metadata"]["labels"] = {**job["spec"]["template"]["metadata"]["labels"], LABEL: name}
        cluster.store.put(job_rt.key, job)


async def serve_emulator_async(args: argparse.Namespace) -> None:
    sys.path.insert(0, str(ROOT))
    from tests.support.apiserver import ApiServer

    # No deletions happen here, so the emulated garbage collector (a pass over every object after
    # each write) is slowed down: it would otherwise compete with the API for the CPU.
    async with ApiServer(rbac=False, tls=False, gc_delay=args.gc_delay, history=args.history) as api:
        api.apply((ROOT / "crds" / "trainingjob.yaml").read_text())
        began = time.perf_counter()
        seed(api, job_keys(args.jobs, args.latency), args.latency, args.forecast)
        api.log.clear()
        api.write_kubeconfig(args.kubeconfig_out)
        print(f"ready {api.url} seeded={args.jobs} in {time.perf_counter() - began:.1f}s", flush=True)
        stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            asyncio.get_running_loop().add_signal_handler(sig, stop.set)
        if not args.keep_log:
            asyncio.create_task(_trim_log(api))
        await stop.wait()


async def _trim_log(api: Any) -> None:
    """Keep the emulator's request logs from growing without bound during long runs."""
    while True:
        await asyncio.sleep(5)
        api.log.clear()
        api._requests.clear()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.operator_support", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    e = sub.add_parser("exporter")
    e.add_argument("--jobs", type=int, required=True)
    e.add_argument("--port", type=int, default=0)
    e.add_argument("--shard-size", type=int, default=500)
    e.add_argument("--latency", action="store_true")
    e.add_argument("--report-every", type=int, default=1, help="scrapes between two reports of a job")
    e.add_argument("--forecast", action="store_true", help="jobs with a forecast rule: export its fit")
    a = sub.add_parser("emulator")
    a.add_argument("--jobs", type=int, required=True)
    a.add_argument("--kubeconfig-out", required=True)
    a.add_argument("--latency", action="store_true")
    a.add_argument("--forecast", action="store_true", help="TrainingJobs with a forecast rule")
    a.add_argument("--gc-delay", type=float, default=30.0)
    a.add_argument("--history", type=int, default=30_000)
    a.add_argument("--keep-log", action="store_true", help="keep the request log (for timestamps of writes)")
    args = parser.parse_args()
    if args.command == "exporter":
        serve_exporter(args)
    else:
        asyncio.run(serve_emulator_async(args))


if __name__ == "__main__":
    main()
