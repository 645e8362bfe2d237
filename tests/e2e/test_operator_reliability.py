"""End to end: the operator when things around it fail.

Real trainer, sidecar, Prometheus and operator processes; the emulated API server is the only
stand-in. Prometheus down, slow or lying; the API answering 409 and 5xx on every write of a
stop; the operator SIGKILLed at each step of the stop handshake; a TrainingJob or its child
Job deleted under it; no DCGM series; hostile names and label values on the PromQL path.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import Counter
from pathlib import Path
from typing import Any, Optional

import aiohttp
import pytest
from aiohttp import web

from plateau.controller.children import label_value
from tests.e2e.harness import NAMESPACE, Environment, operator_port, trainer, training_job
from tests.support.prometheus import free_port

pytestmark = pytest.mark.e2e

# With `--lr 1.0 --sleep 0.4` val_loss stops improving by 5% after about 8 epochs.
PLATEAU = {"name": "val_loss", "patience": 3, "minDelta": {"relative": 0.05}}
NEVER = {"name": "val_loss", "patience": 100000}  # watches the metric, never fires
PLATEAUING = ("--lr", "1.0", "--epochs", "400", "--sleep", "0.4")
TJ_PATH = f"/apis/plateau.dev/v1alpha1/namespaces/{NAMESPACE}/trainingjobs"
JOB_PATH = f"/apis/batch/v1/namespaces/{NAMESPACE}/jobs"


def condition(status: dict[str, Any], type_: str) -> dict[str, Any]:
    return next((c for c in status.get("conditions") or [] if c["type"] == type_), {})


def epochs(env: Environment, job: str) -> list[tuple[int, float]]:
    """(step, val_loss) of every epoch the job's trainer logged, in order."""
    return [(int(m[1]), float(m[2])) for m in re.finditer(r"epoch=\d+ step=(\d+) val_loss=(\S+)", env.kubelet.trainer_log(job))]


async def operator_metrics(port: int) -> dict[str, float]:
    """The operator's own /metrics as {'name{labels}': value}."""
    async with aiohttp.ClientSession() as session:
        async with session.get(f"http://127.0.0.1:{port}/metrics") as r:
            text = await r.text()
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
            for line in text.splitlines() if line and not line.startswith("#")}


async def healthy(port: int) -> bool:
    """The operator's /healthz (the Deployment's livenessProbe), on --metrics-port + 1."""
    async with aiohttp.ClientSession() as session:
        async with session.get(f"http://127.0.0.1:{port + 1}/healthz") as r:
            return r.status == 200


class PrometheusProxy:
    """Sits between the operator and the real Prometheus, and forwards or fails on command.

    forward: pass requests on; refuse: stop listening (connections are refused); close: accept
    and drop the connection; error: HTTP 503; garbage: HTTP 200 with truncated JSON; slow:
    answer only after `delay` seconds (longer than the operator's query timeout).
    """

    def __init__(self, upstream: str, delay: float = 4.0) -> None:
        self.upstream = upstream
        self.delay = delay
        self.port = operator_port()  # below the ephemeral range: free again when "refuse" ends
        self.mode = "forward"
        self.served: Counter[str] = Counter()
        self._site: Optional[web.TCPSite] = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def __aenter__(self) -> PrometheusProxy:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        self._session = aiohttp.ClientSession()
        await self._listen()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self._runner.cleanup()
        await self._session.close()

    async def _listen(self) -> None:
        self._site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        await self._site.start()

    async def set(self, mode: str) -> None:
        if mode == "refuse" and self._site is not None:
            await self._site.stop()
            self._site = None
        elif mode != "refuse" and self._site is None:
            await self._listen()
        self.mode = mode

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        mode = self.mode
        self.served[mode] += 1
        body = await request.read()
        if mode in ("refuse", "close"):  # "refuse": a kept-alive connection from before is dropped too
            assert request.transport is not None
            request.transport.close()
            return web.Response()
        if mode == "error":
            return web.Response(status=503, text="Service Unavailable")
        if mode == "garbage":
            return web.Response(status=200, content_type="application/json",
                                text='{"status": "success", "data": {"resultType": "vector", "result": [{"metric": {')
        if mode == "slow":
            await asyncio.sleep(self.delay)
            if request.transport is None or request.transport.is_closing():
                return web.Response()  # the client gave up long ago
        async with self._session.request(request.method, self.upstream + request.path_qs, data=body,
                                         headers={"Content-Type": request.headers.get("Content-Type", "")}) as r:
            return web.Response(status=r.status, body=await r.read(), content_type=r.content_type)


