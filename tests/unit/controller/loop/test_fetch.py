"""What the loop reads (fetch) and makes of it (assemble), with several pods and several sidecar
replicas: the GPU window is the busiest pod's, and the track is the replica that reports (the
one with the most reports). Also a workloadRef's own PromQL."""

from __future__ import annotations

import asyncio
import json
from typing import Any, Callable, NamedTuple, Optional

from benchmarks import operator_support as support
from plateau import api
from plateau.controller.config import Settings
from plateau.controller.loop import assemble, fetch
from plateau.controller.loop.context import CycleReport, JobContext
from plateau.controller.loop.cycle import Loop
from plateau.controller.loop.registry import Registry
from plateau.controller.metrics import PROMETHEUS_ERRORS
from plateau.prometheus.client import PrometheusError, Sample
from plateau.prometheus.promql import GPU_READ_LABEL, GPU_READS, parse_vector
from plateau.engine.rules import GpuWindow
from plateau.prometheus.summaries import SidecarTrack
from plateau_sidecar import protocol as p

NOW = 1_800_000_000.0
NS, NAME = "team-a", "resnet"


class Labels(NamedTuple):
    """The labels the loop reads of a sidecar series (promql.SidecarDecoder's struct)."""

    name: str
    namespace: str = NS
    trainingjob: str = NAME
    metric: str = support.METRIC
    pod: str = ""
    instance: str = ""


def replica(pod: str, reports: int, last: float, spec_key: int) -> list[tuple[Labels, float]]:
    """One sidecar replica's series: its report counter and a track of `reports` evaluations."""
    values = {p.SERIES_REPORTS: reports, p.SERIES_VALUE: last, p.SERIES_STEP: reports, p.SERIES_TRACK_SPEC: spec_key,
              "plateau_track_evaluations": reports, "plateau_track_best": last, "plateau_track_best_step": reports}
    return [(Labels(name, pod=pod, instance=f"{pod}:9090"), float(v)) for name, v in values.items()]


def test_the_track_is_the_reporting_replicas_whatever_the_order() -> None:
    """Two sidecars of one job (a trainer with two pods, only rank 0 reports much): the read is
    the replica with the most reports, not the first or the last one in the answer."""
    busy, quiet = replica("resnet-0", 40, 0.25, 7), replica("resnet-1", 3, 0.9, 7)
    wanted = {(NS, NAME, support.METRIC)}
    for answer in (busy + quiet, quiet + busy):
        pods: dict[tuple[str, str], set[str]] = {(NS, NAME): set()}
        reads = assemble.tracks(answer, wanted, pods)  # type: ignore[arg-type]
        read = reads[(NS, NAME)]
        assert read.reports == 40 and read.current is not None
        assert (read.current.evaluations, read.current.last) == (40, 0.25)
        assert pods[(NS, NAME)] == {"resnet-0", "resnet-1"}


def test_series_of_other_jobs_and_metrics_are_not_read() -> None:
    other_job = [(l._replace(trainingjob="other"), v) for l, v in replica("other-0", 99, 0.1, 7)]
    other_metric = [(l._replace(metric="accuracy"), v) for l, v in replica("resnet-0", 99, 0.1, 7)]
    reads = assemble.tracks(other_job + other_metric + replica("resnet-0", 5, 0.5, 7),  # type: ignore[arg-type]
                                {(NS, NAME, support.METRIC)})
    assert list(reads) == [(NS, NAME)] and reads[(NS, NAME)].reports == 5


# --- through the loop's fetch, with a fake Prometheus -------------------------------------------------------


class FakePrometheus:
    """Answers each query with the samples of the first rule whose text the query contains."""

    def __init__(self, rules: list[tuple[str, list[Sample]]]) -> None:
        self.rules = rules
        self.queries: list[str] = []

    async def query(self, promql: str, at: Optional[float] = None, decode: Callable[[bytes], Any] = parse_vector,
                    max_bytes: Optional[int] = None) -> Any:
        self.queries.append(promql)
        samples = next((s for text, s in self.rules if text in promql), [])
        result = [{"metric": s.labels, "value": [s.timestamp, repr(s.value)]} for s in samples]
        return decode(json.dumps({"status": "success", "data": {"resultType": "vector", "result": result}}).encode())


def context(stop: dict[str, Any], status: Optional[dict[str, Any]] = None) -> JobContext:
    body = support.trainingjob(NS, NAME, latency=False)
    body["metadata"].update(uid="u1", generation=1)
    body["spec"]["stop"] = {**body["spec"]["stop"], **stop}
    spec = api.TrainingJobSpec.model_validate(body["spec"])
    return JobContext(body, spec, spec.stop, api.TrainingJobStatus.model_validate(status or support.running_status(NAME, NOW)))


