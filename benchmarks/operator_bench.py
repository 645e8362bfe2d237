"""Operator scale benchmark: Plateau's batched evaluation cycle side by side with the naive
approach of one PromQL query per job (the BASELINE), measured in the same run.

    .venv/bin/python -m benchmarks.operator_bench --jobs 100,1000,10000 --cycles 5
    .venv/bin/python -m benchmarks.operator_bench --quick

For each number of jobs N, three processes hold the world the operator sees:
- a real Prometheus (Debian's 2.42, on 127.0.0.1) scraping
- a synthetic exporter (benchmarks/operator_support.py) that serves the sidecar's series of N
  TrainingJobs, labelled as Prometheus sees them in a cluster (metric, trainingjob, namespace,
  pod), with values that advance at every scrape (`--report-every K`: each job reports once
  every K scrapes, staggered; K=1, the default, is the worst case: every job has news at every
  cycle, so the operator's second query fetches every series);
- the API emulation (tests/support/apiserver) holding N TrainingJobs in phase Running, each with
  its child Job marked active.
The loop then runs in a worker process of its own, so the resident memory reported (VmRSS
and its peak VmHWM, from /proc/self/status) is the operator's and nobody else's: its Registry is
fed from one list of the emulator's objects (what kopf's watch would deliver), and its
`cycle()` (plateau.controller.loop.cycle) runs a warm-up cycle (it writes every job's status: the
operator had never written them) and then `--cycles` measured cycles, `--pause` seconds apart so that every cycle
sees new reports. The measured cycles run with status_interval 3600 s (`--status-interval`), so
they measure evaluation, not the API server's write throughput: the emulator validates a status
write's CEL rules in Python (tens of ms each), so a cycle with writes measures mostly the emulator;
the warm-up cycle shows that cost. The batched collector is the operator's own code, unchanged;
the operator reads every job's report counter, then the series it folds of the jobs whose
counter moved, in concurrent parts by name (1 + FETCH_PARTS queries; FETCH_PARTS alone after a
cycle where most jobs had news), and plans each part's jobs as it arrives. The baseline is
`NaiveLoop` below, which fetches every series with one query per job (concurrently, at the
operator's API concurrency) and feeds them to the same assembly and engine.
The baseline starts from the memory the batched run ended with (`--no-handover` to change that),
so its warm-up does not rewrite every status.

Decision latency: the real `plateau-operator` process (kopf, the loop, the clients) against the
emulator as a process, with TrainingJobs whose target is 0.5 and gracePeriod 0s. The exporter's
loss sits at 1.0 until a job is armed; the first scrape after that reports 0.4. The latency is
from the time that scrape was served to the time the emulator received the patch setting the
Job's spec.suspend to true (the emulator's request log). Jobs are armed one at a time, each after
a random wait, so the crossing falls at a random phase of the evaluation interval. With
`--latency-background N`, N more jobs run beside them and never stop, and the operator runs with
--status-interval 1s: every cycle writes their N statuses, and each stop competes with those writes.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import io
import json
import math
import os
import platform
import pickle
import pstats
import random
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import defaultdict
from contextlib import ExitStack
from pathlib import Path
from typing import Any, Iterator, Optional

from plateau import api

from plateau.prometheus import promql
from plateau.controller.config import Settings
from plateau.controller.loop import assemble, fetch
from plateau.controller.loop import cycle as loop_cycle
from plateau.controller.loop.context import CycleReport, JobContext, Metrics, OnPart
from plateau.controller.loop.cycle import Loop
from plateau.controller.loop.registry import Registry
from plateau.controller.heap import FrozenHeap
from plateau.controller.kube import Kube
from plateau.prometheus.client import PrometheusClient, PrometheusError
from plateau.controller.children import LABEL
from plateau_sidecar import protocol

from benchmarks.operator_support import BASE_REPORTS, FORECAST, job_keys

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
CYCLE_GOAL_S = 2.0
RSS_GOAL_MB = 400.0
PROMETHEUS_TIMEOUT = 60.0  # the operator's default is 10 s; a slow answer at 10,000 jobs is measured, not cut
ADMIN_TOKEN = "emulator-admin-token"  # tests.support.apiserver.ADMIN_TOKEN


# --- the two collectors ----------------------------------------------------------------------


class GcTimer:
    """Time spent in the cyclic garbage collector (gc.callbacks), which grows with the heap."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.full = 0  # generation-2 collections
        self._began = 0.0
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._began = time.perf_counter()
        else:
            self.seconds += time.perf_counter() - self._began
            self.full += info.get("generation") == 2