# --- 1. Prometheus down, slow, 5xx, garbage ---------------------------------------------------------


async def test_prometheus_down_slow_failing_or_garbled_means_unknown_never_a_stop(tmp_path: Path) -> None:
    async with Environment(tmp_path, ["tj-prom"]) as env, PrometheusProxy(env.prometheus.url) as proxy:
        await proxy.set("refuse")  # down before the operator ever reached it
        metrics_port = operator_port()
        env.start_operator("--prometheus-url", proxy.url, "--prometheus-timeout", "1s", "--metrics-port", str(metrics_port))
        env.create(training_job("tj-prom", {"metric": PLATEAU, "gracePeriod": "20s"}, trainer(*PLATEAUING)))

        def metrics_condition(reason: str, detail: str = "") -> Any:
            status = env.status("tj-prom")
            c = condition(status, "MetricsAvailable")
            return c.get("status") == "False" and c["reason"] == reason and detail in c["message"] and c

        for mode, reason, detail in [("refuse", "Unreachable", "ClientConnectorError"),
                                     ("close", "Unreachable", "ServerDisconnectedError"),
                                     ("error", "ServerError", "HTTP 503"),
                                     ("garbage", "MalformedResponse", "not JSON"),
                                     ("slow", "Timeout", "within 1s")]:
            await proxy.set(mode)
            found = await env.wait(f"MetricsAvailable=False/{reason} while Prometheus is {mode}",
                                   lambda: metrics_condition(reason, detail), timeout=20)
            assert found["observedGeneration"] == 1
            assert env.status("tj-prom")["phase"] == "Running"

        # The trainer has long plateaued (patience 3 after about 8 epochs); the operator cannot know.
        await env.wait("16 epochs of training", lambda: len(epochs(env, "tj-prom")) >= 16, timeout=30)
        await env.wait("one more failed cycle", lambda: proxy.served["slow"] >= 2, timeout=20)
        status = env.status("tj-prom")
        assert status["phase"] == "Running" and not status.get("metric") and not status.get("stopRequestedTime")
        assert env.event_reasons("tj-prom") == ["Running"]
        counted = await operator_metrics(metrics_port)
        for reason in ("Unreachable", "ServerError", "MalformedResponse", "Timeout"):
            assert counted[f'plateau_operator_prometheus_errors_total{{reason="{reason}"}}'] >= 1, reason
        missing = f'plateau_operator_trainingjob_metrics_missing{{condition="MetricsAvailable",namespace="{NAMESPACE}",' \
                  f'reason="Timeout",trainingjob="tj-prom"}}'
        assert counted.get(missing) == 1.0, sorted(k for k in counted if "missing" in k)

        await proxy.set("forward")
        await env.wait("MetricsAvailable=True", lambda: condition(env.status("tj-prom"), "MetricsAvailable").get("status") == "True",
                       timeout=20)
        status = await env.wait_phase("tj-prom", "Stopped", timeout=40)
        assert status["reason"] == "Plateau" and "the trainer exited" in status["message"]
        assert condition(status, "MetricsAvailable")["reason"] == "SeriesFound"
        await env.wait_events("tj-prom", ["Running", "StopRequested", "Stopped"])


# --- 2. API conflicts and server errors on every write of a stop ----------------------------------------