def gpu(pod: str, value: float, namespace: str = NS) -> Sample:
    return Sample({"namespace": namespace, "pod": pod}, value, NOW)


def window_reads(highest: list[Sample], since: list[Sample]) -> list[tuple[str, list[Sample]]]:
    """The fake's rule for a window query: one answer holding both reads, each sample labelled
    by its read as the query's label_replace labels it."""
    return [("label_replace", [Sample({**s.labels, GPU_READ_LABEL: read}, s.value, s.timestamp)
                               for read, samples in zip(GPU_READS, (highest, since), strict=True) for s in samples])]


async def test_the_gpu_window_is_the_busiest_pods_and_covers_what_every_pod_covers() -> None:
    """gpuIdle means every GPU of the job is idle: one busy pod keeps the job busy. The window
    is known only as far back as the pod whose series began last."""
    highest = [gpu("resnet-0", 0.02), gpu("resnet-1", 0.85), gpu("resnet-2", 0.01),
               gpu("other-0", 0.95),  # another job's pod
               gpu("resnet-1", 0.99, namespace="team-b")]  # a pod of the same name elsewhere
    since = [gpu("resnet-0", NOW - 900), gpu("resnet-1", NOW - 300), gpu("resnet-2", NOW - 700)]
    prometheus = FakePrometheus(window_reads(highest, since))
    loop = Loop(Settings(), Registry(), kube=None, prometheus=prometheus)  # type: ignore[arg-type]
    ctx = context({"gpuIdle": {"below": 0.05, "for": "10m"}})
    pods = {(NS, NAME): {"resnet-0", "resnet-1", "resnet-2"}}
    windows, error = await fetch.gpu(loop, [ctx], pods, NOW, CycleReport())  # type: ignore[arg-type]
    assert error is None and windows == {(NS, NAME): GpuWindow(0.85, 300.0)}
    assert len(prometheus.queries) == 1  # both reads of the window in one round trip

    quiet = {(NS, NAME): {"resnet-0", "resnet-2"}}  # the busy pod gone: now idle
    windows, _ = await fetch.gpu(loop, [ctx], quiet, NOW, CycleReport())  # type: ignore[arg-type]
    assert windows == {(NS, NAME): GpuWindow(0.02, 700.0)}


async def test_a_job_whose_pods_have_no_gpu_series_has_no_window() -> None:
    prometheus = FakePrometheus(window_reads([gpu("other-0", 0.0)], [gpu("other-0", NOW)]))
    loop = Loop(Settings(), Registry(), kube=None, prometheus=prometheus)  # type: ignore[arg-type]
    ctx = context({"gpuIdle": {"below": 0.05, "for": "10m"}})
    windows, error = await fetch.gpu(loop, [ctx], {(NS, NAME): {"resnet-0"}}, NOW, CycleReport())  # type: ignore[arg-type]
    assert windows == {} and error is None  # unknown, never idle


async def test_a_pod_without_gpu_series_leaves_the_window_unknown_and_is_named() -> None:
    """A live pod whose dcgm-exporter is down may be the busy one: the window names it, and
    the job is not judged on the pods that do have series."""
    prometheus = FakePrometheus(window_reads([gpu("resnet-0", 0.01)], [gpu("resnet-0", NOW - 1200)]))
    loop = Loop(Settings(), Registry(), kube=None, prometheus=prometheus)  # type: ignore[arg-type]
    ctx = context({"gpuIdle": {"below": 0.05, "for": "10m"}})
    pods = {(NS, NAME): {"resnet-0", "resnet-1"}}
    windows, error = await fetch.gpu(loop, [ctx], pods, NOW, CycleReport())  # type: ignore[arg-type]
    assert error is None and windows == {(NS, NAME): GpuWindow(0.01, 1200.0, ("resnet-1",))}


async def test_the_report_counter_is_the_reporting_replicas() -> None:
    """The counter query finds news by the replica with the most reports: a quiet replica's
    lower count must not read as news (a full fetch) for a job whose reporter stood still."""
    ctx = context({})
    spec_key = ctx.spec_key
    assert spec_key is not None
    status = support.running_status(NAME, NOW)
    status["metric"] = {"name": support.METRIC, "sidecarReports": 40, "specKey": spec_key}
    ctx = context({}, status)
    counters = [Sample({"__name__": p.SERIES_REPORTS, "namespace": NS, "trainingjob": NAME, "metric": support.METRIC,
                        "pod": pod, "instance": f"{pod}:9090"}, reports, NOW) for pod, reports in
                (("resnet-0", 40), ("resnet-1", 3))]
    prometheus = FakePrometheus([("plateau_metric_reports_total\"", counters)])
    loop = Loop(Settings(), Registry(), kube=None, prometheus=prometheus)  # type: ignore[arg-type]
    parts: list[Any] = []
    reads, pods = await fetch.sidecar_tracks(loop, [ctx], CycleReport(), lambda jobs, s: parts.append(s))
    assert reads == {(NS, NAME): SidecarTrack(40, spec_key, None)}  # nothing new: no track to fold
    assert len(prometheus.queries) == 1 and parts == []  # and no full fetch
    assert pods[(NS, NAME)] == {"resnet-0", "resnet-1"}


