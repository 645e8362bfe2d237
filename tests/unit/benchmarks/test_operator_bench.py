"""Smoke tests of the operator benchmark's own machinery (benchmarks/operator_bench.py and
benchmarks/operator_support.py): the synthetic exporter's exposition, the seeded objects, and the
batched-vs-naive query counting at a tiny N, with Prometheus answered from the exporter's text."""

from __future__ import annotations

import asyncio
import json
import re
import sys
from pathlib import Path
from typing import Any, Callable, Optional

import pytest
from kubernetes import config as kube_config
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))  # "benchmarks" is a folder of the repo, not an installed package

from benchmarks import operator_bench as bench  # noqa: E402
from benchmarks import operator_support as support  # noqa: E402
from plateau import api  # noqa: E402
from plateau.prometheus import promql  # noqa: E402
from plateau.controller.config import Settings  # noqa: E402
from plateau.controller.loop.fetch import FETCH_PARTS  # noqa: E402
from plateau.controller.loop.registry import Registry  # noqa: E402
from plateau.prometheus.client import PrometheusError, Sample  # noqa: E402
from plateau.prometheus.promql import parse_vector  # noqa: E402
from plateau.engine.rules import Observation, decide  # noqa: E402
from plateau.prometheus.summaries import TRACK_READ_SERIES, track_from_series  # noqa: E402
from plateau_sidecar import protocol as p  # noqa: E402

SERIES = {series for series, _ in support.families(forecast=False)}
FETCHED = [s for s in TRACK_READ_SERIES if s in SERIES]  # what the operator reads that the exporter has


def parse(exposition: bytes) -> dict[tuple[str, str, str], dict[str, float]]:
    """(namespace, trainingjob, series) -> {"value": v, **labels}; checks the label names."""
    out: dict[tuple[str, str, str], dict[str, float]] = {}
    for family in text_string_to_metric_families(exposition.decode()):
        for s in family.samples:
            assert set(s.labels) == {p.LABEL_METRIC, p.LABEL_TRAININGJOB, "namespace", "pod"}, s
            assert s.labels[p.LABEL_METRIC] == support.METRIC
            assert s.labels["pod"] == support.pod_name(s.labels[p.LABEL_TRAININGJOB])
            out[(s.labels["namespace"], s.labels[p.LABEL_TRAININGJOB], s.name)] = s.value
    return out


def test_exporter_serves_every_sidecar_series_and_they_advance() -> None:
    keys = support.job_keys(7)
    assert len({ns for ns, _ in keys}) == support.SCALE_NAMESPACES
    shard = support.Shard(keys, latency=False)
    first, second = parse(shard.render()), parse(shard.render())
    assert len(first) == len(keys) * len(SERIES)
    assert {series for _, _, series in first} == SERIES
    for ns, name in keys:
        reports = (ns, name, p.SERIES_REPORTS)
        assert second[reports] == first[reports] + 1  # one more report per scrape
        assert second[(ns, name, p.SERIES_VALUE)] < first[(ns, name, p.SERIES_VALUE)]  # the loss falls
        assert second[(ns, name, "plateau_track_best")] == second[(ns, name, p.SERIES_VALUE)]
        assert second[(ns, name, "plateau_track_evaluations")] == second[reports]
        assert second[(ns, name, "plateau_track_since_improvement")] == 0  # every report improves


def test_the_forecast_scenario_exports_a_fit_the_engine_reads_and_goes_on_with() -> None:
    keys = support.job_keys(3)
    served = parse(support.Shard(keys, latency=False, forecast=True).render())
    stop = api.StopSpec.model_validate(support.trainingjob("", "", latency=False, forecast=True)["spec"]["stop"])
    for key in keys:
        read = track_from_series({series: v for (ns, name, series), v in served.items() if (ns, name) == key}, support.METRIC)
        assert read is not None and read.current is not None and read.spec_key == support.spec_key_of(
            support.trainingjob("", "", latency=False, forecast=True))
        assert read.current.forecast_gain is not None and read.current.forecast_gain > 0
        converged = next(o for o in decide(stop, Observation(metric=read.current)).outcomes if o.reason == api.Reason.CONVERGED)
        assert converged.fired is False  # far more gain ahead than minGain: no scale job stops


