"""A Job controller and kubelet stand-in for end-to-end tests against the emulated API server.

The emulator runs no controllers, so nothing would ever run a Job's pods. `Kubelet` does
what the real ones do for the parts Plateau depends on, with real processes:

- for each unsuspended, unfinished batch/v1 Job it creates a Pod object and starts the
  pod's trainer (containers[0]) and its native sidecar (the initContainer with
  `restartPolicy: Always`) as local processes;
- each emptyDir and downwardAPI volume of the pod is a directory of its own; a container sees
  only its own volumeMounts: a path in its env is rewritten to the local directory only where
  it lies inside one of them (so a mount in the wrong place leaves the path unresolved, as in
  a real pod), and env is otherwise as given (the stand-in rewrites only the ports, since pods
  share this host's network);
- it keeps Job status as the Job controller would: `active` counts the pod from its creation,
  pending included, `ready` once its containers run (as on a real v1.28 server: DESIGN.md),
  startTime, succeeded/failed with Complete/Failed conditions, and active 0 once suspended;
- a Job named in `unschedulable` gets its pod but the pod stays Pending with the scheduler's
  PodScheduled=False/Unschedulable condition, until the name is removed (a node frees up);
- containers start by `restartPolicy`: an init container without `restartPolicy: Always` must
  finish before the others start, so a sidecar that lost it (a v1.28 server without the
  SidecarContainers gate) leaves the pod in Init for good, and no trainer runs;
- a suspended Job that is resumed gets a new pod (same name and ports, fresh emptyDirs), and
  a Job that disappears (deleted, or garbage-collected with its owner) has its pod deleted
  and its processes terminated, as the garbage collector and the kubelet would;
- the trainer runs in the pod's own directory, so relative paths it writes (checkpoints)
  stay out of the test's working directory;
- like the kubelet, it renders each downwardAPI volume's annotation items from the pod's
  current annotations into that volume (a Job without the volume gets no file).

Pod names and sidecar ports are fixed up front (`PodSlot`) because Prometheus 2.42 needs its
scrape targets configured before it starts.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import ssl
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


from plateau_sidecar import protocol
from tests.support.controller import ControllerLoop

VENV_BIN = Path(sys.executable).parent


@dataclass(frozen=True)
class PodSlot:
    """Where one Job's pod will run: its name and its sidecar's metrics port."""

    job: str
    pod: str
    port: int
    push_port: int = 0


@dataclass
class RunningPod:
    slot: PodSlot
    trainer: subprocess.Popen[bytes]
    sidecar: subprocess.Popen[bytes]
    volumes: dict[str, Path]  # the pod's volumes by name, each a directory of its own
    log: Path
    started: float
    terminated: bool = False
    suspended: bool = False  # terminated because its Job was suspended: a resume starts a new pod
    signals: list[str] = field(default_factory=list)


def volume_dirs(pod_spec: dict[str, Any], root: Path) -> dict[str, Path]:
    """A fresh directory for each emptyDir and downwardAPI volume of the pod (other kinds are
    not Plateau's and not mounted here)."""
    dirs = {}
    for volume in pod_spec.get("volumes") or []:
        if "emptyDir" in volume or "downwardAPI" in volume:
            path = root / "volumes" / volume["name"]
            shutil.rmtree(path, ignore_errors=True)
            path.mkdir(parents=True)
            dirs[volume["name"]] = path
    return dirs


def mounts(container: dict[str, Any], volumes: dict[str, Path]) -> list[tuple[str, Path]]:
    """(mountPath, local directory) of the container's mounts, the longest path first."""
    found = [(m["mountPath"].rstrip("/"), volumes[m["name"]]) for m in container.get("volumeMounts") or []
             if m.get("name") in volumes]
    return sorted(found, key=lambda mount: -len(mount[0]))


def _remap(value: str, container_mounts: list[tuple[str, Path]]) -> str:
    """A path inside one of the container's own mounts, as this host sees it; anything else as is."""
    for path, local in container_mounts:
        if value == path or value.startswith(path + "/"):
            return str(local) + value[len(path):]
    return value


def _env(container: dict[str, Any], container_mounts: list[tuple[str, Path]], namespace: str,
         extra: dict[str, str]) -> dict[str, str]:
    env = dict(os.environ)
    for item in container.get("env") or []:
        if "value" in item:
            env[item["name"]] = _remap(str(item["value"]), container_mounts)
        elif (item.get("valueFrom") or {}).get("fieldRef", {}).get("fieldPath") == "metadata.namespace":
            env[item["name"]] = namespace
    return {**env, **extra}  # the stand-in's own settings (local ports) win


_ANNOTATION_REF = re.compile(r"metadata\.annotations\['([^']+)'\]")


def write_downward_api(pod: dict[str, Any], volumes: dict[str, Path]) -> None:
    """Write each downwardAPI volume's annotation items into that volume's directory, as the
    kubelet does (an unset annotation gives an empty file)."""
    annotations = (pod.get("metadata") or {}).get("annotations") or {}
    for volume in (pod.get("spec") or {}).get("volumes") or []:
        if volume.get("name") not in volumes:
            continue
        for item in (volume.get("downwardAPI") or {}).get("items") or []:
            ref = _ANNOTATION_REF.fullmatch((item.get("fieldRef") or {}).get("fieldPath", ""))
            if ref is None:
                continue
            target = volumes[volume["name"]] / item["path"]
            value = annotations.get(ref.group(1), "")
            if not target.exists() or target.read_text() != value:
                target.write_text(value)


def _command(container: dict[str, Any]) -> list[str]:
    argv = [*(container.get("command") or []), *(container.get("args") or [])]
    # Manifests say plateau-sidecar or python; run this test environment's copies.
    if argv and (VENV_BIN / argv[0]).exists():
        argv[0] = str(VENV_BIN / argv[0])
    return argv


class Kubelet(ControllerLoop):
    def __init__(self, url: str, token: str, workdir: Path, slots: list[PodSlot], namespace: str = "default",
                 ssl_context: ssl.SSLContext | None = None, images: Mapping[str, Path] | None = None) -> None:
        """`images`: stand-ins for container images, by image name: the directory whose files the
        image holds in its WORKDIR. A trainer with such an image runs in a copy of them."""
        super().__init__(url, token, ssl_context)
        self.workdir = workdir
        self.slots = {s.job: s for s in slots}
        self.images = dict(images or {})
        self.namespace = namespace
        self.pods: dict[str, RunningPod] = {}
        self.pending: set[str] = set()  # Jobs whose pod exists and waits to be scheduled
        self.unschedulable: set[str] = set()  # Jobs whose pods the scheduler cannot place (tests edit it)
        self.finished: dict[str, int] = {}

    def release(self) -> None:
        for pod in self.pods.values():
            for proc in (pod.trainer, pod.sidecar):
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()

    def volume(self, job: str, name: str) -> Path:
        """The directory of the running pod's volume `name`."""
        return self.pods[job].volumes[name]

    def sidecar_log(self, job: str) -> str:
        pod = self.pods.get(job)
        return pod.log.with_suffix(".sidecar.log").read_text() if pod else ""

    def trainer_log(self, job: str) -> str:
        pod = self.pods.get(job)
        return pod.log.read_text() if pod else ""

    # --- the API ---------------------------------------------------------------------------

    async def _get(self, path: str) -> Any:
        assert self._session
        async with self._session.get(path) as r:
            return await r.json() if r.status == 200 else None

    async def _send(self, method: str, path: str, body: Any, content_type: str = "application/merge-patch+json") -> None:
        assert self._session
        async with self._session.request(method, path, json=body, headers={"Content-Type": content_type}) as r:
            await r.read()

    async def _job_status(self, name: str, status: dict[str, Any]) -> None:
        await self._send("PATCH", f"/apis/batch/v1/namespaces/{self.namespace}/jobs/{name}/status", {"status": status})

    # --- the loop --------------------------------------------------------------------------

    async def _loop(self) -> None:
        while True:
            jobs = await self._get(f"/apis/batch/v1/namespaces/{self.namespace}/jobs")
            if jobs is not None:  # an error answer says nothing about which Jobs exist
                for job in jobs["items"]:
                    await self._sync(job)
                present = {job["metadata"]["name"] for job in jobs["items"]}
                for name, pod in list(self.pods.items()):
                    if name not in present and not pod.terminated:  # the Job is gone: so is its pod
                        await self._stop_pod(pod)
            await asyncio.sleep(0.1)

    async def _sync(self, job: dict[str, Any]) -> None:
        name = job["metadata"]["name"]
        slot = self.slots.get(name)
        if slot is None or name in self.finished:
            return
        pod = self.pods.get(name)
        suspended = bool(job["spec"].get("suspend"))
        if name in self.pending:
            if suspended:  # the Job controller deletes the pending pod
                self.pending.discard(name)
                await self._send("DELETE", f"/api/v1/namespaces/{self.namespace}/pods/{slot.pod}", None)
                await self._job_status(name, {"active": 0, "ready": 0})
            elif name not in self.unschedulable:
                self.pending.discard(name)
                await self._run(job, slot)
            return
        if pod is None:
            if not suspended:
                await self._start(job, slot)
            return
        if pod.terminated:
            if pod.suspended and not suspended:  # resumed: the Job controller creates a new pod
                await self._start(job, slot)
            return
        if suspended:
            await self._terminate(pod, job)
            return
        await self._copy_stop_annotation(pod)
        code = pod.trainer.poll()
        if code is not None:
            await self._finish(pod, job, code)

    async def _start(self, job: dict[str, Any], slot: PodSlot) -> None:
        """The Job controller creates the pod and counts it active at once, pending as it is."""
        template = job["spec"]["template"]
        name = job["metadata"]["name"]
        await self._send("POST", f"/api/v1/namespaces/{self.namespace}/pods", {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {
                "name": slot.pod, "namespace": self.namespace,
                "labels": {**(template.get("metadata") or {}).get("labels", {}), "job-name": name},
                "annotations": (template.get("metadata") or {}).get("annotations", {}),
            },
            "spec": template["spec"],
        }, content_type="application/json")
        status: dict[str, Any] = {"active": 1, "ready": 0, "startTime": _now()}
        if (job.get("status") or {}).get("conditions"):  # a resumed Job
            status["conditions"] = [{"type": "Suspended", "status": "False", "reason": "JobResumed",
                                     "lastTransitionTime": _now()}]
        await self._job_status(name, status)
        if name in self.unschedulable:
            self.pending.add(name)
            await self._pod_status(slot, {"phase": "Pending", "conditions": [{
                "type": "PodScheduled", "status": "False", "reason": "Unschedulable", "lastTransitionTime": _now(),
                "message": "0/1 nodes are available: 1 Insufficient nvidia.com/gpu."}]})
            return
        blocking = [c["name"] for c in template["spec"].get("initContainers") or [] if c.get("restartPolicy") != "Always"]
        if blocking:  # a plain init container runs to completion first: a never-ending sidecar hangs the pod in Init
            self.pending.add(name)
            self.unschedulable.add(name)  # it never leaves Init by itself
            await self._pod_status(slot, {"phase": "Pending", "conditions": [
                {"type": "PodScheduled", "status": "True"}, {"type": "Initialized", "status": "False", "reason": "ContainersNotInitialized"}],
                "initContainerStatuses": [{"name": n, "ready": False, "state": {"running": {"startedAt": _now()}}} for n in blocking]})
            return
        await self._run(job, slot)

    async def _pod_status(self, slot: PodSlot, status: dict[str, Any]) -> None:
        await self._send("PATCH", f"/api/v1/namespaces/{self.namespace}/pods/{slot.pod}/status", {"status": status})

    async def _run(self, job: dict[str, Any], slot: PodSlot) -> None:
        """The kubelet starts the scheduled pod's containers; the pod turns Ready, and the Job
        controller counts it in `ready`."""
        root = self.workdir / slot.pod
        pod_spec = job["spec"]["template"]["spec"]
        volumes = volume_dirs(pod_spec, root)  # fresh for every pod
        write_downward_api({"metadata": job["spec"]["template"].get("metadata") or {}, "spec": pod_spec}, volumes)
        trainer_c = pod_spec["containers"][0]
        [sidecar_c] = [c for c in pod_spec.get("initContainers") or [] if c.get("restartPolicy") == "Always"]
        log = root / "trainer.log"
        if trainer_c.get("image") in self.images:
            shutil.copytree(self.images[trainer_c["image"]], root, dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns("__pycache__", "checkpoints"))
        # Pods share this host's network here: give each sidecar its own push port too.
        push = next((e["value"] for e in sidecar_c.get("env") or [] if e["name"] == protocol.ENV_PUSH_ADDR), None)
        local = {protocol.ENV_METRICS_ADDR: f"127.0.0.1:{slot.port}", protocol.ENV_PUSH_ADDR: "off"}
        if push:
            local[protocol.ENV_PUSH_ADDR] = f"127.0.0.1:{slot.push_port}"
        sidecar_env = _env(sidecar_c, mounts(sidecar_c, volumes), self.namespace, local)
        # The operator's push URL as it wrote it, with the slot's own port: only the port is the stand-in's.
        url = next((e["value"] for e in trainer_c.get("env") or [] if e["name"] == protocol.ENV_PUSH_URL), None)
        trainer_extra = {protocol.ENV_PUSH_URL: re.sub(r":\d+/", f":{slot.push_port}/", url, count=1)} if push and url else {}
        sidecar = subprocess.Popen(_command(sidecar_c), env=sidecar_env, stdout=open(log.with_suffix(".sidecar.log"), "wb"),
                                   stderr=subprocess.STDOUT)
        trainer = subprocess.Popen(_command(trainer_c), env=_env(trainer_c, mounts(trainer_c, volumes), self.namespace, trainer_extra),
                                   stdout=open(log, "ab"), stderr=subprocess.STDOUT, start_new_session=True, cwd=root)
        self.pods[job["metadata"]["name"]] = RunningPod(slot, trainer, sidecar, volumes, log, asyncio.get_running_loop().time())
        await self._pod_status(slot, {"phase": "Running", "conditions": [
            {"type": "PodScheduled", "status": "True"}, {"type": "Initialized", "status": "True"},
            {"type": "Ready", "status": "True", "lastTransitionTime": _now()}]})
        await self._job_status(job["metadata"]["name"], {"active": 1, "ready": 1})

    async def _copy_stop_annotation(self, pod: RunningPod) -> None:
        """The kubelet's downward-API refresh: every item of the pod's downwardAPI volumes that
        names an annotation is rewritten with the annotation's current value (empty if unset)."""
        body = await self._get(f"/api/v1/namespaces/{self.namespace}/pods/{pod.slot.pod}")
        write_downward_api(body or {}, pod.volumes)

    async def _terminate(self, pod: RunningPod, job: dict[str, Any]) -> None:
        """Suspension deletes the pods: SIGTERM, then SIGKILL after a short grace."""
        await self._stop_pod(pod)
        pod.suspended = True
        await self._job_status(job["metadata"]["name"], {"active": 0, "ready": 0, "conditions": [
            {"type": "Suspended", "status": "True", "reason": "JobSuspended", "lastTransitionTime": _now()}]})

    async def _stop_pod(self, pod: RunningPod) -> None:
        """Delete the pod: its trainer gets SIGTERM, then SIGKILL after a short grace."""
        pod.terminated = True
        if pod.trainer.poll() is None:
            pod.signals.append("SIGTERM")
            os.killpg(pod.trainer.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(asyncio.to_thread(pod.trainer.wait), timeout=5)
            except asyncio.TimeoutError:
                pod.signals.append("SIGKILL")
                os.killpg(pod.trainer.pid, signal.SIGKILL)
                pod.trainer.wait()
        pod.sidecar.terminate()
        await asyncio.to_thread(pod.sidecar.wait)  # a resumed pod's sidecar needs its port back
        await self._send("DELETE", f"/api/v1/namespaces/{self.namespace}/pods/{pod.slot.pod}", None)

    async def _finish(self, pod: RunningPod, job: dict[str, Any], code: int) -> None:
        pod.terminated = True
        self.finished[job["metadata"]["name"]] = code
        pod.sidecar.terminate()
        kind = "Complete" if code == 0 else "Failed"
        condition = {"type": kind, "status": "True", "lastTransitionTime": _now()}
        if code:
            condition.update(reason="BackoffLimitExceeded", message=f"the trainer exited with {code}")
        counts = {"succeeded": 1} if code == 0 else {"failed": 1}
        await self._job_status(job["metadata"]["name"], {"active": 0, "ready": 0, **counts, "conditions": [condition],
                                                          "completionTime" if code == 0 else "startTime": _now()})


def _now() -> str:
    from datetime import datetime, timezone

    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
