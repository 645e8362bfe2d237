"""The operator's PromQL and Prometheus client against a real Prometheus and real bad servers."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Iterator
from typing import Any, Callable

import pytest
from aiohttp import web

from plateau.prometheus import promql
from plateau.prometheus.client import PrometheusClient, PrometheusError
from tests.support.dcgm import DcgmExporter
from tests.support.exposition import ExpositionServer
from tests.support.prometheus import PrometheusServer, free_port

HOSTILE = ['ev"il', "back\\slash", "a|.*", "dot.ns", "new\nline", "}{x=~'.*'"]


def exposition() -> str:
    """One sidecar series per hostile namespace/metric, plus a bystander that must not match."""
    def esc(v: str) -> str:
        return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")

    lines = ["# TYPE plateau_metric_value gauge"]
    for i, value in enumerate(HOSTILE):
        lines.append(f'plateau_metric_value{{ns="{esc(value)}",metric="{esc(value)}",trainingjob="tj{i}"}} {i}')
    lines.append('plateau_metric_value{ns="dotXns",metric="dotXns",trainingjob="bystander"} 99')
    return "\n".join(lines) + "\n"


@pytest.fixture
def exporter() -> Iterator[str]:
    server = ExpositionServer(exposition)
    yield server.address
    server.close()


async def test_hostile_label_values_match_exactly_themselves(prometheus: PrometheusServer, exporter: str) -> None:
    prometheus.add_target(exporter, job="hostile")
    prometheus.start()
    prometheus.wait_for_series("plateau_metric_value")
    client = PrometheusClient(prometheus.url)
    try:
        sidecar_answer = promql.SidecarDecoder(namespace_label="ns")
        for i, value in enumerate(HOSTILE):
            query = promql.sidecar_query([value], [value], namespace_label="ns")
            samples = await client.query(query)
            assert [(s.labels["trainingjob"], s.value) for s in samples] == [(f"tj{i}", float(i))], value
            # The loop's decoder reads the same answer into the labels it uses, and only those.
            [(labels, number)] = await client.query(query, decode=sidecar_answer)
            assert (labels.name, labels.namespace, labels.metric, labels.trainingjob, number) == \
                ("plateau_metric_value", value, value, f"tj{i}", float(i))
            assert labels.instance == exporter.split("//")[-1] and labels.pod == ""
        both = await client.query(promql.sidecar_query(["dot.ns", "a|.*"], ["dot.ns", "a|.*"], namespace_label="ns"))
        assert sorted(s.labels["trainingjob"] for s in both) == ["tj2", "tj3"]  # not the bystander
        nothing = await client.query(promql.sidecar_query([], ["x"], namespace_label="ns"))
        assert nothing == []
        custom = promql.custom_query('plateau_metric_value{trainingjob="$name", ns="$namespace"}', 'ev"il', "tj0",
                                     confine_label="ns")
        assert [s.value for s in await client.query(custom)] == [0.0]
    finally:
        await client.close()


# A user's query in team-a, and what it reads as written: each tries to read team-b's loss (0.75).
ESCAPES = [
    ('my_loss{namespace="team-b"}', [0.75]),
    ('my_loss{namespace=~".*"}', [0.25, 0.75]),
    ('{__name__=~"my_.*", job_name="$name"}', [0.25, 0.75]),
    ("max(my_loss)", [0.75]),
    ("topk(1, max_over_time(my_loss[1m]))", [0.75]),
    ("max_over_time(max(my_loss)[1m:1s])", [0.75]),
    ("max(my_loss @ end() offset 1s)", [0.75]),
    ('label_replace(my_loss{namespace="team-b"}, "namespace", "$namespace", "", "")', [0.75]),
    ("sum(my_loss) - sum(my_loss) + max(my_loss)", [0.75]),
    ('vector(0.25) * on () group_left () max(my_loss{namespace="team-b"}) * 4', [0.75]),
]


async def test_a_confined_query_reads_only_its_own_namespace(prometheus: PrometheusServer) -> None:
    exporters = {ns: ExpositionServer(lambda v=value: f'my_loss{{job_name="guard"}} {v}\n')
                 for ns, value in (("team-a", 0.25), ("team-b", 0.75))}
    for ns, server in exporters.items():  # as a PodMonitor or ServiceMonitor labels its targets
        prometheus.add_target(server.address, job="exporter", labels={"namespace": ns})
    prometheus.start()
    prometheus.wait_for('count(my_loss offset 1s)', lambda v: v == 2)
    client = PrometheusClient(prometheus.url)
    try:
        for template, as_written in ESCAPES:
            unconfined = await client.query(promql.custom_query(template, "team-a", "guard", confine_label=None))
            assert sorted(s.value for s in unconfined) == as_written, template  # the leak is real
            confined = await client.query(promql.custom_query(template, "team-a", "guard"))
            assert all(s.value == 0.25 for s in confined), (template, confined)
        assert [s.value for s in await client.query(promql.custom_query("max(my_loss)", "team-a", "guard"))] == [0.25]
    finally:
        await client.close()
        for server in exporters.values():
            server.close()


# Names as users write them (numbered runs, words, dotted) and names no Kubernetes object can
# have, which must still land in exactly one part.
PART_NAMES = [f"run-{i}" for i in range(20)] + ["bert-base", "sweep.trial-7x", "a", "9"] + HOSTILE + ["Ünï", "ends-", "new\nline-\n"]


def part_exposition() -> str:
    def esc(v: str) -> str:
        return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")

    lines = ["# TYPE plateau_metric_value gauge"]
    lines += [f'plateau_metric_value{{namespace="ns",metric="m",trainingjob="{esc(n)}"}} {i}' for i, n in enumerate(PART_NAMES)]
    return "\n".join(lines) + "\n"


async def test_name_parts_split_every_job_into_exactly_one_query(prometheus: PrometheusServer) -> None:
    server = ExpositionServer(part_exposition)
    prometheus.add_target(server.address, job="parts")
    prometheus.start()
    prometheus.wait_for_series("plateau_metric_value")
    client = PrometheusClient(prometheus.url)
    try:
        for parts in (1, 2, 4, 7):
            seen: list[str] = []
            for part in promql.name_parts(parts):
                answer = await client.query(promql.sidecar_query(["ns"], ["m"], part=part))
                seen += [s.labels["trainingjob"] for s in answer]
            assert sorted(seen) == sorted(PART_NAMES), parts  # all of them, none twice
        # Numbered and worded names spread over the parts.
        sizes = [len(await client.query(promql.sidecar_query(["ns"], ["m"], trainingjobs=PART_NAMES[:20], part=part)))
                 for part in promql.name_parts(4)]
        assert sum(sizes) == 20 and max(sizes) <= 6, sizes
    finally:
        await client.close()
        server.close()


async def test_gpu_queries_are_valid_promql(prometheus: PrometheusServer) -> None:
    prometheus.start()
    client = PrometheusClient(prometheus.url)
    try:
        for dcgm in (promql.DcgmConfig(), promql.DcgmConfig(pod_label="exported_pod", namespace_label="exported_namespace")):
            assert await client.query(promql.gpu_max_query(dcgm, ["default"], "10m")) == []
            assert await client.query(promql.gpu_since_query(dcgm, ["default"], "10m")) == []
            assert await client.query(promql.gpu_window_query(dcgm, ["default"], "10m")) == []
    finally:
        await client.close()


async def test_a_window_query_answers_what_its_two_reads_answer(prometheus: PrometheusServer,
                                                                 dcgm_exporter: DcgmExporter) -> None:
    """One round trip per window: each sample carries its read, and the reads are exactly the
    two queries' answers at the same instant."""
    dcgm_exporter.set("a-0", "team-a", 0.4, 0.9)  # the profiling metric wins
    dcgm_exporter.set("a-1", "team-a", None, 0.3)  # the device metric alone, a percentage
    dcgm_exporter.set("b-0", "team-b", None, 0.0, mig=True)  # a MIG slice's device metric: not idleness
    dcgm_exporter.set("c-0", "team-c", 0.7, 0.7)  # a namespace not asked for
    prometheus.add_target(dcgm_exporter.address, job="dcgm")
    prometheus.start()
    prometheus.wait_for("count(DCGM_FI_DEV_GPU_UTIL offset 3s)", lambda v: v == 4)  # every series older than the window
    dcgm = promql.DcgmConfig()
    client = PrometheusClient(prometheus.url)
    try:
        at = time.time()
        namespaces, window = ["team-a", "team-b"], "2s"

        async def per_pod(query: str, labels: set[str]) -> dict[tuple[str, str], float]:
            answer = await client.query(query, at=at)
            assert all(set(s.labels) == labels for s in answer), answer
            return {(s.labels["namespace"], s.labels["pod"]): s.value for s in answer}

        highest = await per_pod(promql.gpu_max_query(dcgm, namespaces, window), {"namespace", "pod"})
        since = await per_pod(promql.gpu_since_query(dcgm, namespaces, window), {"namespace", "pod"})
        assert highest == {("team-a", "a-0"): 0.4, ("team-a", "a-1"): 0.3}
        assert set(since) == set(highest) and all(at - 60 < t <= at - 2 for t in since.values()), since
        merged = await client.query(promql.gpu_window_query(dcgm, namespaces, window), at=at)
        assert all(set(s.labels) == {"namespace", "pod", promql.GPU_READ_LABEL} for s in merged), merged
        reads = {read: {(s.labels["namespace"], s.labels["pod"]): s.value
                        for s in merged if s.labels[promql.GPU_READ_LABEL] == read} for read in promql.GPU_READS}
        assert reads == {"max": highest, "since": since} and len(merged) == 4
    finally:
        await client.close()


