"""End to end: the operator deployed as the Helm chart deploys it.

Two replicas with leader election (only the Lease holder acts; the standby takes over when
the leader dies), and one replica started with exactly the environment the chart's default
values give the Deployment. Real trainer, sidecar, Prometheus and operator processes; the
emulated API server (RBAC on, exactly the chart's rules) is the only stand-in.
"""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.e2e.harness import OPERATOR_SA, PYTHON, Environment, trainer, training_job
from tests.support.chart import operator_command

pytestmark = pytest.mark.e2e

PLATEAUING = ("--lr", "1.0", "--epochs", "400", "--sleep", "0.4")
MUTATING = ("create", "update", "patch", "delete", "deletecollection")


def lease(env: Environment, name: str) -> dict[str, Any]:
    found = [o for o in env.api.objects("coordination.k8s.io/v1", "Lease", OPERATOR_SA[0]) if o["metadata"]["name"] == name]
    return found[0] if found else {}


def micro_time(text: str) -> float:
    return datetime.strptime(text.replace("Z", "+0000"), "%Y-%m-%dT%H:%M:%S.%f%z").timestamp()


def writes_by(env: Environment, user: str) -> list[str]:
    """What `user` changed, leases aside: 'verb resource[/subresource] name'."""
    def name(r: Any) -> str:
        return r.name or ((r.body or {}).get("metadata") or {}).get("name") or ""

    return [f"{r.verb} {r.resource}{'/' + r.subresource if r.subresource else ''} {name(r)}".strip()
            for r in env.api.log if r.user == user and r.verb in MUTATING and r.resource != "leases"]


# --- 10. Two replicas, one leader -----------------------------------------------------------------


async def test_only_the_leader_acts_and_the_standby_finishes_its_stop_after_it_dies(tmp_path: Path) -> None:
    async with Environment(tmp_path, ["tj-ha"]) as env:
        # Two replicas (different pod names); each its own ServiceAccount with the same rules,
        # so the request log tells who did what.
        replicas = {
            "plateau-6c8b9-a": (env.start_operator(identity="plateau-6c8b9-a", service_account="plateau-a"),
                                f"system:serviceaccount:{OPERATOR_SA[0]}:plateau-a"),
            "plateau-6c8b9-b": (env.start_operator(identity="plateau-6c8b9-b", service_account="plateau-b"),
                                f"system:serviceaccount:{OPERATOR_SA[0]}:plateau-b"),
        }
        env.create(training_job("tj-ha", {"maxDuration": "3s", "gracePeriod": "4s"}, trainer(*PLATEAUING, "--ignore-stop")))

        await env.wait("the StopRequested Event", lambda: "StopRequested" in env.event_reasons("tj-ha"), timeout=60)
        held = lease(env, "plateau-operator")["spec"]
        leader = held["holderIdentity"]
        [standby] = [name for name in replicas if name != leader]
        leader_process, leader_user = replicas[leader]
        standby_process, standby_user = replicas[standby]
        assert env.status("tj-ha")["phase"] == "Stopping"
        assert held["leaseDurationSeconds"] == 15 and held["leaseTransitions"] == 0
        assert writes_by(env, standby_user) == []  # it watched, and touched nothing
        mine = writes_by(env, leader_user)
        assert "create jobs tj-ha" in mine and "patch pods tj-ha-0-x7k2p" in mine
        assert mine.count("create events") == 2  # Running, StopRequested
        assert env.api.calls("get", "leases") and {r.user for r in env.api.calls("update", "leases")} == {leader_user}

        # The leader dies without handing the lease back; the standby waits the lease out.
        renewed = micro_time(lease(env, "plateau-operator")["spec"]["renewTime"])
        env.kill_operator(leader_process)
        killed = time.time()
        await env.wait("the standby holding the lease", lambda: lease(env, "plateau-operator")["spec"]["holderIdentity"] == standby,
                       timeout=30)
        took_over = time.time()
        taken = lease(env, "plateau-operator")["spec"]
        assert taken["leaseTransitions"] == 1
        # Not before the lease expired, and within its duration plus one retry period (2s).
        assert micro_time(taken["acquireTime"]) - renewed >= 15
        assert took_over - killed <= 15 + 2 + 3, f"takeover took {took_over - killed:.1f}s after the kill"

        status = await env.wait_phase("tj-ha", "Stopped", timeout=20)
        await env.wait_events("tj-ha", ["Running", "StopRequested", "Stopped"])
        assert status["reason"] == "DeadlineExceeded" and "gracePeriod 4s is over" in status["message"]
        assert env.child_job("tj-ha")["spec"]["suspend"] is True
        assert env.event_reasons("tj-ha") == ["Running", "StopRequested", "Stopped"]
        # kubectl describe names the replica that acted
        events = sorted(env.events("tj-ha"), key=lambda e: e["metadata"]["resourceVersion"])
        assert [e["reportingInstance"] for e in events] == [leader, leader, standby]
        assert writes_by(env, standby_user).count("create events") == 1  # Stopped
        assert "patch jobs tj-ha" in writes_by(env, standby_user)
        assert "patch pods tj-ha-0-x7k2p" not in writes_by(env, standby_user)  # the request was not repeated
        assert standby_process.poll() is None


# --- 11. The chart's default values --------------------------------------------------------------------


async def test_the_charts_default_values_run_a_stop(tmp_path: Path) -> None:
    chart = operator_command()  # helm template with the default values, as pod plateau-operator-0
    assert chart.command == ["plateau-operator"] and not chart.args
    async with Environment(tmp_path, ["tj-chart"]) as env:
        # Exactly the chart's environment; only the cluster credentials and Prometheus's
        # address differ from a real install.
        variables = {**chart.env, "KUBECONFIG": env.operator_kubeconfig, "PLATEAU_PROMETHEUS_URL": env.prometheus.url}
        process = env.spawn_operator([str(Path(PYTHON).parent / chart.command[0]), *chart.args], variables,
                                     identity=chart.env["POD_NAME"])
        # The deadline stops it; the metric rule (which never fires) shows Prometheus is read.
        env.create(training_job("tj-chart", {"maxDuration": "3s", "metric": {"name": "val_loss", "patience": 100000}},
                                trainer(*PLATEAUING)))

        status = await env.wait_phase("tj-chart", "Stopped", timeout=60)
        assert status["reason"] == "DeadlineExceeded" and "the trainer exited" in status["message"]
        await env.wait_events("tj-chart", ["Running", "StopRequested", "Stopped"])
        available = next(c for c in status["conditions"] if c["type"] == "MetricsAvailable")
        assert available["status"] == "True" and status["metric"]["name"] == "val_loss" and status["evaluations"] > 0
        held = lease(env, chart.env["PLATEAU_LEASE_NAME"])
        assert held["metadata"]["namespace"] == chart.env["POD_NAMESPACE"] == OPERATOR_SA[0]
        assert held["spec"]["holderIdentity"] == "plateau-operator-0"
        port = int(chart.env["PLATEAU_METRICS_PORT"])
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{port}/metrics") as r:
                assert r.status == 200 and "\nplateau_operator_leader 1.0\n" in await r.text()
            async with session.get(f"http://127.0.0.1:{port + 1}/healthz") as r:  # the livenessProbe
                assert r.status == 200
        assert process.poll() is None