async def test_conflicts_and_server_errors_on_each_write_of_a_stop_neither_lose_nor_repeat_it(tmp_path: Path) -> None:
    async with Environment(tmp_path, ["tj-faults"]) as env:
        api = env.api
        # The stop request (the pod annotation) fails for good: more 500s than one call retries.
        annotate = api.inject(r"/pods/[^/]+$", "patch", 500, times=None)  # the annotation, not the kubelet's /status
        # The suspend: 3 conflicts and 4 unavailable, 7 failures: one call's 5 attempts and 2 more.
        suspend_409 = api.inject(rf"{JOB_PATH}/tj-faults$", "patch", 409, times=3)
        suspend_503 = api.inject(rf"{JOB_PATH}/tj-faults$", "patch", 503, times=4)
        env.start_operator()
        env.create(training_job("tj-faults", {"maxDuration": "2s", "gracePeriod": "2s"}, trainer(*PLATEAUING, "--ignore-stop")))

        await env.wait("a failed stop request, and its retry a cycle later", lambda: annotate.hits >= 6, timeout=40)
        assert env.status("tj-faults")["phase"] == "Running" and env.event_reasons("tj-faults") == ["Running"]
        # Now the annotation goes through, and the Stopping status write conflicts, for good.
        record_stopping = api.inject(rf"{TJ_PATH}/tj-faults/status$", "patch", 409, times=None)
        posting = api.inject(r"/events$", "create", 503, times=2)
        annotate.times = annotate.hits
        await env.wait("a failed Stopping write, and its retry a cycle later", lambda: record_stopping.hits >= 6, timeout=30)
        assert [c.status for c in api.calls("patch", "pods") if not c.subresource][-1] == 200  # the trainer was asked
        assert env.status("tj-faults")["phase"] == "Running" and env.event_reasons("tj-faults") == ["Running"]
        flaky_status = api.inject(rf"{TJ_PATH}/tj-faults/status$", "patch", 500, times=2)
        record_stopping.times = record_stopping.hits

        stopping = await env.wait_phase("tj-faults", "Stopping", "Stopped", timeout=30)
        api.inject(r"/events$", "create", 500, times=2)
        status = await env.wait_phase("tj-faults", "Stopped", timeout=40)
        await env.wait_events("tj-faults", ["Running", "StopRequested", "Stopped"])

        assert posting.hits == 2 and flaky_status.hits == 2
        assert suspend_409.hits == 3 and suspend_503.hits == 4
        assert env.event_reasons("tj-faults") == ["Running", "StopRequested", "Stopped"]
        events = {e["reason"]: e for e in env.events("tj-faults")}
        assert events["StopRequested"]["message"].startswith("DeadlineExceeded: ")
        assert events["Stopped"]["message"].startswith("DeadlineExceeded: ")
        assert status["reason"] == "DeadlineExceeded" and "gracePeriod 2s is over" in status["message"]
        assert status["stopRequestedTime"] == stopping["stopRequestedTime"] <= status["stopTime"]
        assert status["observedGeneration"] == 1 and status["replicas"] == 0
        assert condition(status, "StopRequested")["status"] == "True"
        assert condition(status, "StopRequested")["reason"] == "DeadlineExceeded"
        assert condition(status, "Ready")["status"] == "False" and condition(status, "Ready")["reason"] == "DeadlineExceeded"
        assert status["runningSeconds"] >= 2
        assert env.child_job("tj-faults")["spec"]["suspend"] is True
        pod = env.kubelet.pods["tj-faults"]
        # The kubelet reacts to the suspend on its own schedule, and SIGTERM takes a moment.
        await env.wait("suspending ended the trainer", lambda: pod.terminated and pod.trainer.poll() is not None, timeout=15)
        assert pod.signals[:1] in ([], ["SIGTERM"])  # SIGTERM if it still ran (it ignores the request)
        annotations = [c for c in api.calls("patch", "pods") if c.status == 200 and not c.subresource]
        assert len(annotations) == 1, "the pod was asked once, not once per retry"


# --- 3. The operator SIGKILLed at each step of the handshake -----------------------------------------


