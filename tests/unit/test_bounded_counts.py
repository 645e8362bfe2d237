"""Counts that come from outside bound nothing the operator builds: a report counter or a track
count of 1e12 is one number in a cycle, never 1e12 of anything, and one beyond what a sample
carries exactly (or negative, or fractional) makes the read unknown, not a status the API server
would refuse. Prometheus' answers are capped in size, which bounds the series a cycle loops over."""

from __future__ import annotations

import dataclasses
import math
import time

import pytest
from aiohttp import web

from plateau.prometheus import client as prometheus
from plateau.controller.config import Settings
from plateau.prometheus.client import PrometheusClient, PrometheusError
from plateau.prometheus.summaries import MAX_COUNT, track_from_series
from plateau_sidecar import protocol as p
from tests.unit.test_operator_bench import FakeKube, FakePrometheus, bench, registry_of, support

HUGE = 1e12


def series(count: float) -> dict[str, float]:
    return {p.SERIES_REPORTS: count, p.SERIES_TRACK_SPEC: 7.0, p.SERIES_VALUE: 0.5, p.SERIES_STEP: count,
            "plateau_track_evaluations": count, "plateau_track_since_improvement": count, "plateau_track_best": 0.5,
            "plateau_track_best_step": 1.0}


def test_a_huge_exact_count_is_one_number() -> None:
    started = time.perf_counter()
    read = track_from_series(series(HUGE), "val_loss")
    assert time.perf_counter() - started < 0.1
    assert read is not None and read.reports == 10**12 and read.current is not None
    assert read.current.evaluations == read.current.since_improvement == read.current.last_step == 10**12


@pytest.mark.parametrize("count", [1e300, MAX_COUNT * 2.0, -1.0, 2.5, math.inf, math.nan])
def test_a_count_no_sample_carries_exactly_makes_the_read_unknown(count: float) -> None:
    assert track_from_series(series(count), "val_loss") is None
    assert track_from_series({**series(3.0), "plateau_track_evaluations": count}, "val_loss").current is None  # type: ignore[union-attr]


@pytest.mark.parametrize("count", [HUGE, 1e300])
async def test_an_operator_cycle_over_a_huge_report_counter_ends_at_once(count: float) -> None:
    keys = support.job_keys(2)
    prometheus = FakePrometheus(support.Shard(keys, latency=False).render())
    victim = keys[0][1]
    counts = (p.SERIES_REPORTS, "plateau_track_evaluations", "plateau_track_since_improvement")
    prometheus.samples = [
        dataclasses.replace(s, value=count)
        if s.labels.get(p.LABEL_TRAININGJOB) == victim and s.labels["__name__"] in counts else s
        for s in prometheus.samples]
    kube = FakeKube()
    settings = Settings(prometheus_url="http://unused", leader_election=False, status_interval=3600)
    timed = bench.TimedLoop(settings, registry_of(keys), kube, prometheus,  # type: ignore[arg-type]
                                     clock=lambda: 1.7e9 + 60)
    started = time.perf_counter()
    report = await timed.cycle()
    assert time.perf_counter() - started < 5 and not report.errors
    status = kube.statuses[keys[0]]
    available = next(c for c in status["conditions"] if c["type"] == "MetricsAvailable")
    if count <= MAX_COUNT:
        assert status["metric"]["sidecarReports"] == status["evaluations"] == int(count)
        assert available["status"] == "True"
    else:  # no count: unknown, and nothing written that an int64 field would refuse
        assert available["status"] == "False"
        assert all(abs(v) < 2**63 for v in _integers(status))
    other = kube.statuses[keys[1]]
    assert other["metric"]["sidecarReports"] == support.BASE_REPORTS + 1  # the other job is read as usual


def _integers(node: object) -> list[int]:
    if isinstance(node, dict):
        return [i for v in node.values() for i in _integers(v)]
    if isinstance(node, list):
        return [i for v in node for i in _integers(v)]
    return [node] if isinstance(node, int) and not isinstance(node, bool) else []


async def test_a_prometheus_answer_over_the_cap_is_an_error_not_a_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    big = b'{"status":"success","data":{"resultType":"vector","result":[' + b" " * 4096 + b"]}}"

    async def answer(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()  # chunked: no Content-Length to refuse early
        await response.prepare(request)
        await response.write(big)
        return response

    app = web.Application()
    app.router.add_post("/api/v1/query", answer)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    client = PrometheusClient(f"http://127.0.0.1:{port}", timeout=5)
    try:
        monkeypatch.setattr(prometheus, "MAX_ANSWER_BYTES", 1024)
        with pytest.raises(PrometheusError, match="more than 1024 bytes") as caught:
            await client.query("up")
        assert caught.value.reason == "AnswerTooLarge"
        monkeypatch.setattr(prometheus, "MAX_ANSWER_BYTES", 8192)
        assert (await client.query("up")) == []  # under the cap: read as before
    finally:
        await client.close()
        await runner.cleanup()