def test_exporter_crosses_the_target_at_the_first_scrape_after_arming() -> None:
    keys = support.job_keys(2, latency=True)
    exporter = support.Exporter(keys, shard_size=10, latency=True)
    shard = exporter.shards[0]
    before = parse(shard.render())
    assert all(before[(ns, name, p.SERIES_VALUE)] == 1.0 for ns, name in keys)
    exporter.arm(keys[0])
    crossed = parse(shard.render())
    assert crossed[(*keys[0], p.SERIES_VALUE)] == 0.4 < support.TARGET
    assert crossed[(*keys[0], "plateau_track_best")] == 0.4
    assert crossed[(*keys[0], "plateau_track_best_step")] == crossed[(*keys[0], p.SERIES_STEP)]
    assert crossed[(*keys[1], p.SERIES_VALUE)] == 1.0
    assert list(exporter.crossings()) == [f"{keys[0][0]}/{keys[0][1]}"]


def test_naive_query_selects_one_job() -> None:
    assert bench.naive_query("ns", 'we"ird') == \
        '{__name__=~"plateau_(metric|track)_.*", trainingjob="we\\"ird", namespace="ns"}'


# --- the two collectors against a Prometheus answered from the exporter's text --------------------

MATCHER = re.compile(r'([A-Za-z_]\w*)\s*(=~|=)\s*"((?:[^"\\]|\\.)*)"')


class FakePrometheus:
    """Answers a plain selector `{l="v", l=~"re", ...}` from an exposition, as Prometheus would."""

    def __init__(self, exposition: bytes) -> None:
        self.samples = [
            Sample({"__name__": s.name, "job": "plateau-sidecar-0", "instance": "127.0.0.1:1", **s.labels}, s.value, 0.0)
            for family in text_string_to_metric_families(exposition.decode()) for s in family.samples
        ]
        self.queries: list[str] = []

    async def query(self, promql: str, at: Optional[float] = None, decode: Callable[[bytes], Any] = parse_vector,
                    max_bytes: Optional[int] = None) -> Any:
        """The matching samples as Prometheus' JSON answer, decoded as the real client does."""
        self.queries.append(promql)
        matchers = [(label, op, re.sub(r"\\(.)", r"\1", value)) for label, op, value in MATCHER.findall(promql)]
        if not matchers:
            raise PrometheusError("QueryFailed", promql)

        def ok(labels: dict[str, str]) -> bool:
            return all(labels.get(label, "") == value if op == "=" else re.fullmatch(value, labels.get(label, ""))
                       for label, op, value in matchers)

        result = [{"metric": s.labels, "value": [s.timestamp, repr(s.value)]} for s in self.samples if ok(s.labels)]
        return decode(json.dumps({"status": "success", "data": {"resultType": "vector", "result": result}}).encode())

    async def close(self) -> None:
        pass


