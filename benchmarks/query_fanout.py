"""The queries a cycle makes per spec (one per distinct gpuIdle window, one per custom query),
against a real Prometheus, one at a time (the baseline: how the loop ran them before) and
`query_concurrency` at a time, side by side in the same run. A second baseline reads each
window in two queries, its busiest sample and its start apart, as the loop did before.

    .venv/bin/python -m benchmarks.query_fanout [--windows 200] [--custom 200] [--repeats 5]

Prometheus scrapes a dcgm-exporter-shaped target with two GPU pods per job. Each gpuIdle job
has a window of its own (10m, 10m1s, ...), the worst case a namespace's users can make; each
workloadRef job has its own PromQL. Printed: the wall time of `fetch.gpu` and of the custom
queries' part of `fetch.metrics`, median [min-max] over the repeats, and the queries made.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from benchmarks import operator_support as support
from plateau import api
from plateau.api.durations import format_duration
from plateau.controller.config import Settings
from plateau.controller.loop import fetch
from plateau.controller.loop.context import CycleReport, JobContext
from plateau.controller.loop.cycle import Loop
from plateau.controller.loop.registry import Registry
from plateau.prometheus import promql
from plateau.prometheus.client import PrometheusClient
from tests.support.dcgm import DcgmExporter
from tests.support.prometheus import PrometheusServer

NAMESPACE = "bench"
WINDOWS, WINDOWS_APART = "gpuIdle windows", "gpuIdle windows, two queries each (baseline)"


def gpu_job(index: int) -> JobContext:
    body = support.trainingjob(NAMESPACE, f"gpu-{index}", latency=False)
    body["spec"]["stop"]["gpuIdle"] = {"below": 0.05, "for": f"{600 + index}s"}
    spec = api.TrainingJobSpec.model_validate(body["spec"])
    status = api.TrainingJobStatus.model_validate(support.running_status(f"gpu-{index}", time.time()))
    return JobContext(body, spec, spec.stop, status)


def custom_job(index: int) -> JobContext:
    body = {"metadata": {"namespace": NAMESPACE, "name": f"ref-{index}", "uid": f"u{index}", "generation": 1},
            "spec": {"workloadRef": {"apiVersion": "batch/v1", "kind": "Job", "name": f"ref-{index}"},
                     "metrics": {"queries": {"val_loss": 'max(DCGM_FI_DEV_GPU_UTIL{pod=~"$name-.*"})'}},
                     "stop": {"metric": {"name": "val_loss", "patience": 3}}}}
    spec = api.TrainingJobSpec.model_validate(body["spec"])
    return JobContext(body, spec, spec.stop, api.TrainingJobStatus.model_validate({"phase": "Running"}))


async def timed(repeats: int, run: Callable[[CycleReport], Awaitable[Any]]) -> tuple[list[float], int]:
    times, report = [], CycleReport()
    for _ in range(repeats):
        report = CycleReport()
        started = time.perf_counter()
        await run(report)
        times.append(time.perf_counter() - started)
    return times, report.queries


async def two_queries_a_window(loop: Loop, jobs: list[JobContext], report: CycleReport) -> None:
    """The baseline: each window's two reads in queries of their own, within the loop's bound."""
    d = loop.settings.dcgm
    windows = {format_duration(c.stop.gpu_idle.for_.seconds) for c in jobs if c.stop.gpu_idle}
    await asyncio.gather(*(fetch.query(loop, read(d, [NAMESPACE], w), report)
                           for w in windows for read in (promql.gpu_max_query, promql.gpu_since_query)))


async def measure(url: str, concurrency: int, gpu_jobs: list[JobContext], custom_jobs: list[JobContext],
                  repeats: int) -> dict[str, tuple[list[float], int]]:
    prometheus = PrometheusClient(url)
    loop = Loop(Settings(query_concurrency=concurrency), Registry(), kube=None, prometheus=prometheus)  # type: ignore[arg-type]
    pods = {c.key: {f"{c.key[1]}-0", f"{c.key[1]}-1"} for c in gpu_jobs}
    try:
        gpu = await timed(repeats, lambda r: fetch.gpu(loop, gpu_jobs, pods, time.time(), r))
        apart = await timed(repeats, lambda r: two_queries_a_window(loop, gpu_jobs, r))
        custom = await timed(repeats, lambda r: fetch.metrics(loop, custom_jobs, r, lambda *_: None))
    finally:
        await prometheus.close()
    return {WINDOWS: gpu, WINDOWS_APART: apart, "custom queries": custom}


def row(name: str, concurrency: int, times: list[float], queries: int) -> str:
    return (f"| {name} | {'1 (baseline)' if concurrency == 1 else concurrency} | {statistics.median(times):.3f} "
            f"[{min(times):.3f}-{max(times):.3f}] | {queries} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--windows", type=int, default=200, help="gpuIdle jobs, each with a window of its own")
    parser.add_argument("--custom", type=int, default=200, help="workloadRef jobs, each with its own PromQL")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=Settings().query_concurrency)
    args = parser.parse_args()
    gpu_jobs = [gpu_job(i) for i in range(args.windows)]
    custom_jobs = [custom_job(i) for i in range(args.custom)]
    exporter = DcgmExporter()
    with tempfile.TemporaryDirectory() as workdir:
        server = PrometheusServer(Path(workdir))
        try:
            for job in gpu_jobs + custom_jobs:
                for replica in (0, 1):
                    exporter.set(f"{job.key[1]}-{replica}", NAMESPACE, 0.01, 0.01)
            server.add_target(exporter.address, job="dcgm")
            server.start(timeout=30)
            server.wait_for("count(DCGM_FI_PROF_GR_ENGINE_ACTIVE)", lambda v: v == 2 * (args.windows + args.custom),
                            timeout=60)
            results = {c: asyncio.run(measure(server.url, c, gpu_jobs, custom_jobs, args.repeats))
                       for c in (1, args.concurrency)}
        finally:
            server.stop()
            exporter.close()
    print(f"{args.windows} gpuIdle jobs with distinct windows, {args.custom} custom-query jobs; "
          f"{args.repeats} repeats; seconds, median [min-max]")
    print("| part of the cycle | queries at a time | seconds | queries |")
    print("| --- | --- | --- | --- |")
    for name in (WINDOWS, WINDOWS_APART, "custom queries"):
        for concurrency, parts in results.items():
            print(row(name, concurrency, *parts[name]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
