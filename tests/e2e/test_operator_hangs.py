"""End to end: the operator when the API server stops answering.

A real `plateau-operator` process against the emulated API server, which makes chosen
requests hang (`api.inject(..., status=None, delay=...)`). Each request is cut off at the
operator's API timeout and counted; /healthz (the chart's livenessProbe) fails while the
evaluation loop is stuck and recovers when it goes on; SIGTERM ends the process within the
chart's terminationGracePeriodSeconds though every request hangs: cleanly when requests time out
before the shutdown deadline, by kopf's last-resort SIGKILL at the deadline when one outlasts it.
Along the way: probes write no access-log line, and every write names the field manager `plateau`.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.e2e.harness import NAMESPACE, OPERATOR_SA, Environment, operator_port
from tests.e2e.test_operator_reliability import operator_metrics
from tests.support.chart import only, render

pytestmark = pytest.mark.e2e

DEPLOYMENT: dict[str, Any] = {
    "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "serve", "namespace": NAMESPACE},
    "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "serve"}},
             "template": {"metadata": {"labels": {"app": "serve"}},
                          "spec": {"containers": [{"name": "serve", "image": "serve:1"}]}}},
}
# Each evaluation cycle reads the referenced Deployment: a hang on that read stalls the cycle.
WATCHER: dict[str, Any] = {
    "apiVersion": "plateau.dev/v1alpha1", "kind": "TrainingJob", "metadata": {"name": "tj-ref", "namespace": NAMESPACE},
    "spec": {"workloadRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "serve"},
             "stop": {"maxDuration": "24h"}},
}
READ = rf"/apis/apps/v1/namespaces/{NAMESPACE}/deployments/serve$"


async def liveness(port: int) -> int:
    """The status /healthz answers, as the kubelet's livenessProbe sees it (on --metrics-port + 1)."""
    async with aiohttp.ClientSession() as session:
        async with session.get(f"http://127.0.0.1:{port + 1}/healthz", timeout=aiohttp.ClientTimeout(total=5)) as r:
            return r.status


async def until(what: str, env: Environment, probe: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not await probe():
        assert time.monotonic() < deadline, f"timed out waiting for {what}:\n{env.operator_log()}"
        await asyncio.sleep(0.2)


async def test_a_hung_read_is_cut_off_counted_and_liveness_fails_until_cycles_go_on(tmp_path: Path) -> None:
    async with Environment(tmp_path, []) as env:
        env.create(DEPLOYMENT, WATCHER)
        port = operator_port()
        # Cycles every second; /healthz fails after 3 s without one; a request waits 4 s at most.
        env.start_operator("--metrics-port", str(port), "--liveness-intervals", "3", "--api-timeout", "4s")
        await env.wait("cycles reading the Deployment", lambda: len(env.api.calls("get", "deployments")) >= 3, timeout=60)
        assert await liveness(port) == 200

        hang = env.api.inject(READ, "get", None, delay=120, times=2)  # two reads that would answer after 2 min
        await until("/healthz to fail", env, lambda: _is(liveness(port), 503), timeout=15)
        stalled = time.monotonic()
        await until("/healthz to recover", env, lambda: _is(liveness(port), 200), timeout=30)
        assert time.monotonic() - stalled < 60  # the cycle went on long before the hung reads would have answered
        assert hang.hits == 2
        counted = await operator_metrics(port)
        assert counted['plateau_operator_api_errors_total{code="timeout",verb="get deployments"}'] == 2
        assert not any(k.startswith("plateau_operator_api_errors_total") and 'code="timeout"' not in k
                       for k, v in counted.items() if v)  # nothing else failed
        assert "/healthz" not in env.operator_log()  # probes write no access-log line
        operator = f"system:serviceaccount:{OPERATOR_SA[0]}:{OPERATOR_SA[1]}"
        writes = [r for r in env.api.log if r.user == operator and r.verb in ("create", "update", "patch")]
        assert {r.resource for r in writes} >= {"leases", "trainingjobs"}  # the Lease, the status
        assert {r.query.get("fieldManager") for r in writes} == {"plateau"}  # not OpenAPI-Generator


async def _is(status: Any, wanted: int) -> bool:
    try:
        return await status == wanted
    except aiohttp.ClientError:
        return False


async def terminate_while_everything_hangs(env: Environment, operator: subprocess.Popen[bytes]) -> tuple[float, int]:
    """Once the operator cycles as the leader, make every request hang, then SIGTERM it: (seconds to exit, code)."""
    await env.wait("cycles as the leader", lambda: len(env.api.calls("get", "deployments")) >= 3, timeout=60)
    hang = env.api.inject("", None, None, delay=600, times=None)  # from now on the server never answers
    await env.wait("the lease renewal and the cycle hanging", lambda: hang.hits >= 2, timeout=10)
    stopping = time.monotonic()
    operator.send_signal(signal.SIGTERM)
    try:
        code = await asyncio.wait_for(asyncio.to_thread(operator.wait), 60)
    except asyncio.TimeoutError:
        raise AssertionError(f"still running 60 s after SIGTERM:\n{env.operator_log()}") from None
    env.api.faults.clear()
    return time.monotonic() - stopping, code


async def test_sigterm_ends_the_operator_within_the_charts_grace_period_while_every_request_hangs(tmp_path: Path) -> None:
    pod = only(render(), "Deployment")["spec"]["template"]["spec"]
    grace = pod["terminationGracePeriodSeconds"]  # the kubelet SIGKILLs the pod after it
    async with Environment(tmp_path, []) as env:
        env.create(DEPLOYMENT, WATCHER)
        operator = env.start_operator("--metrics-port", str(operator_port()))  # the defaults, as the chart's
        took, code = await terminate_while_everything_hangs(env, operator)
        assert took < grace, f"exited {took:.1f} s after SIGTERM, after the grace period ({grace} s):\n{env.operator_log()}"
        assert code == 0, env.operator_log()  # requests time out before the deadline: a clean exit


async def test_the_shutdown_deadline_holds_even_when_a_request_outlasts_it(tmp_path: Path) -> None:
    async with Environment(tmp_path, []) as env:
        env.create(DEPLOYMENT, WATCHER)
        # A request may wait 2 min, but the process must be gone 6 s after SIGTERM.
        operator = env.start_operator("--metrics-port", str(operator_port()), "--api-timeout", "120s",
                                      "--shutdown-timeout", "6s")
        took, code = await terminate_while_everything_hangs(env, operator)
        assert took < 9, f"exited {took:.1f} s after SIGTERM, code {code}:\n{env.operator_log()}"
        assert code == -signal.SIGKILL, env.operator_log()  # kopf's last resort, at the deadline