class TimedLoop:
    """The operator's loop, unchanged, with the phases of each cycle timed through its seams
    (the loop's Stages and its sidecar decoder).

    prepare: contexts and workload states; query: PromQL over HTTP and decoding; parse: the
    decoding alone (JSON body -> labels and values); assemble: series -> per-job summaries;
    plan: the plans made as each part of the metrics arrives, inside fetch; evaluate: the rest
    of the plans, status writes, phase gauges.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.loop = Loop(*args, **kwargs)
        self.marks: dict[str, float] = {}
        self.samples = 0
        self.query_seconds = 0.0
        self.parse_seconds = 0.0
        self.assemble_seconds = 0.0
        self.plan_seconds = 0.0
        decode = self.loop.decode_sidecar

        def timed(raw: bytes) -> list[tuple[Any, float]]:
            began = time.perf_counter()
            try:
                return decode(raw)
            finally:
                self.parse_seconds += time.perf_counter() - began

        self.loop.decode_sidecar = timed  # type: ignore[assignment]
        self.loop.stages = self.loop.stages._replace(
            fetch_metrics=self._fetch_metrics, query_sidecar=self._query_sidecar, assemble=self._assemble)

    async def cycle(self) -> CycleReport:
        self.marks = {"start": time.perf_counter()}
        self.samples, self.query_seconds, self.parse_seconds, self.assemble_seconds = 0, 0.0, 0.0, 0.0
        self.plan_seconds = 0.0
        report = await loop_cycle.cycle(self.loop)
        self.marks["end"] = time.perf_counter()
        return report

    def phases(self) -> dict[str, float]:
        m = self.marks
        return {"prepare": m["fetch"] - m["start"], "fetch": m["fetched"] - m["fetch"],
                "query": self.query_seconds, "parse": self.parse_seconds, "assemble": self.assemble_seconds,
                "plan": self.plan_seconds, "evaluate": m["end"] - m["fetched"]}

    async def _query_sidecar(self, loop: Loop, promql_text: str, report: CycleReport) -> list[tuple[Any, float]]:
        began = time.perf_counter()
        answer = await fetch.query_sidecar(loop, promql_text, report)
        self.query_seconds += time.perf_counter() - began
        self.samples += len(answer)
        return answer

    def _assemble(self, answer: list[tuple[Any, float]], wanted: set[tuple[str, str, str]],
                  pods: Optional[dict[tuple[str, str], set[str]]] = None) -> Any:
        began = time.perf_counter()
        try:
            return assemble.tracks(answer, wanted, pods)
        finally:
            self.assemble_seconds += time.perf_counter() - began

    async def _fetch_metrics(self, loop: Loop, jobs: list[JobContext], report: CycleReport, on_part: OnPart) -> Metrics:
        self.marks["fetch"] = time.perf_counter()

        def timed(jobs: list[JobContext], summaries: dict[tuple[str, str], Any]) -> None:
            began = time.perf_counter()
            try:
                on_part(jobs, summaries)
            finally:
                self.plan_seconds += time.perf_counter() - began

        try:
            return await self._collect(loop, jobs, report, timed)
        finally:
            self.marks["fetched"] = time.perf_counter()

    async def _collect(self, loop: Loop, jobs: list[JobContext], report: CycleReport, on_part: OnPart) -> Metrics:
        """Plateau's own batched fetch (plateau.controller.loop.fetch.metrics), unchanged."""
        return await fetch.metrics(loop, jobs, report, on_part)


def naive_query(namespace: str, name: str) -> str:
    """BASELINE: every sidecar series of one job."""
    return (f'{{__name__=~"plateau_(metric|track)_.*", {protocol.LABEL_TRAININGJOB}="{promql.escape_label_value(name)}", '
            f'namespace="{promql.escape_label_value(namespace)}"}}')


class NaiveLoop(TimedLoop):
    """BASELINE, not Plateau's code: the sidecar series fetched with one PromQL query per job.

    This is what per-object timers (one query each) amount to. The queries run concurrently,
    at most `settings.concurrency` at a time, through the same PrometheusClient; the samples go
    through the operator's own assembly, so only the querying differs from the batched cycle.
    """

    async def _collect(self, loop: Loop, jobs: list[JobContext], report: CycleReport, on_part: OnPart) -> Metrics:
        watched = [c for c in jobs if c.status.phase == api.Phase.RUNNING.value and c.rule]
        if not watched:
            return Metrics({}, None, defaultdict(set))
        limit = asyncio.Semaphore(loop.settings.concurrency)

        async def one(ctx: JobContext) -> list[tuple[Any, float]]:
            async with limit:
                return await loop.stages.query_sidecar(loop, naive_query(*ctx.key), report)

        try:
            results = await asyncio.gather(*(one(c) for c in watched))
        except PrometheusError as exc:
            report.errors.append(str(exc))
            return Metrics({}, (exc.reason, str(exc)), defaultdict(set))
        wanted = {(c.key[0], c.key[1], c.rule.name) for c in watched}  # type: ignore[union-attr]
        answer = [s for samples in results for s in samples]
        pods: dict[tuple[str, str], set[str]] = defaultdict(set)
        for labels, _ in answer:
            if labels.pod:
                pods[(labels.namespace, labels.trainingjob)].add(labels.pod)
        return Metrics(loop.stages.assemble(answer, wanted), None, pods)


# --- the worker: one loop in its own process ------------------------------------------------