async def test_gpu_queries_are_counted_and_a_failed_one_makes_every_window_unknown() -> None:
    prometheus = FakePrometheus(window_reads([gpu("resnet-0", 0.5)], [gpu("resnet-0", NOW - 60)]))
    loop = Loop(Settings(), Registry(), kube=None, prometheus=prometheus)  # type: ignore[arg-type]
    ctx = context({"gpuIdle": {"below": 0.05, "for": "10m"}})
    report = CycleReport()
    await fetch.gpu(loop, [ctx], {(NS, NAME): {"resnet-0"}}, NOW, report)  # type: ignore[arg-type]
    assert report.queries == 1

    async def failing(promql: str, **_: Any) -> Any:
        raise PrometheusError("Timeout", "query timed out")

    prometheus.query = failing  # type: ignore[method-assign]
    errors = PROMETHEUS_ERRORS.labels(reason="Timeout")
    before = errors._value.get()
    windows, error = await fetch.gpu(loop, [ctx], {(NS, NAME): {"resnet-0"}}, NOW, report)  # type: ignore[arg-type]
    assert windows == {} and error == ("Timeout", "query timed out")
    assert errors._value.get() == before + 1 and report.errors == ["query timed out"]


# --- a workloadRef's own PromQL ---------------------------------------------------------------------------


def custom_context(metric: Optional[dict[str, Any]] = None) -> JobContext:
    body = {"metadata": {"namespace": NS, "name": NAME, "uid": "u2", "generation": 1},
            "spec": {"workloadRef": {"apiVersion": "batch/v1", "kind": "Job", "name": "nightly"},
                     "metrics": {"queries": {"val_loss": 'max(loss{namespace="$namespace", tj="$name"})'}},
                     "stop": {"metric": {"name": "val_loss", "patience": 3}}}}
    spec = api.TrainingJobSpec.model_validate(body["spec"])
    status = {"phase": "Running", **({"metric": metric} if metric else {})}
    return JobContext(body, spec, spec.stop, api.TrainingJobStatus.model_validate(status))


async def test_a_workload_refs_query_is_read_for_its_job_and_each_new_value_is_one_evaluation() -> None:
    prometheus = FakePrometheus([('tj="resnet"', [Sample({}, 0.7, 1234.0)])])
    loop = Loop(Settings(), Registry(), kube=None, prometheus=prometheus)  # type: ignore[arg-type]
    ctx = custom_context()
    read = await fetch.custom_metric(loop, ctx, CycleReport())
    assert read is not None and read.reports == 1 and read.spec_key == ctx.spec_key
    assert read.current is not None and (read.current.evaluations, read.current.last, read.current.last_step) == (1, 0.7, 1234)
    assert len(prometheus.queries) == 1 and 'namespace="team-a"' in prometheus.queries[0]  # $namespace and $name
    same = custom_context({"name": "val_loss", "last": 0.7, "sidecarReports": 1})  # the value read last time
    assert await fetch.custom_metric(loop, same, CycleReport()) == SidecarTrack(1, ctx.spec_key, None)


async def test_a_workload_refs_query_that_is_not_one_series_is_no_read() -> None:
    two = [Sample({"pod": "a"}, 0.7, 1.0), Sample({"pod": "b"}, 0.8, 1.0)]
    for samples in ([], two):
        loop = Loop(Settings(), Registry(), kube=None,  # type: ignore[arg-type]
                    prometheus=FakePrometheus([("loss", samples)]))
        assert await fetch.custom_metric(loop, custom_context(), CycleReport()) is None


# --- queries made per spec run concurrently, within a bound ------------------------------------------------


class SlowPrometheus(FakePrometheus):
    """Each query takes `seconds`; records the most queries in flight at once."""

    def __init__(self, rules: list[tuple[str, list[Sample]]], seconds: float = 0.05) -> None:
        super().__init__(rules)
        self.seconds, self.in_flight, self.most = seconds, 0, 0

    async def query(self, promql: str, **kwargs: Any) -> Any:
        self.in_flight += 1
        self.most = max(self.most, self.in_flight)
        try:
            await asyncio.sleep(self.seconds)
            return await super().query(promql, **kwargs)
        finally:
            self.in_flight -= 1