async def test_a_window_whose_profiling_series_began_inside_it_is_not_covered(prometheus: PrometheusServer,
                                                                             dcgm_exporter: DcgmExporter) -> None:
    """The busiest sample reads the profiling metric once a pod has one; the window's start must
    come from that metric too. A device series that covers the window while the profiling one
    began inside it would let a few idle profiling samples judge the whole window."""
    dcgm_exporter.set("a-0", "team-a", None, 0.9)  # busy, device metric only
    dcgm_exporter.set("a-1", "team-a", None, 0.9)  # the same, and stays so
    prometheus.add_target(dcgm_exporter.address, job="dcgm")
    prometheus.start()
    prometheus.wait_for("count(DCGM_FI_DEV_GPU_UTIL offset 9s)", lambda v: v == 2, timeout=30)  # older than the window
    dcgm_exporter.set("a-0", "team-a", 0.0, 0.9)  # profiling starts (idle) inside the window
    prometheus.wait_for("count(DCGM_FI_PROF_GR_ENGINE_ACTIVE)", lambda v: v == 1)
    client = PrometheusClient(prometheus.url)
    try:
        answer = await client.query(promql.gpu_window_query(promql.DcgmConfig(), ["team-a"], "8s"))
        reads = {(s.labels[promql.GPU_READ_LABEL], s.labels["pod"]): s.value for s in answer}
        assert reads[("max", "a-0")] == 0.0 and reads[("max", "a-1")] == 0.9
        assert ("since", "a-0") not in reads and ("since", "a-1") in reads  # a-0's window is not known yet
    finally:
        await client.close()