def memory_mb() -> dict[str, float]:
    """VmRSS and VmHWM of this process, in MB."""
    fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
    return {k: int(fields[k].split()[0]) / 1024 for k in ("VmRSS", "VmHWM")}


async def load_registry(api_client: Any) -> Registry:
    """The registry as kopf's watch would fill it: every TrainingJob and every child Job, once."""
    from kubernetes import client

    registry = Registry()
    custom, batch = client.CustomObjectsApi(api_client), client.BatchV1Api(api_client)
    tjs = await asyncio.to_thread(custom.list_cluster_custom_object, api.GROUP, api.VERSION, api.PLURAL)
    for obj in tjs["items"]:
        registry.on_trainingjob({"type": "ADDED", "object": obj})
    raw = await asyncio.to_thread(batch.list_job_for_all_namespaces, label_selector=LABEL, _preload_content=False)
    for obj in json.loads(raw.data)["items"]:
        registry.on_child_job({"type": "ADDED", "object": {"apiVersion": "batch/v1", "kind": "Job", **obj}})
    return registry


async def run_worker(args: argparse.Namespace) -> dict[str, Any]:
    from plateau.controller.runtime import api_client

    before = memory_mb()
    client = api_client()  # as the operator builds it: $KUBECONFIG, default pool sizes
    registry = await load_registry(client)
    loaded = memory_mb()
    settings = Settings(prometheus_url=args.prometheus_url, leader_election=False,
                        status_interval=args.status_interval)
    cls = NaiveLoop if args.worker == "naive" else TimedLoop
    prometheus = PrometheusClient(settings.prometheus_url, timeout=PROMETHEUS_TIMEOUT)
    heap = FrozenHeap()  # the operator's GC policy (plateau.controller.runtime installs the same)
    heap.install()
    timed = cls(settings, registry, Kube(client), prometheus, heap=heap)
    if args.memory_in:  # what the batched run wrote: the baseline does not redo its write-all warm-up
        timed.loop.memory = pickle.loads(Path(args.memory_in).read_bytes())
    cycles = []
    profiler = cProfile.Profile() if args.profile else None
    gc_timer = GcTimer()
    for i in range(args.cycles + 1):
        if profiler is not None and i == 1:
            profiler.enable()
        gc_before, full_before = gc_timer.seconds, gc_timer.full
        wall, cpu = time.perf_counter(), time.process_time()
        report = await timed.cycle()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        cycles.append({"wall": wall, "cpu": cpu, **timed.phases(), "gc": gc_timer.seconds - gc_before,
                       "gc_full": gc_timer.full - full_before, "queries": report.queries,
                       "writes": report.writes, "jobs": report.jobs, "samples": timed.samples,
                       "memory": memory_mb(),
                       "errors": len(report.errors), "error": report.errors[0] if report.errors else ""})
        if i < args.cycles:
            await asyncio.sleep(args.pause)
    profile_text = ""
    if profiler is not None:
        profiler.disable()
        out = io.StringIO()
        stats = pstats.Stats(profiler, stream=out)
        stats.sort_stats("tottime").print_stats(25)
        stats.sort_stats("cumulative").print_stats(40)
        profile_text = out.getvalue()
    await prometheus.close()
    if args.memory_out:
        Path(args.memory_out).write_bytes(pickle.dumps(timed.loop.memory))
    with_metric = sum(1 for m in timed.loop.memory.values() if m.status.metric is not None)
    memory_end = memory_mb()
    # The heap policy's periodic full collection (every heap.full_every s), which the measured
    # cycles do not include: timed here, once.
    began = time.perf_counter()
    gc.unfreeze()
    gc.collect()
    full_gc = time.perf_counter() - began
    return {"collector": args.worker, "jobs": len(registry.trainingjobs), "cycles": cycles, "memory_before": before,
            "memory_loaded": loaded, "memory_end": memory_end, "jobs_with_metric": with_metric,
            "full_gc_s": full_gc, "full_gc_every_s": heap.full_every, "profile": profile_text}


# --- processes ---------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_of(pid: int) -> float:
    """VmHWM (peak resident memory) of another process, in MB; 0 if it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


class Child:
    """A helper process that prints `ready <url> ...` once it serves; stopped with SIGTERM."""

    def __init__(self, argv: list[str], log: Path, env: Optional[dict[str, str]] = None, ready: bool = True) -> None:
        self.argv = argv
        self.log_path = log
        self._log = log.open("wb")
        self.process = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE if ready else self._log,
                                        stderr=self._log, env=env)
        self.line = ""
        if ready:
            assert self.process.stdout is not None
            self.line = self.process.stdout.readline().decode().strip()
            if not self.line.startswith("ready "):
                self.stop()
                raise RuntimeError(f"{argv[:4]} did not start: {self.line!r}\n{log.read_text()[-3000:]}")

    @property
    def url(self) -> str:
        return self.line.split()[1]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()


def start_prometheus(workdir: Path, exporter_url: str, shards: int, scrape_interval: str) -> Any:
    sys.path.insert(0, str(ROOT))
    from tests.support.prometheus import PrometheusServer

    shutil.rmtree(workdir / "data", ignore_errors=True)  # old series would linger for 5 min of lookback
    server = PrometheusServer(workdir, scrape_interval=scrape_interval)
    address = exporter_url.removeprefix("http://")
    for shard in range(shards):
        server.add_target(address, job="plateau-sidecar", metrics_path=f"/metrics/{shard}")
    server.start(timeout=30)
    return server


def wait_for_series(prometheus: Any, jobs: int, timeout: float) -> None:
    """Until every job's reports counter is in Prometheus and has advanced at least twice."""
    deadline = time.monotonic() + timeout
    query = f'count({protocol.SERIES_REPORTS} >= {BASE_REPORTS + 2})'
    while True:
        try:
            have = prometheus.query_value(query) or 0
        except Exception:  # noqa: BLE001 (not up yet)
            have = 0
        if have >= jobs:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {have:.0f} of {jobs} jobs' series reached Prometheus within {timeout:.0f}s")
        time.sleep(0.5)