class FakeKube:
    def __init__(self) -> None:
        self.statuses: dict[tuple[str, str], dict[str, Any]] = {}
        self.patches: list[tuple[str, str, dict[str, Any]]] = []
        self.events: list[str] = []

    async def patch_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        self.statuses[(namespace, name)] = status

    # What a stop needs: the trainer pods (none here, the request has nobody to reach), the
    # suspend patch and the Events.
    async def pods(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        return []

    async def patch_object(self, group: str, version: str, plural: str, namespace: str, name: str,
                           patch: dict[str, Any]) -> None:
        self.patches.append((plural, name, patch))

    async def post_event(self, obj: dict[str, Any], type_: str, reason: str, message: str) -> None:
        self.events.append(reason)


def registry_of(keys: list[tuple[str, str]], latency: bool = False) -> Registry:
    registry = Registry()
    for i, (ns, name) in enumerate(keys):
        tj = support.trainingjob(ns, name, latency)
        tj["metadata"].update(uid=f"uid-{i}", generation=1)
        tj["status"] = support.running_status(name, 1.7e9)
        job = support.child_job(tj)
        job["status"] = {"active": 1, "ready": 1}
        registry.on_trainingjob({"type": "ADDED", "object": tj})
        registry.on_child_job({"type": "ADDED", "object": job})
    return registry


@pytest.mark.parametrize("n", [1, 6])
async def test_batched_needs_one_query_and_naive_one_per_job(n: int) -> None:
    keys = support.job_keys(n)
    exposition = support.Shard(keys, latency=False).render()
    settings = Settings(prometheus_url="http://unused", leader_election=False, status_interval=3600)
    results = {}
    for cls in (bench.TimedLoop, bench.NaiveLoop):
        prometheus, kube = FakePrometheus(exposition), FakeKube()
        timed = cls(settings, registry_of(keys), kube, prometheus, clock=lambda: 1.7e9 + 60)  # type: ignore[arg-type]
        cycles, writes = [], []
        for _ in range(3):
            report = await timed.cycle()
            assert not report.errors and report.jobs == n
            cycles += [report.queries, timed.samples]
            writes.append(report.writes)
        assert writes == [n, 0, 0]
        assert set(timed.phases()) == {"prepare", "fetch", "query", "parse", "assemble", "plan", "evaluate"}
        results[cls] = (*cycles, kube.statuses)
    *batched, batched_status = results[bench.TimedLoop]
    *naive, naive_status = results[bench.NaiveLoop]
    # Batched: every job's counter, then the series the fold reads of the jobs whose counter
    # moved (all, at first). Since all had news, the second cycle skips the counters and
    # fetches every job's series; the answers did not change, so the third reads the counters only.
    assert set(FETCHED) == SERIES - {p.SERIES_TRACK_KEPT}  # the operator reads all but the kept flag
    assert batched == [1 + FETCH_PARTS, n + n * len(FETCHED), FETCH_PARTS, n * len(FETCHED), 1, n]
    assert naive == [n, n * len(SERIES)] * 3
    assert batched_status == naive_status  # the same answers, so the same statuses
    for status in batched_status.values():
        assert status["phase"] == "Running"
        assert status["metric"]["sidecarReports"] == support.BASE_REPORTS + 1
        assert any(c["type"] == "MetricsAvailable" and c["status"] == "True" for c in status["conditions"])


async def test_only_the_jobs_whose_counter_moved_are_fetched_in_full() -> None:
    keys = support.job_keys(6)
    shard = support.Shard(keys, latency=False, report_every=3)  # a third of the jobs report per scrape
    prometheus = FakePrometheus(shard.render())
    settings = Settings(prometheus_url="http://unused", leader_election=False, status_interval=3600)
    timed = bench.TimedLoop(settings, registry_of(keys), FakeKube(), prometheus,  # type: ignore[arg-type]
                                     clock=lambda: 1.7e9 + 60)
    await timed.cycle()
    await timed.cycle()  # every job had news at the first read: this one fetches all, and finds none
    before = {uid: m.status.metric.sidecar_reports for uid, m in timed.loop.memory.items()}  # type: ignore[union-attr]
    evaluations = {uid: m.status.evaluations for uid, m in timed.loop.memory.items()}
    prometheus.samples = FakePrometheus(shard.render()).samples  # the next scrape
    report = await timed.cycle()

    after = {uid: m.status.metric.sidecar_reports for uid, m in timed.loop.memory.items()}  # type: ignore[union-attr]
    moved = {uid for uid in after if after[uid] != before[uid]}
    assert len(moved) == 2 and all(after[uid] == before[uid] + 1 for uid in moved)
    assert all(m.status.evaluations == evaluations[uid] + (uid in moved) for uid, m in timed.loop.memory.items())
    assert report.queries == 1 + FETCH_PARTS and not report.errors
    assert timed.samples == len(keys) + len(moved) * len(FETCHED)
    fetched = []  # per job, the part queries that select it: its name and its part
    for query in prometheus.queries[-FETCH_PARTS:]:
        patterns = [re.sub(r"\\(.)", r"\1", value) for label, _, value in MATCHER.findall(query) if label == "trainingjob"]
        assert len(patterns) == 2
        fetched += [f"uid-{i}" for i, (_, name) in enumerate(keys) if all(re.fullmatch(r, name) for r in patterns)]
    assert sorted(fetched) == sorted(moved)  # the part queries named exactly the jobs that moved, each once


class Recorder(bench.TimedLoop):
    """Records each cycle's pods and plans; `counters_always` keeps the counter query on."""

    counters_always = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.pods: list[dict[tuple[str, str], set[str]]] = []
        self.planned: list[str] = []
        plan_job = self.loop.stages.plan_job

        def recorded(planner: Any, ctx: Any, reads: Any) -> Any:
            self.planned.append(ctx.key[1])
            return plan_job(planner, ctx, reads)

        self.loop.stages = self.loop.stages._replace(plan_job=recorded)

    async def _fetch_metrics(self, loop: Any, *args: Any) -> Any:
        if self.counters_always:
            loop.fetch_all = False
        result = await super()._fetch_metrics(loop, *args)
        self.pods.append({key: set(pods) for key, pods in result.pods.items() if pods})
        return result


async def test_after_a_cycle_where_most_jobs_had_news_the_counter_query_is_skipped_with_the_same_outcome() -> None:
    keys = support.job_keys(6)
    shard = support.Shard(keys, latency=False)  # every job reports at every scrape
    settings = Settings(prometheus_url="http://unused", leader_election=False, status_interval=3600)
    runs = []
    for counters_always in (False, True):
        shard.scrapes = 0
        prometheus = FakePrometheus(shard.render())
        timed = Recorder(settings, registry_of(keys), FakeKube(), prometheus, clock=lambda: 1.7e9 + 60)  # type: ignore[arg-type]
        timed.counters_always = counters_always
        queries = []
        for _ in range(3):
            report = await timed.cycle()
            assert not report.errors
            queries.append(report.queries)
            prometheus.samples = FakePrometheus(shard.render()).samples  # the next scrape
        runs.append((queries, timed.pods, {uid: m.status for uid, m in timed.loop.memory.items()}))
    (skipping, pods, statuses), (always, pods_always, statuses_always) = runs
    assert skipping == [1 + FETCH_PARTS, FETCH_PARTS, FETCH_PARTS] and always == [1 + FETCH_PARTS] * 3
    assert statuses == statuses_always  # the same folds, and the same pods for the GPU query
    assert pods == pods_always == [{(ns, name): {support.pod_name(name)} for ns, name in keys}] * 3
    assert all(s.metric.sidecar_reports == support.BASE_REPORTS + 3 for s in statuses.values())  # type: ignore[union-attr]


async def test_a_failed_part_costs_only_its_jobs_their_metric_and_each_job_is_planned_once() -> None:
    keys = support.job_keys(8)
    failing = promql.escape_label_value(promql.name_parts(FETCH_PARTS)[0])

    class PartDown(FakePrometheus):
        async def query(self, promql_text: str, *args: Any, **kwargs: Any) -> Any:
            if failing in promql_text:
                self.queries.append(promql_text)
                raise PrometheusError("Timeout", "the query timed out")
            await asyncio.sleep(0.01)  # the other parts answer after the failure
            return await super().query(promql_text, *args, **kwargs)

    prometheus = PartDown(support.Shard(keys, latency=False).render())
    settings = Settings(prometheus_url="http://unused", leader_election=False, status_interval=3600)
    timed = Recorder(settings, registry_of(keys), FakeKube(), prometheus, clock=lambda: 1.7e9 + 60)  # type: ignore[arg-type]
    report = await timed.cycle()
    await asyncio.sleep(0.05)  # a part still running after the cycle would plan its jobs now
    assert sorted(timed.planned) == sorted(name for _, name in keys)  # once each
    assert report.errors == ["the query timed out"]
    down = {name for _, name in keys if re.fullmatch(promql.name_parts(FETCH_PARTS)[0], name)}
    assert 0 < len(down) < len(keys)
    for uid, memory in timed.loop.memory.items():
        name = keys[int(uid.removeprefix("uid-"))][1]
        available = next(c for c in memory.status.conditions if c.type == "MetricsAvailable")
        if name in down:
            assert (available.status, available.reason, memory.status.metric) == ("False", "Timeout", None)
        else:
            assert available.status == "True" and memory.status.metric.sidecar_reports == support.BASE_REPORTS + 1  # type: ignore[union-attr]


async def test_plans_made_as_the_parts_arrive_are_carried_out_when_the_cycle_fails_after_them() -> None:
    keys = support.job_keys(5)

    class BrokenAfterTheMetrics(Recorder):
        async def _fetch_metrics(self, *args: Any) -> Any:
            await super()._fetch_metrics(*args)
            raise RuntimeError("a bug after the metrics")

    settings = Settings(prometheus_url="http://unused", leader_election=False, status_interval=3600)
    kube = FakeKube()
    timed = BrokenAfterTheMetrics(settings, registry_of(keys), kube, FakePrometheus(support.Shard(keys, latency=False).render()),  # type: ignore[arg-type]
                               clock=lambda: 1.7e9 + 60)
    with pytest.raises(RuntimeError):
        await timed.cycle()
    assert sorted(timed.planned) == sorted(name for _, name in keys)
    assert sorted(kube.statuses) == sorted(keys)  # every early plan's status write went out
    assert all(s["metric"]["sidecarReports"] == support.BASE_REPORTS + 1 for s in kube.statuses.values())


async def test_a_stop_goes_out_before_the_cycles_status_writes() -> None:
    keys = support.job_keys(30, latency=True)  # target 0.5; the exporter's loss stays at 1.0
    exporter = support.Exporter(keys, shard_size=len(keys), latency=True)
    exporter.arm(keys[-1])  # its next scrape reports 0.4: TargetReached

    class Ordered(FakeKube):
        """Records the order of the calls; each takes a millisecond, as a real request takes time."""

        def __init__(self) -> None:
            super().__init__()
            self.calls: list[str] = []

        async def _request(self, call: str) -> None:
            self.calls.append(call)
            await asyncio.sleep(0.001)

        async def patch_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
            await self._request(f"status {name}")
            await super().patch_status(namespace, name, status)

        async def pods(self, namespace: str, selector: str) -> list[dict[str, Any]]:
            await self._request(f"stop request {selector.rpartition('=')[2]}")
            return await super().pods(namespace, selector)

        async def patch_object(self, group: str, version: str, plural: str, namespace: str, name: str,
                               patch: dict[str, Any]) -> None:
            await self._request(f"suspend {name}")
            await super().patch_object(group, version, plural, namespace, name, patch)

    # One request at a time: the order of the calls is the order the API server sees.
    settings = Settings(prometheus_url="http://unused", leader_election=False, status_interval=3600, concurrency=1)
    kube = Ordered()
    timed = bench.TimedLoop(settings, registry_of(keys, latency=True), kube,  # type: ignore[arg-type]
                                     FakePrometheus(exporter.shards[0].render()), clock=lambda: 1.7e9 + 60)
    report = await timed.cycle()
    assert not report.errors and report.writes == len(keys)  # first sight: every status is written
    # The stopping job is planned in the second part, after the first part's jobs, whose writes
    # are due as well. Its stop request and suspension (gracePeriod 0s, no pods) still go first,
    # one after the other: the suspension does not queue behind the writes that arrived meanwhile.
    stopped = keys[-1][1]
    assert kube.calls[:2] == [f"stop request {stopped}", f"suspend {stopped}"]
    assert sorted(kube.calls[2:]) == sorted(f"status {name}" for _, name in keys)
    assert kube.statuses[keys[-1]]["reason"] == "TargetReached"


async def test_jobs_with_nothing_new_are_not_replanned_until_a_budget_comes_within_reach() -> None:
    keys = support.job_keys(4)
    shard = support.Shard(keys, latency=False, report_every=4)  # one job reports per scrape
    prometheus = FakePrometheus(shard.render())
    registry = registry_of(keys)
    deadline = registry.trainingjobs[keys[0]]
    deadline["spec"]["stop"]["maxDuration"] = "10m"  # the others have only a metric rule
    now = [1.7e9 + 60]
    settings = Settings(prometheus_url="http://unused", leader_election=False, status_interval=3600, interval=15)
    kube = FakeKube()
    timed = bench.TimedLoop(settings, registry, kube, prometheus, clock=lambda: now[0])  # type: ignore[arg-type]
    first = await timed.cycle()
    assert (first.steady, first.writes) == (0, 4)
    now[0] += 15
    second = await timed.cycle()  # the same answers: nothing moved anywhere
    assert (second.steady, second.writes, second.actions) == (4, 0, 0)

    reports = {uid: m.status.metric.sidecar_reports for uid, m in timed.loop.memory.items()}  # type: ignore[union-attr]
    prometheus.samples = FakePrometheus(shard.render()).samples  # one job reported
    now[0] += 15
    third = await timed.cycle()
    assert third.steady == 3
    running = {uid: (m.status.metric.sidecar_reports != reports[uid], m.status.running_seconds)  # type: ignore[union-attr]
               for uid, m in timed.loop.memory.items()}
    # The moved job was planned, and the cycle it skipped is accounted: 60 s before the first
    # cycle, then 2 x 15 s. The others still stand at their last plan.
    assert sorted(running.values()) == [(False, 60.0)] * 3 + [(True, 90.0)]

    # The deadline job: planned again once maxDuration (600 s) is within 2 intervals.
    deadline_uid = deadline["metadata"]["uid"]
    now[0] = 1.7e9 + 570
    near = await timed.cycle()
    assert near.steady == 3 and timed.loop.memory[deadline_uid].status.running_seconds == 570
    now[0] = 1.7e9 + 600
    due = await timed.cycle()
    assert not due.errors and timed.loop.memory[deadline_uid].status.phase == "Stopped"
    assert timed.loop.memory[deadline_uid].status.reason == "DeadlineExceeded"
    assert kube.patches == [("jobs", keys[0][1], {"spec": {"suspend": True}})]
    assert kube.events == ["StopRequested", "Stopped"]


# --- the seeded API emulation ---------------------------------------------------------------------


async def test_seeded_emulator_holds_running_jobs_the_registry_loads(tmp_path: Path) -> None:
    from tests.support.apiserver import ApiServer

    keys = support.job_keys(3)
    async with ApiServer(gc_delay=30) as server:
        server.apply((ROOT / "crds" / "trainingjob.yaml").read_text())
        support.seed(server, keys, latency=False)
        path = server.write_kubeconfig(str(tmp_path / "kubeconfig"))
        client = kube_config.new_client_from_config(config_file=path)
        registry = await bench.load_registry(client)
        client.close()
    assert sorted(registry.trainingjobs) == sorted(keys)
    assert sorted(registry.child_jobs) == sorted(keys)  # keyed by the child's trainingjob label
    for key, body in registry.trainingjobs.items():
        api.TrainingJobSpec.model_validate(body["spec"])
        assert api.TrainingJobStatus.model_validate(body["status"]).phase == "Running"
        state = registry.child_jobs[key]
        assert (state.exists, state.active, state.suspended, state.gpus) == (True, 1, False, 1)
    uids = {body["metadata"]["uid"] for body in registry.trainingjobs.values()}
    assert len(uids) == len(keys)


def test_table_and_memory_helpers() -> None:
    text = bench.table(["a", "bb"], [["1", "22"], ["333", "4"]])
    assert text.splitlines()[0] == "| a   | bb |"
    memory = bench.memory_mb()
    assert 0 < memory["VmRSS"] <= memory["VmHWM"]
