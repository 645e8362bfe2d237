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

from plateau.controller import rbac
from plateau.controller.children import label_value
from tests.support.apiserver import ApiServer
from tests.support.apiserver.server import ADMIN_TOKEN
from tests.support.kubelet import Kubelet, PodSlot
from tests.support.kueue import WORKLOAD_CRD, Kueue
from tests.support.prometheus import PrometheusServer, free_port

REPO = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
NAMESPACE = "default"
OPERATOR_SA = ("plateau-system", "plateau")


def operator_port() -> int:
    """A --metrics-port for an operator: kopf's liveness endpoint takes the next port on 0.0.0.0."""
    return free_port(span=2)


def trainer(*flags: str) -> list[str]:
    # An absolute path: the kubelet stand-in runs the trainer in its pod's own directory.
    return ["python", str(REPO / "examples" / "trainer" / "train.py"), *flags]


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
                 prometheus_url: Optional[Callable[[str], str]] = None, interval: str = "1s", tls: bool = False,
                 kueue: bool = False, feature_gates: Optional[dict[str, bool]] = None,
                 images: Optional[dict[str, Path]] = None) -> None:
        self.workdir = workdir
        self.images = images or {}  # image stand-ins for the kubelet: {image name: the directory it holds}
        self.tls = tls  # HTTPS, for kubectl: it sends credentials only over TLS
        self.with_kueue = kueue  # run the Kueue stand-in (tests.support.kueue) next to the kubelet
        self.feature_gates = feature_gates or {}  # the emulated API server's, e.g. {"SidecarContainers": False} (1.28)
        self.killed: set[int] = set()  # pids of operators a test killed on purpose
        self.slots = [PodSlot(j, f"{label_value(j)}-0-x7k2p", free_port(), free_port()) for j in jobs]
        self.extra_targets = extra_targets
        self.prometheus_url = prometheus_url
        self.interval = interval
        self.stack = AsyncExitStack()
        self.operators: list[subprocess.Popen[bytes]] = []
        self.api: ApiServer

    async def __aenter__(self) -> Environment:
        self.api = await self.stack.enter_async_context(ApiServer(rbac=True, tls=self.tls, feature_gates=self.feature_gates))
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
            Kubelet(self.api.url, ADMIN_TOKEN, self.workdir / "pods", self.slots, NAMESPACE, self.api.client_ssl(),
                    self.images))
        if self.with_kueue:
            self.api.apply(WORKLOAD_CRD)
            self.kueue = await self.stack.enter_async_context(Kueue(self.api.url, ADMIN_TOKEN, NAMESPACE, self.api.client_ssl()))
        self.operator_kubeconfig = self.api.write_kubeconfig(
            str(self.workdir / "operator.kubeconfig"), token=self.api.service_account_token(*OPERATOR_SA))
        self.stack.push_async_callback(self._stop_operators)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stack.aclose()

    # --- the operator process -------------------------------------------------------------

    def start_operator(self, *flags: str, identity: str = "op-1",
                       service_account: Optional[str] = None) -> subprocess.Popen[bytes]:
        """`service_account`: run as another ServiceAccount (same rules) in the operator's namespace,
        so the request log tells replicas apart by user."""
        url = self.prometheus_url(self.prometheus.url) if self.prometheus_url else self.prometheus.url
        kubeconfig = self.kubeconfig_for(service_account) if service_account else self.operator_kubeconfig
        env = {**os.environ, "KUBECONFIG": kubeconfig, "POD_NAME": identity, "POD_NAMESPACE": OPERATOR_SA[0]}
        return self.spawn_operator(
            [str(Path(PYTHON).parent / "plateau-operator"), "--prometheus-url", url, "--interval", self.interval,
             "--status-interval", "1s", "--namespaces", NAMESPACE, "--metrics-port", str(operator_port()), *flags],
            env, identity)

    def spawn_operator(self, argv: list[str], env: dict[str, str], identity: str) -> subprocess.Popen[bytes]:
        """Start an operator process exactly as given (argv, whole environment); it is stopped at exit."""
        log = open(self.workdir / f"operator-{identity}-{len(self.operators)}.log", "wb")
        process = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
        self.operators.append(process)
        return process

    def kubeconfig_for(self, service_account: str) -> str:
        """A kubeconfig for ServiceAccount plateau-system/NAME, granted exactly the operator's rules."""
        user = f"system:serviceaccount:{OPERATOR_SA[0]}:{service_account}"
        self.api.grant(user, rbac.RULES)
        self.api.grant(user, rbac.LEASE_RULES, namespace=OPERATOR_SA[0])
        return self.api.write_kubeconfig(str(self.workdir / f"{service_account}.kubeconfig"),
                                         token=self.api.service_account_token(OPERATOR_SA[0], service_account))

    def kill_operator(self, process: subprocess.Popen[bytes]) -> None:
        """SIGKILL: no cleanup, no lease release, as when a node or the OOM killer takes it."""
        self.killed.add(process.pid)
        process.kill()
        process.wait()

    async def kubectl(self, *args: str, input: Optional[str] = None) -> tuple[int, str, str]:
        """Real kubectl as the admin (`Environment(tls=True)`: kubectl sends tokens only over TLS)."""
        from tests.support.apiserver.testing import kubectl_binary

        config = self.api.write_kubeconfig(str(self.workdir / "admin.kubeconfig"))
        process = await asyncio.create_subprocess_exec(
            kubectl_binary(), *args, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={**os.environ, "KUBECONFIG": config, "KUBECACHEDIR": str(self.workdir / "kubecache")})
        stdout, stderr = await process.communicate(input.encode() if input is not None else None)
        return process.returncode or 0, stdout.decode(), stderr.decode()

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

    async def request(self, method: str, path: str, body: Any = None,
                      content_type: str = "application/merge-patch+json") -> tuple[int, Any]:
        """One HTTP request to the API as the admin, as a user's client would send it: (status, JSON body)."""
        import aiohttp

        connector = aiohttp.TCPConnector(ssl=self.api.client_ssl() or True)
        async with aiohttp.ClientSession(base_url=self.api.url, connector=connector,
                                         headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as session:
            async with session.request(method, path, json=body,
                                       headers={"Content-Type": content_type} if body is not None else {}) as r:
                return r.status, await r.json(content_type=None)

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
                if p.poll() not in (None, 0) and p.pid not in self.killed:
                    raise AssertionError(f"the operator exited with {p.returncode}:\n{self.operator_log()}")
            value = probe()
            if value:
                return value
            await asyncio.sleep(0.25)
        raise AssertionError(f"timed out waiting for {what}; statuses:\n"
                             + yaml.safe_dump({s.job: self.status(s.job) for s in self.slots})
                             + f"\noperator log:\n{self.operator_log()}"
                             + "".join(f"\ntrainer {s.job}:\n{self.kubelet.trainer_log(s.job)[-1500:]}"
                                       f"\nsidecar {s.job}:\n{self.kubelet.sidecar_log(s.job)[-1500:]}" for s in self.slots))

    async def wait_events(self, name: str, reasons: list[str], timeout: float = 10.0) -> None:
        """Wait for exactly these Event reasons, in order. The operator posts an Event just after
        the status write it follows, so a test that saw the status may be a moment early."""
        try:
            await self.wait(f"Events {reasons} of {name}", lambda: self.event_reasons(name) == reasons, timeout)
        except AssertionError as exc:
            raise AssertionError(f"Events of {name}: {self.event_reasons(name)}, not {reasons}\n{exc}") from None

    async def wait_phase(self, name: str, *phases: str, timeout: float = 90.0) -> dict[str, Any]:
        return await self.wait(f"{name} in {phases}", lambda: self.status(name).get("phase") in phases and self.status(name),
                               timeout)


def existing_job(name: str, trainingjob: str, command: list[str]) -> dict[str, Any]:
    """A batch/v1 Job a user already runs, with Plateau's sidecar added by hand as
    docs/user-guide.md says: the shared volume, and the downward-API files of the stop request
    and of the metric stop spec (which the operator annotates the pods with)."""
    metrics_file = "/plateau/metrics.jsonl"
    shared = {"name": "shared", "mountPath": "/plateau"}
    plateau = {"name": "plateau", "mountPath": "/etc/plateau", "readOnly": True}
    items = [{"path": path, "fieldRef": {"fieldPath": f"metadata.annotations['{key}']"}}
             for path, key in (("stop", "plateau.dev/stop"), ("spec", "plateau.dev/metric-spec"))]
    return {
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {"template": {"spec": {
            "restartPolicy": "Never",
            "volumes": [{"name": "shared", "emptyDir": {}}, {"name": "plateau", "downwardAPI": {"items": items}}],
            "initContainers": [{
                "name": "plateau-sidecar", "image": "plateau:local", "restartPolicy": "Always",
                "command": ["plateau-sidecar"], "volumeMounts": [shared, plateau],
                "env": [{"name": "PLATEAU_TRAININGJOB", "value": trainingjob},
                        {"name": "PLATEAU_METRICS_FILE", "value": metrics_file},
                        {"name": "PLATEAU_SPEC_FILE", "value": "/etc/plateau/spec"}],
            }],
            "containers": [{"name": "trainer", "image": "trainer:local", "command": command,
                            "volumeMounts": [shared, plateau],
                            "env": [{"name": "PLATEAU_METRICS_FILE", "value": metrics_file},
                                    {"name": "PLATEAU_STOP_FILE", "value": "/etc/plateau/stop"}]}],
        }}},
    }