def run_worker_process(kind: str, kubeconfig: str, prometheus_url: str, cycles: int, pause: float,
                       status_interval: float, profile: bool, log: Path, timeout: float,
                       memory_in: str = "", memory_out: str = "") -> dict[str, Any]:
    argv = [PYTHON, "-m", "benchmarks.operator_bench", "--worker", kind, "--kubeconfig", kubeconfig,
            "--prometheus-url", prometheus_url, "--cycles", str(cycles), "--pause", str(pause),
            "--status-interval", str(status_interval)]
    if profile:
        argv += ["--profile", "1"]
    if memory_in:
        argv += ["--memory-in", memory_in]
    if memory_out:
        argv += ["--memory-out", memory_out]
    with log.open("wb") as err:
        done = subprocess.run(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=err, timeout=timeout,
                              env={**os.environ, "KUBECONFIG": kubeconfig})  # read when kubernetes is imported
    if done.returncode != 0:
        raise RuntimeError(f"worker {kind} failed (rc {done.returncode}):\n{log.read_text()[-3000:]}")
    return json.loads(done.stdout.decode().strip().splitlines()[-1])


def scale_run(n: int, args: argparse.Namespace, workdir: Path, forecast: bool = False) -> dict[str, Any]:
    """Batched, then naive, against one world of N jobs (with forecast rules, if `forecast`)."""
    workdir.mkdir(parents=True, exist_ok=True)
    kubeconfig = str(workdir / "kubeconfig")
    result: dict[str, Any] = {"jobs": n, "forecast": forecast}
    scenario = ["--forecast"] if forecast else []
    with ExitStack() as stack:
        began = time.perf_counter()
        exporter = Child([PYTHON, "-m", "benchmarks.operator_support", "exporter", "--jobs", str(n),
                          "--shard-size", str(args.shard_size), "--report-every", str(args.report_every), *scenario],
                         workdir / "exporter.log")
        stack.callback(exporter.stop)
        shards = int(exporter.line.split("shards=")[1])
        emulator = Child([PYTHON, "-m", "benchmarks.operator_support", "emulator", "--jobs", str(n),
                          "--kubeconfig-out", kubeconfig, *scenario], workdir / "emulator.log")
        stack.callback(emulator.stop)
        prometheus = start_prometheus(workdir, exporter.url, shards, f"{args.scrape_interval:g}s")
        stack.callback(prometheus.stop)
        wait_for_series(prometheus, n, timeout=60 + n / 100)
        result["setup_s"] = time.perf_counter() - began
        result["targets"] = shards
        for kind in ("batched", "naive"):
            if kind == "naive" and not args.naive:
                continue
            cycles = args.cycles if kind == "batched" else min(args.cycles, args.naive_cycles)
            profile = args.profile is not None and n == args.profile and kind == "batched"
            print(f"  N={n}{' (forecast)' if forecast else ''}: {kind} worker, 1 warm-up + {cycles} cycles ...",
                  file=sys.stderr, flush=True)
            memory = str(workdir / "memory.pickle")
            handover = {"memory_out": memory} if kind == "batched" else {"memory_in": memory} if args.handover else {}
            result[kind] = run_worker_process(kind, kubeconfig, prometheus.url, cycles, args.pause,
                                              args.status_interval, profile, workdir / f"worker-{kind}.log",
                                              timeout=args.worker_timeout, **handover)
        assert prometheus._process is not None
        result["prometheus_hwm_mb"] = rss_of(prometheus._process.pid)
        result["emulator_hwm_mb"] = rss_of(emulator.process.pid)
        result["exporter_hwm_mb"] = rss_of(exporter.process.pid)
    return result


# --- decision latency --------------------------------------------------------------------------