async def test_an_operator_killed_at_each_step_of_the_handshake_stops_the_job_exactly_once(tmp_path: Path) -> None:
    async with Environment(tmp_path, ["tj-kill"]) as env:
        api = env.api
        operator = env.start_operator()
        hang = api.inject(r"/pods/[^/]+$", "patch", 504, delay=30, times=1)  # the annotation, not the kubelet's /status
        env.create(training_job("tj-kill", {"maxDuration": "2s", "gracePeriod": "4s"}, trainer(*PLATEAUING, "--ignore-stop")))

        # Step 1: killed while asking the trainer to stop (the annotation hangs), nothing recorded yet.
        await env.wait("the stop request in flight", lambda: hang.hits == 1, timeout=60)
        env.kill_operator(operator)
        assert env.status("tj-kill")["phase"] == "Running"
        operator = env.start_operator()  # the container restarts: same pod name, same identity

        # Step 2: killed after Stopping (and its Event) are recorded, before the grace period ends.
        stopping = await env.wait_phase("tj-kill", "Stopping", timeout=30)
        await env.wait("the StopRequested Event", lambda: "StopRequested" in env.event_reasons("tj-kill"), timeout=10)
        env.kill_operator(operator)
        operator = env.start_operator()

        # Step 3: killed after Stopped (and its Event) are recorded.
        stopped = await env.wait_phase("tj-kill", "Stopped", timeout=40)
        await env.wait("the Stopped Event", lambda: "Stopped" in env.event_reasons("tj-kill"), timeout=10)
        env.kill_operator(operator)
        metrics_port = operator_port()
        env.start_operator("--metrics-port", str(metrics_port))
        await cycles(env, metrics_port, 3)  # time enough to repeat anything it would repeat
        final = env.status("tj-kill")

        assert env.event_reasons("tj-kill") == ["Running", "StopRequested", "Stopped"]
        assert final["phase"] == "Stopped" and final["reason"] == "DeadlineExceeded"
        assert "gracePeriod 4s is over" in final["message"]
        assert final["stopRequestedTime"] == stopping["stopRequestedTime"] == stopped["stopRequestedTime"]
        assert final["stopTime"] == stopped["stopTime"]
        # The grace period ran from the recorded request, across the restart.
        assert _seconds(final["stopTime"]) - _seconds(final["stopRequestedTime"]) >= 4
        assert env.child_job("tj-kill")["spec"]["suspend"] is True
        asked = [c for c in api.calls("patch", "pods") if c.status == 200 and not c.subresource]
        assert len(asked) == 1 and asked[0].body["metadata"]["annotations"] == {"plateau.dev/stop": "DeadlineExceeded"}
        assert len([c for c in api.calls("create", "jobs")]) == 1


async def cycles(env: Environment, metrics_port: int, count: int) -> None:
    """Wait for `count` more evaluation cycles of the operator serving metrics on `metrics_port`
    (its cycle-duration histogram counts them), however many of them wrote anything."""
    name = "plateau_operator_cycle_duration_seconds_count"

    async def done() -> float:
        try:
            return (await operator_metrics(metrics_port)).get(name, 0.0)
        except aiohttp.ClientError:  # still starting
            return 0.0

    target = await done() + count
    deadline = time.monotonic() + 30
    while await done() < target:
        assert time.monotonic() < deadline, f"no {count} evaluation cycles within 30s:\n{env.operator_log()}"
        await asyncio.sleep(0.25)


def _seconds(rfc3339: str) -> float:
    from datetime import datetime, timezone

    return datetime.strptime(rfc3339, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc).timestamp()


# --- 4. A TrainingJob deleted mid-stop --------------------------------------------------------------


async def test_a_trainingjob_deleted_while_stopping_leaves_the_operator_serving_the_others(tmp_path: Path) -> None:
    async with Environment(tmp_path, ["tj-gone", "tj-stays"]) as env:
        metrics_port = operator_port()
        operator = env.start_operator("--metrics-port", str(metrics_port))
        env.create(
            training_job("tj-gone", {"maxDuration": "3s", "gracePeriod": "60s"}, trainer(*PLATEAUING, "--ignore-stop")),
            training_job("tj-stays", {"metric": PLATEAU, "gracePeriod": "20s"}, trainer(*PLATEAUING)),
        )
        stopping = await env.wait_phase("tj-gone", "Stopping", timeout=40)
        assert stopping["reason"] == "DeadlineExceeded"
        owners = [(o["kind"], o["uid"], o.get("controller")) for o in env.child_job("tj-gone")["metadata"]["ownerReferences"]]
        assert owners == [("TrainingJob", env.tj("tj-gone")["metadata"]["uid"], True)]
        code, _ = await env.request("DELETE", f"{TJ_PATH}/tj-gone")
        assert code == 200

        await env.wait("the child Job garbage-collected", lambda: not env.child_job("tj-gone"), timeout=10)
        await env.wait("its trainer gone", lambda: env.kubelet.pods["tj-gone"].trainer.poll() is not None, timeout=10)
        status = await env.wait_phase("tj-stays", "Stopped", timeout=60)
        assert status["reason"] == "Plateau"

        assert operator.poll() is None and await healthy(metrics_port)
        assert "evaluation cycle failed" not in "".join(p.read_text() for p in tmp_path.glob("operator-*.log"))
        await env.wait_events("tj-stays", ["Running", "StopRequested", "Stopped"])
        assert env.event_reasons("tj-gone") == ["Running", "StopRequested"]  # never finished, never recreated
        assert sorted(c.body["metadata"]["name"] for c in env.api.calls("create", "jobs")) == ["tj-gone", "tj-stays"]
        counted = await operator_metrics(metrics_port)
        assert counted['plateau_operator_trainingjobs{phase="Stopping"}'] == 0  # the deleted job is forgotten