EMPTY_VECTOR = '{"status": "success", "data": {"resultType": "vector", "result": []}}'


async def serve(status: int = 200, text: str = "", delay: float = 0) -> web.AppRunner:
    async def answer(_: web.Request) -> web.Response:
        await asyncio.sleep(delay)
        return web.Response(status=status, text=text, content_type="application/json")

    app = web.Application()
    app.router.add_post("/api/v1/query", answer)
    runner = web.AppRunner(app)
    await runner.setup()
    return runner


@pytest.mark.parametrize(
    ("status", "text", "delay", "reason"),
    [
        (500, "oops", 0, "ServerError"),
        (503, "", 0, "ServerError"),
        (200, "<html>not json</html>", 0, "MalformedResponse"),
        (200, '{"status": "success", "data": {"resultType": "matrix", "result": []}}', 0, "MalformedResponse"),
        (200, '{"status": "success", "data": {"resultType": "vector", "result": [{"metric": {}, "value": [1, 2]}]}}', 0, "MalformedResponse"),
        (200, '{"status": "success", "data": {"resultType": "vector", "result": [{"metric": {}, "value": [1, "abc"]}]}}', 0, "MalformedResponse"),
        (200, '{"status": "success", "data": {"resultType": "vector", "result": [{"metric": {"trainingjob": 5}, "value": [1, "1"]}]}}', 0, "MalformedResponse"),
        (200, '{"status": "success", "data": {"resultType": "vector", "result": [{"value": [1, "1"]}]}}', 0, "MalformedResponse"),
        (400, '{"status": "error", "errorType": "bad_data", "error": "parse error"}', 0, "QueryFailed"),
        (200, '{"status": "success", "data": {"resultType": "vector", "result": []}}', 1.5, "Timeout"),
    ],
)
@pytest.mark.parametrize("decode", [promql.parse_vector, promql.SidecarDecoder()], ids=["generic", "sidecar"])
async def test_bad_prometheus_answers_become_reasons(status: int, text: str, delay: float, reason: str,
                                                     decode: Callable[[bytes], Any]) -> None:
    runner = await serve(status=status, text=text, delay=delay)
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    client = PrometheusClient(f"http://127.0.0.1:{port}", timeout=1.0)
    try:
        with pytest.raises(PrometheusError) as info:
            await client.query("up", decode=decode)
        assert info.value.reason == reason
    finally:
        await client.close()
        await runner.cleanup()