async def test_distinct_gpu_windows_are_read_concurrently_within_the_bound() -> None:
    prometheus = SlowPrometheus(window_reads([gpu("resnet-0", 0.01)], [gpu("resnet-0", NOW - 900)]))
    loop = Loop(Settings(query_concurrency=3), Registry(), kube=None, prometheus=prometheus)  # type: ignore[arg-type]
    jobs = [context({"gpuIdle": {"below": 0.05, "for": f"{600 + i}s"}}) for i in range(10)]
    for i, ctx in enumerate(jobs):  # ten jobs, one pod name each, ten distinct windows
        ctx.key = (NS, f"job-{i}")
    pods = {ctx.key: {"resnet-0"} for ctx in jobs}
    report = CycleReport()
    windows, error = await fetch.gpu(loop, jobs, pods, NOW, report)  # type: ignore[arg-type]
    assert error is None and set(windows) == {ctx.key for ctx in jobs}
    assert report.queries == len(prometheus.queries) == 10 and prometheus.most == 3
    assert {q.split("[")[1].split("]")[0] for q in prometheus.queries if "max_over_time" in q} == {
        f"{10 + i // 60}m{i % 60}s" if i % 60 else f"{10 + i // 60}m" for i in range(10)}


async def test_custom_queries_run_concurrently_within_the_bound_and_one_failing_fails_alone() -> None:
    class OneFails(SlowPrometheus):
        async def query(self, promql: str, **kwargs: Any) -> Any:
            if 'tj="job-3"' in promql:
                raise PrometheusError("Timeout", "query timed out")
            return await super().query(promql, **kwargs)

    prometheus = OneFails([("loss", [Sample({}, 0.5, 1.0)])])
    loop = Loop(Settings(query_concurrency=4), Registry(), kube=None, prometheus=prometheus)  # type: ignore[arg-type]
    jobs = []
    for i in range(12):
        ctx = custom_context()
        ctx.body["metadata"]["name"] = f"job-{i}"
        ctx.key = (NS, f"job-{i}")
        jobs.append(ctx)
    metrics = await fetch.metrics(loop, jobs, CycleReport(), lambda *_: None)
    assert set(metrics.tracks) == {ctx.key for ctx in jobs} - {(NS, "job-3")}
    assert jobs[3].query_error == ("Timeout", "query timed out") and prometheus.most == 4


async def test_a_failing_window_query_cancels_the_others_rather_than_wait_for_each() -> None:
    """Prometheus timing out: the first failure leaves every window unknown, and the cycle does
    not go on to ask (and wait for) the other windows' queries."""
    class Down(SlowPrometheus):
        async def query(self, promql: str, **kwargs: Any) -> Any:
            self.queries.append(promql)
            await asyncio.sleep(self.seconds)
            raise PrometheusError("Timeout", "query timed out")

    prometheus = Down([], seconds=0.05)
    loop = Loop(Settings(query_concurrency=2), Registry(), kube=None, prometheus=prometheus)  # type: ignore[arg-type]
    jobs = [context({"gpuIdle": {"below": 0.05, "for": f"{600 + i}s"}}) for i in range(50)]
    for i, ctx in enumerate(jobs):
        ctx.key = (NS, f"job-{i}")
    windows, error = await fetch.gpu(loop, jobs, {ctx.key: {"p"} for ctx in jobs}, NOW, CycleReport())  # type: ignore[arg-type]
    assert windows == {} and error == ("Timeout", "query timed out")
    assert asyncio.all_tasks() == {asyncio.current_task()}  # no query left running behind the cycle
    await asyncio.sleep(0.2)
    assert len(prometheus.queries) < 10  # those in flight at the first failure; not the other 90 and more


async def test_a_cycle_cancelled_while_it_reads_gpu_windows_leaves_no_query_running() -> None:
    prometheus = SlowPrometheus(window_reads([], []), seconds=0.5)
    loop = Loop(Settings(query_concurrency=2), Registry(), kube=None, prometheus=prometheus)  # type: ignore[arg-type]
    jobs = [context({"gpuIdle": {"below": 0.05, "for": f"{600 + i}s"}}) for i in range(10)]
    for i, ctx in enumerate(jobs):
        ctx.key = (NS, f"job-{i}")
    read = asyncio.ensure_future(fetch.gpu(loop, jobs, {ctx.key: {"p"} for ctx in jobs}, NOW, CycleReport()))  # type: ignore[arg-type]
    await asyncio.sleep(0.1)
    read.cancel()
    await asyncio.gather(read, return_exceptions=True)
    assert asyncio.all_tasks() == {asyncio.current_task()} and prometheus.in_flight == 0
