"""One end-to-end environment: emulated API (RBAC on), real Prometheus, kubelet stand-in
running real trainer and sidecar processes, and the real `plateau-operator` process under
exactly the RBAC rules the Helm chart grants it."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any, Callable, Optional

import yaml

from plateau import rbac
from plateau.workloads import label_value
from tests.support.apiserver import ApiServer
from tests.support.apiserver.server import ADMIN_TOKEN
from tests.support.kubelet import Kubelet, PodSlot
from tests.support.prometheus import PrometheusServer, free_port

REPO = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
NAMESPACE = "default"
OPERATOR_SA = ("plateau-system", "plateau")


def trainer(*flags: str) -> list[str]:
    return ["python", "examples/trainer/train.py", *flags]


def training_job(name: str, stop: dict[str, Any], command: list[str], *, labels: Optional[dict[str, str]] = None,
                 gpus: int = 0, metrics: Optional[dict[str, Any]] = None) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "trainer", "image": "trainer:local", "command": command}
    if gpus:
        container["resources"] = {"limits": {"nvidia.com/gpu": gpus}}
    return {
        "apiVersion": "plateau.dev/v1alpha1",
        "kind": "TrainingJob",
        "metadata": {"name": name, "namespace": NAMESPACE, "labels": labels or {}},
        "spec": {"template": {"spec": {"containers": [container]}}, "metrics": metrics or {"scrapeInterval": "1s"},
                 "stop": stop},
    }


class Environment:
    """`async with Environment(tmp_path, ["job-a", ...]) as env:` — jobs named up front."""

    def __init__(self, workdir: Path, jobs: list[str], extra_targets: tuple[tuple[str, dict[str, str]], ...] = (),
                 prometheus_url: Optional[Callable[[str], str]] = None, interval: str = "1s") -> None:
        self.workdir = workdir
        self.slots = [PodSlot(j, f"{label_value(j)}-0-x7k2p", free_port()) for j in jobs]
        self.extra_targets = extra_targets
        self.prometheus_url = prometheus_url
        self.interval = interval
        self.stack = AsyncExitStack()
        self.operators: list[subprocess.Popen[bytes]] = []
        self.api: ApiServer

    async def __aenter__(self) -> Environment:
        self.api = await self.stack.enter_async_context(ApiServer(rbac=True))
        self.api.apply((REPO / "crds" / "trainingjob.yaml").read_text())
        self.api.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": OPERATOR_SA[0]}})
        self.api.grant(f"system:serviceaccount:{OPERATOR_SA[0]}:{OPERATOR_SA[1]}", rbac.RULES)
        self.api.grant(f"system:serviceaccount:{OPERATOR_SA[0]}:{OPERATOR_SA[1]}", rbac.LEASE_RULES, namespace=OPERATOR_SA[0])
        (self.workdir / "prometheus").mkdir(parents=True, exist_ok=True)
        self.prometheus = PrometheusServer(self.workdir / "prometheus")
        for slot in self.slots:
            self.prometheus.add_target(f"127.0.0.1:{slot.port}", labels={"namespace": NAMESPACE, "pod": slot.pod})
        for address, labels in self.extra_targets:
            self.prometheus.add_target(address, job="dcgm-exporter", labels=labels)
        await asyncio.to_thread(self.prometheus.start)
        self.stack.callback(self.prometheus.stop)
        self.kubelet = await self.stack.enter_async_context(
            Kubelet(self.api.url, ADMIN_TOKEN, self.workdir / "pods", self.slots, NAMESPACE))
        self.operator_kubeconfig = self.api.write_kubeconfig(
            str(self.workdir / "operator.kubeconfig"), token=self.api.service_account_token(*OPERATOR_SA))
        self.stack.push_async_callback(self._stop_operators)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stack.aclose()

    # --- the operator process -------------------------------------------------------------

    def start_operator(self, *flags: str, identity: str = "op-1") -> subprocess.Popen[bytes]:
        url = self.prometheus_url(self.prometheus.url) if self.prometheus_url else self.prometheus.url
        log = open(self.workdir / f"operator-{identity}-{len(self.operators)}.log", "wb")
        env = {**os.environ, "KUBECONFIG": self.operator_kubeconfig, "POD_NAME": identity,
               "POD_NAMESPACE": OPERATOR_SA[0]}
        process = subprocess.Popen(
            [str(Path(PYTHON).parent / "plateau-operator"), "--prometheus-url", url, "--interval", self.interval,
             "--status-interval", "1s", "--namespaces", NAMESPACE, "--metrics-port", str(free_port()), *flags],
            env=env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
        self.operators.append(process)
        return process

    def operator_log(self) -> str:
        return "\n".join(p.read_text(errors="replace")[-6000:] for p in sorted(self.workdir.glob("operator-*.log")))

    async def _stop_operators(self) -> None:
        for p in self.operators:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.operators:
            try:
                await asyncio.wait_for(asyncio.to_thread(p.wait), 15)
            except asyncio.TimeoutError:
                p.kill()

    # --- reading the cluster --------------------------------------------------------------

    def create(self, *objects: dict[str, Any]) -> None:
        self.api.apply(*objects)

    def tj(self, name: str) -> dict[str, Any]:
        found = [o for o in self.api.objects("plateau.dev/v1alpha1", "TrainingJob", NAMESPACE) if o["metadata"]["name"] == name]
        return found[0] if found else {}

    def status(self, name: str) -> dict[str, Any]:
        return self.tj(name).get("status") or {}

    def child_job(self, name: str) -> dict[str, Any]:
        found = [o for o in self.api.objects("batch/v1", "Job", NAMESPACE) if o["metadata"]["name"] == name]
        return found[0] if found else {}

    def events(self, name: str) -> list[dict[str, Any]]:
        return [e for e in self.api.objects("v1", "Event", NAMESPACE)
                if (e.get("involvedObject") or {}).get("name") == name]

    def event_reasons(self, name: str) -> list[str]:
        return [e["reason"] for e in sorted(self.events(name), key=lambda e: e["metadata"]["resourceVersion"])]

    async def wait(self, what: str, probe: Callable[[], Any], timeout: float = 90.0) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for p in self.operators:
                if p.poll() not in (None, 0):
                    raise AssertionError(f"the operator exited with {p.returncode}:\n{self.operator_log()}")
            value = probe()
            if value:
                return value
            await asyncio.sleep(0.25)
        raise AssertionError(f"timed out waiting for {what}; statuses:\n"
                             + yaml.safe_dump({s.job: self.status(s.job) for s in self.slots})
                             + f"\noperator log:\n{self.operator_log()}"
                             + "".join(f"\ntrainer {s.job}:\n{self.kubelet.trainer_log(s.job)[-1500:]}" for s in self.slots))

    async def wait_phase(self, name: str, *phases: str, timeout: float = 90.0) -> dict[str, Any]:
        return await self.wait(f"{name} in {phases}", lambda: self.status(name).get("phase") in phases and self.status(name),
                               timeout)