def _get(url: str, path: str) -> Any:
    request = urllib.request.Request(url + path, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


def _free_port_pair() -> int:
    """A port P with P+1 free too (the operator serves metrics on P and liveness on P+1)."""
    for _ in range(50):
        port = free_port()
        try:
            with socket.socket() as s:
                s.bind(("127.0.0.1", port + 1))
            return port
        except OSError:
            continue
    raise RuntimeError("no free port pair")


def latency_run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    workdir.mkdir(parents=True, exist_ok=True)
    kubeconfig = str(workdir / "kubeconfig")
    k = args.latency_repeats
    # The first k jobs are armed one after the other; the background jobs never stop.
    total = k + args.latency_background
    keys = job_keys(total, latency=True)[:k]
    rng = random.Random(args.seed)
    out: dict[str, Any] = {"repeats": [], "interval": args.latency_interval, "background": args.latency_background}
    with ExitStack() as stack:
        exporter = Child([PYTHON, "-m", "benchmarks.operator_support", "exporter", "--jobs", str(total), "--latency",
                          "--shard-size", str(total)], workdir / "exporter.log")
        stack.callback(exporter.stop)
        emulator = Child([PYTHON, "-m", "benchmarks.operator_support", "emulator", "--jobs", str(total), "--latency",
                          "--keep-log", "--kubeconfig-out", kubeconfig], workdir / "emulator.log")
        stack.callback(emulator.stop)
        prometheus = start_prometheus(workdir, exporter.url, 1, "1s")
        stack.callback(prometheus.stop)
        wait_for_series(prometheus, total, timeout=60)
        port = _free_port_pair()
        operator_argv = [str(Path(PYTHON).with_name("plateau-operator")), "--prometheus-url", prometheus.url,
                         "--interval", f"{args.latency_interval:g}s", "--no-leader-election",
                         "--namespaces", keys[0][0], "--metrics-port", str(port)]
        if args.latency_background:  # every background job's progress is due at every cycle
            operator_argv += ["--status-interval", "1s"]
        out["operator_command"] = shlex.join(operator_argv)
        operator = Child(operator_argv, workdir / "operator.log", env={**os.environ, "KUBECONFIG": kubeconfig},
                         ready=False)
        stack.callback(operator.stop)

        def tj(ns: str, name: str) -> dict[str, Any]:
            return _get(emulator.url, f"/apis/plateau.dev/v1alpha1/namespaces/{ns}/trainingjobs/{name}")

        # Until the loop has evaluated every job once and sees its metric.
        deadline = time.monotonic() + 60
        while not all(any(c.get("type") == "MetricsAvailable" and c.get("status") == "True"
                          for c in (tj(ns, name).get("status") or {}).get("conditions") or []) for ns, name in keys):
            if operator.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the operator did not evaluate the jobs:\n{operator.log_path.read_text()[-3000:]}")
            time.sleep(0.2)
        for ns, name in keys:
            time.sleep(rng.uniform(0, args.latency_interval))  # a random phase of the interval
            armed = time.time()
            urllib.request.urlopen(urllib.request.Request(f"{exporter.url}/arm?job={ns}/{name}", method="POST"),
                                   timeout=10).read()
            seen = None
            limit = time.monotonic() + 2 * args.latency_interval + 15
            while seen is None and time.monotonic() < limit:
                job = _get(emulator.url, f"/apis/batch/v1/namespaces/{ns}/jobs/{name}")
                if (job.get("spec") or {}).get("suspend"):
                    seen = time.time()
                else:
                    time.sleep(0.02)
            crossing = _get(exporter.url, "/crossings").get(f"{ns}/{name}")
            patches = [r for r in _get(emulator.url, "/_emulator/requests")
                       if r.get("verb") == "patch" and r.get("resource") == "jobs" and r.get("name") == name
                       and ((r.get("body") or {}).get("spec") or {}).get("suspend") is True]
            final = tj(ns, name).get("status") or {}
            out["repeats"].append({
                "job": f"{ns}/{name}", "armed": armed,
                "crossing": crossing["time"] if crossing else None,
                "suspend_patch": patches[0]["time"] if patches else None,
                "suspend_seen": seen, "phase": final.get("phase"), "reason": final.get("reason"),
            })
    return out


# --- reporting ---------------------------------------------------------------------------------


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else math.nan


def _steady(worker: dict[str, Any]) -> list[dict[str, Any]]:
    return worker["cycles"][1:]


def _workers(results: list[dict[str, Any]]) -> Iterator[tuple[dict[str, Any], str, dict[str, Any]]]:
    """(scale result, collector label, worker result) for each collector that ran."""
    for r in results:
        for kind, label in (("batched", "Plateau, batched"), ("naive", "BASELINE, 1 query/job")):
            if r.get(kind):
                yield r, label + (" + forecast" if r.get("forecast") else ""), r[kind]


def fold_cost(evaluations: int = 2000) -> dict[str, float]:
    """Microseconds a new evaluation costs the fold (fold.track), without and with a forecast rule:
    what the sidecar (and `plateau replay`, `plateau run`'s sidecar) pays per report. The fit is
    redone only when an evaluation arrives, so this is its whole cost; the operator reads the fit."""
    from plateau.engine.fold import Evaluation, track

    out = {}
    for label, spec in (("plain", {}), ("forecast", {"forecast": dict(FORECAST, horizon=10 * evaluations)})):
        rule = api.MetricRule.model_validate({"name": "val_loss", "patience": 100000, **spec})
        state = None
        began = time.perf_counter()
        for i in range(1, evaluations + 1):
            state = track(state, rule, (Evaluation(i, 0.2 + 1.0 / (1.0 + 0.01 * i)),))
        out[label] = (time.perf_counter() - began) / evaluations * 1e6
    return out


def forecast_rows(results: list[dict[str, Any]]) -> list[list[str]]:
    """Per job and cycle, the batched operator without and with forecast rules, from one run."""
    rows = []
    for r in results:
        w = r.get("batched")
        if not w:
            continue
        steady = [c for c in _steady(w) if c["writes"] == 0] or _steady(w)
        n = max(1, r["jobs"])
        wall, cpu = _median([c["wall"] for c in steady]), _median([c["cpu"] for c in steady])
        rows.append([f"{r['jobs']:,}", "forecast" if r.get("forecast") else "no forecast (baseline)",
                     f"{wall:.3f}", f"{wall / n * 1e6:.0f}", f"{cpu / n * 1e6:.0f}",
                     f"{_median([c['samples'] for c in steady]):.0f}"])
    return rows


FORECAST_HEADERS = ["jobs", "scenario", "cycle s", "wall us/job/cycle", "CPU us/job/cycle", "samples"]


def scale_rows(results: list[dict[str, Any]]) -> list[list[str]]:
    rows = []
    for r, label, w in _workers(results):
        first, steady = w["cycles"][0], _steady(w)
        walls = [c["wall"] for c in steady]
        quiet = [c["wall"] for c in steady if c["writes"] == 0]
        rows.append([
            f"{r['jobs']:,}", label,
            f"{_median([c['queries'] for c in steady]):.0f}",
            f"{first['wall']:.2f} ({first['writes']:,})",
            f"{_median(walls):.3f} [{min(walls):.3f}-{max(walls):.3f}]" if walls else "-",
            f"{_median(quiet):.3f}" if quiet else "-",
            f"{_median([c['fetch'] for c in steady]):.3f}",
            f"{_median([c['cpu'] for c in steady]):.3f}",
            "/".join(str(c["writes"]) for c in steady),
            f"{w['memory_end']['VmRSS']:.0f}",
            f"{w['memory_end']['VmHWM']:.0f}",
            f"{w['memory_before']['VmRSS']:.0f}",
        ])
    return rows


def phase_rows(results: list[dict[str, Any]]) -> list[list[str]]:
    rows = []
    for r, label, w in _workers(results):
        steady = [c for c in _steady(w) if c["writes"] == 0] or _steady(w)
        med = lambda key: _median([c[key] for c in steady])  # noqa: E731
        n = max(1, r["jobs"])
        rows.append([f"{r['jobs']:,}", label, f"{med('prepare'):.3f}", f"{med('fetch'):.3f}",
                     f"{med('parse'):.3f}", f"{med('assemble'):.3f}", f"{med('plan'):.3f}", f"{med('evaluate'):.3f}", f"{med('gc'):.3f} ({med('gc_full'):.0f})",
                     f"{med('wall'):.3f}", f"{med('cpu'):.3f}", f"{med('cpu') / n * 1e6:.0f}",
                     f"{_median([c['samples'] for c in steady]):.0f}"])
    return rows


PHASE_HEADERS = ["jobs", "collector", "prepare s", "fetch s (wall)", "parse_vector s", "assemble s", "plan s", "evaluate s", "GC s (full)",
                 "cycle s", "CPU s", "CPU us/job", "samples"]


HEADERS = ["jobs", "collector", "queries/cycle", "first cycle s (writes)", "cycle s median [min-max]",
           "no-write cycle s", "fetch s", "cycle CPU s", "writes per cycle", "RSS MB", "peak MB", "RSS at start MB"]


def table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    line = lambda cells: "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"  # noqa: E731
    return "\n".join([line(headers), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, rows)])