# --- 5. A child Job deleted by the user ---------------------------------------------------------------


async def test_a_child_job_deleted_by_the_user_ends_the_trainingjob_and_is_not_recreated(tmp_path: Path) -> None:
    async with Environment(tmp_path, ["tj-orphan"]) as env:
        metrics_port = operator_port()
        env.start_operator("--metrics-port", str(metrics_port))
        env.create(training_job("tj-orphan", {"metric": NEVER}, trainer(*PLATEAUING)))
        await env.wait_phase("tj-orphan", "Running", timeout=30)
        code, _ = await env.request("DELETE", f"{JOB_PATH}/tj-orphan?propagationPolicy=Background")
        assert code == 200

        status = await env.wait_phase("tj-orphan", "Stopped", "Succeeded", "Failed", timeout=20)
        assert status["phase"] == "Stopped" and status["reason"] == "WorkloadDeleted"
        assert "does not recreate" in status["message"]
        await cycles(env, metrics_port, 3)
        assert not env.child_job("tj-orphan")
        assert len(env.api.calls("create", "jobs")) == 1
        assert env.event_reasons("tj-orphan") == ["Running", "Stopped"]
        await env.wait("its trainer gone", lambda: env.kubelet.pods["tj-orphan"].trainer.poll() is not None, timeout=15)
        assert env.status("tj-orphan")["phase"] == "Stopped"


# --- 6. No DCGM series for the job's pods --------------------------------------------------------------


class FakeDcgmExporter:
    """dcgm-exporter's /metrics: idle GPUs (0%) for the given pods, with history.

    dcgm-exporter collects every 30s; its samples carry that collection time here, starting
    `history` seconds ago, one sample per scrape until caught up with the clock. So
    Prometheus holds a full idle window for these series within seconds of starting.
    """

    def __init__(self, series: list[dict[str, str]], history: float = 150.0, collect: float = 30.0) -> None:
        self.series = series
        self.history = history
        self.collect = collect
        self.port = free_port()
        self._last: Optional[float] = None

    async def __aenter__(self) -> FakeDcgmExporter:
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self._runner.cleanup()

    async def _metrics(self, _: web.Request) -> web.Response:
        now = time.time()
        if self._last is None:  # collection times on a grid of 30s (+1s), from `history` ago
            self._last = (now - self.history) // self.collect * self.collect + 1
        elif self._last + self.collect <= now:
            self._last += self.collect
        at = self._last
        lines = ["# TYPE DCGM_FI_DEV_GPU_UTIL gauge"]
        for labels in self.series:
            text = ",".join(f'{k}="{v}"' for k, v in labels.items())
            lines.append(f"DCGM_FI_DEV_GPU_UTIL{{{text}}} 0 {int(at * 1000)}")
        return web.Response(text="\n".join(lines) + "\n", content_type="text/plain")