async def test_the_operator_reaches_prometheus_through_the_pods_proxy_unless_no_proxy_says_not(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from kubernetes import client as kube_client

    from plateau.controller.config import Settings
    from plateau.controller.runtime import Runtime

    seen: list[str] = []

    async def forward(request: web.Request) -> web.Response:  # a forward proxy gets the absolute URL
        seen.append(str(request.url))
        return web.Response(text=EMPTY_VECTOR, content_type="application/json")

    proxy_app = web.Application()
    proxy_app.router.add_route("*", "/{tail:.*}", forward)
    proxy = web.AppRunner(proxy_app)
    await proxy.setup()
    proxy_port, prometheus_port = free_port(), free_port()
    await web.TCPSite(proxy, "127.0.0.1", proxy_port).start()
    prometheus = await serve(text=EMPTY_VECTOR)
    await web.TCPSite(prometheus, "127.0.0.1", prometheus_port).start()
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy_port}")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    try:
        for url, no_proxy, through_proxy in (("http://prometheus.monitoring.svc:9090", "", True),
                                              (f"http://127.0.0.1:{prometheus_port}", "127.0.0.1", False)):
            monkeypatch.setenv("NO_PROXY", no_proxy)
            seen.clear()
            runtime = Runtime(Settings(prometheus_url=url, leader_election=False), kube_client.ApiClient())
            try:
                assert await runtime.prometheus.query("up") == []
            finally:
                await runtime.close()
            assert seen == ([f"{url}/api/v1/query"] if through_proxy else []), url
        # plateau run's client does not: its Prometheus is on 127.0.0.1, whatever the shell says
        monkeypatch.setenv("NO_PROXY", "")
        local = PrometheusClient(f"http://127.0.0.1:{prometheus_port}")
        try:
            assert await local.query("up") == [] and seen == []
        finally:
            await local.close()
    finally:
        await proxy.cleanup()
        await prometheus.cleanup()


async def test_unreachable_prometheus() -> None:
    client = PrometheusClient(f"http://127.0.0.1:{free_port()}", timeout=2.0)
    try:
        with pytest.raises(PrometheusError) as info:
            await client.query("up")
        assert info.value.reason == "Unreachable" and "127.0.0.1" not in str(info.value)
    finally:
        await client.close()


async def test_special_values_parse() -> None:
    body = ('{"status": "success", "data": {"resultType": "vector", "result": ['
            '{"metric": {"a": "1"}, "value": [1, "NaN"]}, {"metric": {"a": "2"}, "value": [1, "+Inf"]}]}}')
    runner = await serve(text=body)
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    client = PrometheusClient(f"http://127.0.0.1:{port}")
    try:
        samples = await client.query("x")
        assert math.isnan(samples[0].value) and samples[1].value == math.inf
        values = [value for _, value in await client.query("x", decode=promql.SidecarDecoder())]
        assert math.isnan(values[0]) and values[1] == math.inf
    finally:
        await client.close()
        await runner.cleanup()


def test_sidecar_decoder_refuses_a_namespace_label_it_already_reads() -> None:
    for label in ("pod", "instance", "trainingjob", "metric", "__name__"):
        with pytest.raises(ValueError, match="namespace label"):
            promql.SidecarDecoder(namespace_label=label)
    assert promql.SidecarDecoder(namespace_label="exported_namespace")