def goals(results: list[dict[str, Any]]) -> list[str]:
    lines = []
    for r in results:
        w = r.get("batched")
        if not w:
            continue
        steady = _steady(w)
        walls = [c["wall"] for c in steady]
        quiet = [c["wall"] for c in steady if c["writes"] == 0]
        mem = w["memory_end"]["VmHWM"]
        cycle = _median(walls)
        lines.append(
            f"N={r['jobs']:,}: cycle median {cycle:.3f}s {'<' if cycle < CYCLE_GOAL_S else '>='} {CYCLE_GOAL_S:g}s "
            f"({'met' if cycle < CYCLE_GOAL_S else 'MISSED'})"
            + (f", without status writes {_median(quiet):.3f}s" if quiet and len(quiet) != len(walls) else "")
            + f"; peak RSS {mem:.0f} MB {'<' if mem < RSS_GOAL_MB else '>='} {RSS_GOAL_MB:g} MB "
            f"({'met' if mem < RSS_GOAL_MB else 'MISSED'})"
        )
    return lines


def latency_report(lat: dict[str, Any]) -> str:
    interval = lat["interval"]
    rows, values = [], []
    for rep in lat["repeats"]:
        ok = rep["crossing"] is not None and rep["suspend_patch"] is not None
        value = rep["suspend_patch"] - rep["crossing"] if ok else math.nan
        if ok:
            values.append(value)
        seen = rep["suspend_seen"] - rep["crossing"] if ok and rep["suspend_seen"] else math.nan
        rows.append([rep["job"], f"{value:.3f}", f"{seen:.3f}", f"{rep['phase']}/{rep['reason']}"])
    text = table(["job", "crossing scrape -> suspend patch s", "-> suspend seen by poll s", "final phase/reason"], rows)
    goal = interval + 1.0
    if values:
        worst = max(values)
        load = f", {lat['background']} other jobs' status written every cycle" if lat["background"] else ""
        text += (f"\n\nDecision latency over {len(values)} repeats (interval {interval:g}s, gracePeriod 0s{load}): "
                 f"min {min(values):.3f}s, median {_median(values):.3f}s, max {worst:.3f}s; goal < interval + 1s "
                 f"= {goal:g}s: {'met' if worst < goal else 'MISSED'}")
    missing = len(lat["repeats"]) - len(values)
    if missing:
        text += f"\n{missing} repeat(s) never saw the suspend patch"
    return text