async def test_no_dcgm_series_for_the_jobs_pods_is_unknown_never_idle(tmp_path: Path) -> None:
    pod, control = (f"{label_value(j)}-0-x7k2p" for j in ("tj-nogpu", "tj-idle"))
    idle = [
        {"gpu": "0", "pod": "dcgm-exporter-5k2xw", "namespace": "gpu-operator"},  # an unassigned GPU
        {"gpu": "1", "pod": pod, "namespace": "team-b"},  # the same pod name in another namespace
        {"gpu": "2", "pod": "tj-nogpu-1-a9f3c", "namespace": NAMESPACE},  # another pod in the namespace
        {"gpu": "3", "pod": control, "namespace": NAMESPACE},  # the control job's own GPU
    ]
    stop = {"gpuIdle": {"below": 0.5, "for": "1m"}, "gracePeriod": "20s"}
    async with FakeDcgmExporter(idle) as dcgm, \
            Environment(tmp_path, ["tj-nogpu", "tj-idle"], extra_targets=((f"127.0.0.1:{dcgm.port}", {}),)) as env:
        assert [s.pod for s in env.slots] == [pod, control]
        env.start_operator()
        env.create(training_job("tj-nogpu", stop, trainer(*PLATEAUING), gpus=1),
                   training_job("tj-idle", stop, trainer(*PLATEAUING), gpus=1))
        # The control: a job whose own GPU is in that data, idle for the window, is stopped, so
        # the data is there and the operator finds the pods of a job with no metric rule.
        stopped = await env.wait_phase("tj-idle", "Stopped", timeout=40)
        assert stopped["reason"] == "GpuIdle", stopped
        assert condition(stopped, "GpuMetricsAvailable")["status"] == "True"
        gpu = condition(env.status("tj-nogpu"), "GpuMetricsAvailable")
        assert (gpu["status"], gpu["reason"]) == ("False", "NoDcgmSeries"), gpu
        assert "unknown" in gpu["message"]
        assert "MetricsAvailable" not in {c["type"] for c in env.status("tj-nogpu")["conditions"]}  # no metric rule

        start = env.status("tj-nogpu")["runningSeconds"]
        await env.wait("five more evaluation cycles", lambda: env.status("tj-nogpu")["runningSeconds"] >= start + 5, timeout=20)
        status = env.status("tj-nogpu")
        assert status["phase"] == "Running" and not status.get("wouldStop")
        assert condition(status, "GpuMetricsAvailable")["reason"] == "NoDcgmSeries"
        assert status["gpuHours"] > 0  # the job holds a GPU: only its utilisation is unknown
        assert env.event_reasons("tj-nogpu") == ["Running"]


# --- 7. Names and label values that are regex or PromQL metacharacters ------------------------------------


async def test_regex_like_names_and_hostile_values_get_only_their_own_series(tmp_path: Path) -> None:
    hostile = 'val_loss|accuracy"} or vector(1) or up{x=~".*'
    async with Environment(tmp_path, ["tj.a", "tj-a", "tj-hostile"]) as env:
        metrics_port = operator_port()
        env.start_operator("--metrics-port", str(metrics_port))
        env.create(
            # "tj.a" read as a regex matches "tj-a"; its cohort selector's value "lr.1" matches "lrx1".
            training_job("tj.a", {"metric": NEVER, "cohort": {"selector": {"matchLabels": {"sweep": "lr.1"}}, "minJobs": 1}},
                         trainer("--dataset", "breast_cancer", "--lr", "0.001", "--epochs", "400", "--sleep", "0.4"),
                         labels={"sweep": "lr.1"}),
            training_job("tj-a", {"metric": PLATEAU, "gracePeriod": "20s"}, trainer(*PLATEAUING), labels={"sweep": "lrx1"}),
            training_job("tj-hostile", {"metric": {"name": hostile, "patience": 1}}, trainer(*PLATEAUING)),
        )
        stopped = await env.wait_phase("tj-a", "Stopped", timeout=60)
        assert stopped["reason"] == "Plateau"

        # Each job's recorded metric is a value its own trainer logged at that step.
        for job in ("tj.a", "tj-a"):
            metric = env.status(job)["metric"]
            own = dict(epochs(env, job))
            assert metric["lastStep"] in own, (job, metric, sorted(own)[-5:])
            assert abs(own[metric["lastStep"]] - metric["last"]) < 1e-5, (job, metric)
        assert env.status("tj.a")["metric"]["lastStep"] % 7 == 0  # breast_cancer: 7 steps an epoch
        assert env.status("tj-a")["metric"]["lastStep"] % 22 == 0  # digits: 22 steps an epoch

        # The hostile metric name selects nothing, and breaks nobody else's query.
        hostile_status = env.status("tj-hostile")
        assert hostile_status["phase"] == "Running" and not hostile_status.get("metric")
        assert condition(hostile_status, "MetricsAvailable")["reason"] == "NoSeries"
        assert condition(env.status("tj.a"), "MetricsAvailable")["status"] == "True"
        # No peer labelled exactly sweep=lr.1: the worse run is never stopped for its cohort.
        assert env.status("tj.a")["phase"] == "Running"
        assert env.event_reasons("tj.a") == ["Running"] and env.event_reasons("tj-hostile") == ["Running"]
        counted = await operator_metrics(metrics_port)
        assert not [k for k, v in counted.items() if k.startswith("plateau_operator_prometheus_errors_total") and v], counted