def environment(argv: list[str]) -> str:
    try:
        version = subprocess.run(["prometheus", "--version"], capture_output=True, text=True).stdout.splitlines()[0]
    except (OSError, IndexError):
        version = "prometheus: unknown"
    mem = next((line for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal")), "")
    load = os.getloadavg()
    return "\n".join([
        f"command: {shlex.join([Path(PYTHON).name, '-m', 'benchmarks.operator_bench', *argv])}",
        f"CPUs: os.cpu_count()={os.cpu_count()}, usable={len(os.sched_getaffinity(0))}; {mem.split(':')[1].strip()} RAM; "
        f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}",
        f"python {platform.python_version()} on {platform.platform()}; {version}",
    ])


def main(argv: Optional[list[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="python -m benchmarks.operator_bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", default="100,1000,10000", help="comma-separated numbers of running TrainingJobs")
    parser.add_argument("--cycles", type=int, default=5, help="measured cycles after the warm-up cycle")
    parser.add_argument("--naive-cycles", type=int, default=3, help="at most this many measured cycles for the baseline")
    parser.add_argument("--no-naive", dest="naive", action="store_false", help="skip the baseline")
    parser.add_argument("--forecast", action="store_true",
                        help="also run every N with forecast rules, and print the cost per job beside the plain run")
    parser.add_argument("--pause", type=float, default=2.0, help="seconds between cycles (new scrapes land)")
    parser.add_argument("--scrape-interval", type=float, default=2.0, help="Prometheus scrape interval, seconds")
    parser.add_argument("--report-every", type=int, default=1,
                        help="scrapes between two reports of a job (1: every job reports at every scrape, the worst case)")
    parser.add_argument("--shard-size", type=int, default=500, help="jobs per scrape target")
    parser.add_argument("--profile", type=int, default=None, metavar="N",
                        help="cProfile the batched cycles at N jobs and print the top functions")
    parser.add_argument("--status-interval", type=float, default=3600.0,
                        help="the operator's status_interval in the scale runs (default 3600 s, so that the "
                             "measured cycles are evaluation only; 30 is the operator's default)")
    parser.add_argument("--no-handover", dest="handover", action="store_false",
                        help="let the baseline start with an empty memory (it then rewrites every status first)")
    parser.add_argument("--latency-repeats", type=int, default=5)
    parser.add_argument("--latency-interval", type=float, default=5.0, help="the operator's --interval, seconds")
    parser.add_argument("--no-latency", dest="latency", action="store_false")
    parser.add_argument("--latency-background", type=int, default=0, metavar="N",
                        help="N more running jobs that never stop, their progress written at every cycle "
                             "(--status-interval 1s): each stop competes with N status writes")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--worker-timeout", type=float, default=1800.0)
    parser.add_argument("--quick", action="store_true", help="a small run: 50 and 200 jobs, 3 cycles, 3 latency repeats")
    parser.add_argument("--json", help="also write the raw results here")
    parser.add_argument("--workdir", help="keep logs and Prometheus data here (default: a temp dir)")
    # internal: one loop in this process
    parser.add_argument("--worker", choices=("batched", "naive"), help=argparse.SUPPRESS)
    parser.add_argument("--kubeconfig", help=argparse.SUPPRESS)
    parser.add_argument("--prometheus-url", help=argparse.SUPPRESS)
    parser.add_argument("--memory-in", help=argparse.SUPPRESS)
    parser.add_argument("--memory-out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        print(json.dumps(asyncio.run(run_worker(args))))
        return 0

    if args.quick:
        if "--jobs" not in " ".join(argv):
            args.jobs = "50,200"
        args.cycles = min(args.cycles, 3)
        args.latency_repeats = min(args.latency_repeats, 3)
    sizes = [int(x.replace("_", "")) for x in args.jobs.split(",") if x.strip()]
    with ExitStack() as stack:
        if args.workdir:
            root = Path(args.workdir)
        else:
            root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="plateau-operator-bench-")))
        results = []
        for n in sizes:
            print(f"N={n}: starting exporter, emulator and Prometheus ...", file=sys.stderr, flush=True)
            results.append(scale_run(n, args, root / f"jobs-{n}"))
            if args.forecast:
                print(f"N={n}: the same with forecast rules ...", file=sys.stderr, flush=True)
                results.append(scale_run(n, args, root / f"jobs-{n}-forecast", forecast=True))
        lat = None
        if args.latency:
            print("decision latency: starting the real plateau-operator ...", file=sys.stderr, flush=True)
            lat = latency_run(args, root / "latency")

    print("Plateau operator benchmark")
    print(environment(argv))
    print(f"settings: --cycles {args.cycles} measured cycles after 1 warm-up, {args.pause:g}s apart; Prometheus "
          f"scrape interval {args.scrape_interval:g}s, {args.shard_size} jobs per target, each job reports every "
          f"{args.report_every} scrape(s); status_interval "
          f"{args.status_interval:g}s (operator default {Settings().status_interval:g}s), concurrency "
          f"{Settings().concurrency}; Prometheus client timeout {PROMETHEUS_TIMEOUT:g}s (operator default "
          f"{Settings().prometheus_timeout:g}s); baseline starts from the batched run's memory: {args.handover}")
    print()
    print("Evaluation cycle (plateau.controller.loop.cycle) - the operator in its own process; RSS/peak = its VmRSS/VmHWM after the run")
    print(table(HEADERS, scale_rows(results)))
    print()
    print("Where a measured cycle's time goes (medians of the cycles without status writes): prepare = contexts and "
          "workload states; fetch = PromQL over HTTP (Prometheus' own time, transfer) + parse_vector (JSON decode, checks) + "
          "assemble + plan (the jobs planned as their part of the metrics arrives); evaluate = the other jobs' plans, "
          "status diff/writes, gauges; GC = cyclic garbage collector, inside the other phases")
    print(table(PHASE_HEADERS, phase_rows(results)))
    print()
    for r in results:
        extra = f"N={r['jobs']:,}: {r['targets']} scrape targets; setup {r['setup_s']:.0f}s; peak RSS of Prometheus " \
                f"{r['prometheus_hwm_mb']:.0f} MB, emulator {r['emulator_hwm_mb']:.0f} MB, exporter {r['exporter_hwm_mb']:.0f} MB"
        print(extra)
        for kind in ("batched", "naive"):
            w = r.get(kind)
            if w:
                errors = sum(c["errors"] for c in w["cycles"])
                samples = _median([c["samples"] for c in _steady(w)])
                print(f"  {kind}: samples/cycle {samples:.0f}; registry RSS {w['memory_loaded']['VmRSS'] - w['memory_before']['VmRSS']:.0f} MB; "
                      f"RSS/peak after loading {w['memory_loaded']['VmRSS']:.0f}/{w['memory_loaded']['VmHWM']:.0f} MB, "
                      f"after the warm-up {w['cycles'][0]['memory']['VmRSS']:.0f}/{w['cycles'][0]['memory']['VmHWM']:.0f} MB; "
                      f"jobs with a metric in status {w['jobs_with_metric']}/{w['jobs']}; "
                      f"full GC every {w['full_gc_every_s']:.0f}s takes {w['full_gc_s']:.2f}s; errors {errors}"
                      + (f" (first: {next(c['error'] for c in w['cycles'] if c['error'])[:160]})" if errors else ""))
    print()
    if args.forecast:
        fold = fold_cost()
        print("Forecast rule (stop.metric.forecast): the batched operator per job and cycle, each N measured without "
              "and with forecast rules in this run (the operator reads the fit the sidecar exports: 4 more series a "
              "job, one more rule to decide)")
        print(table(FORECAST_HEADERS, forecast_rows(results)))
        print(f"The fold, per new evaluation (in the sidecar, or replay): {fold['plain']:.1f} us without, "
              f"{fold['forecast']:.1f} us with the forecast's refit; re-fitted only when an evaluation arrives")
        print()
    print("Goals (batched): cycle < 2 s and RSS < 400 MB at 10,000 jobs")
    for line in goals(results):
        print("  " + line)
    for r in results:
        if r.get("batched", {}).get("profile"):
            print()
            print(f"cProfile of the batched measured cycles at N={r['jobs']:,} (wall time includes awaiting the "
                  f"API and Prometheus):")
            print(r["batched"]["profile"])
    if lat is not None:
        print()
        print("Decision latency: the real plateau-operator process, emulator process, real Prometheus (scrape 1s)")
        print(f"operator: {lat['operator_command']}")
        print(latency_report(lat))
    if args.json:
        Path(args.json).write_text(json.dumps({"scale": results, "latency": lat}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
