"""Workloads: building the child Job from a template, and adapters that observe, stop and
resume a workload of any supported kind.

Suspend where the kind has it (Job, JobSet, Kubeflow jobs: the object and its status stay,
and `suspend: false` resumes); scale to 0 through `/scale` otherwise. PyTorchJob's `/scale`
would leave the Master running, so Kubeflow jobs are always suspended.
"""

from __future__ import annotations

import copy
import hashlib
from dataclasses import dataclass
from typing import Any, Optional

from plateau import api
from plateau.config import SidecarSettings
from plateau.durations import format_milliseconds, parse_duration
from plateau.kube import Kube, NotFound
from plateau.stopflow import WorkloadState
from plateau.workload_state import KUEUE_QUEUE, SIDECAR_NAME, job_state, jobset_state, kubeflow_state, scaled_state
from plateau.history import metric_spec_for
from plateau_sidecar import protocol

LABEL = "plateau.dev/trainingjob"
SHARED_VOLUME = "plateau-shared"
STOP_VOLUME = "plateau-stop"
# Kueue's labels: a TrainingJob's pass to its child Job, which Kueue then queues and admits.
KUEUE_LABELS = (KUEUE_QUEUE, "kueue.x-k8s.io/priority-class")
KUEUE_WORKLOADS = ("kueue.x-k8s.io", "v1beta1", "workloads")
KUEUE_JOB_UID = "kueue.x-k8s.io/job-uid"  # the label Kueue puts on the Workload it makes for a job
# spec.metrics.scrapeInterval, in Prometheus' duration form; the chart's PodMonitor relabels
# them into __scrape_interval__ and __scrape_timeout__ (which must not exceed the interval).
SCRAPE_INTERVAL_ANNOTATION = "plateau.dev/scrape-interval"
SCRAPE_TIMEOUT_ANNOTATION = "plateau.dev/scrape-timeout"
SCRAPE_TIMEOUT_MS = 10_000  # Prometheus' default


def label_value(name: str) -> str:
    """Label values are at most 63 characters: long names keep a prefix and a hash."""
    if len(name) <= 63:
        return name
    return f"{name[:52]}-{hashlib.sha256(name.encode()).hexdigest()[:10]}"


# --- the child Job ------------------------------------------------------------------------------


def _env(name: str, value: str) -> dict[str, str]:
    return {"name": name, "value": value}


def _sidecar(tj_name: str, spec: api.TrainingJobSpec, sidecar: SidecarSettings) -> dict[str, Any]:
    m = spec.metrics
    env = [
        _env(protocol.ENV_TRAININGJOB, tj_name),
        {"name": protocol.ENV_NAMESPACE, "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        _env(protocol.ENV_METRICS_ADDR, protocol.DEFAULT_METRICS_ADDR),
        _env(protocol.ENV_METRIC_NAMES, ",".join(m.names)),
        _env(protocol.ENV_SPEC_FILE, protocol.DEFAULT_SPEC_FILE),
    ]
    if m.source == api.MetricsSource.FILE.value:
        env.append(_env(protocol.ENV_METRICS_FILE, m.path))
    elif m.source == api.MetricsSource.PUSH.value:
        env += [_env(protocol.ENV_PUSH_ADDR, f"127.0.0.1:{m.push_port}"),
                _env(protocol.ENV_PUSH_JOURNAL, protocol.DEFAULT_PUSH_JOURNAL)]
    else:
        env += [_env(protocol.ENV_STDOUT_FILE, m.log_file or ""), _env(protocol.ENV_STDOUT_PATTERN, m.pattern or "")]
    return {
        "name": SIDECAR_NAME,
        "image": sidecar.image,
        "command": ["plateau-sidecar"],
        # A native sidecar (Kubernetes >= 1.29, or 1.28 with the SidecarContainers gate):
        # it starts first, and does not keep the Job from completing.
        "restartPolicy": "Always",
        "env": env,
        "ports": [{"name": "plateau-metrics", "containerPort": protocol.DEFAULT_METRICS_PORT}],
        "volumeMounts": [{"name": SHARED_VOLUME, "mountPath": protocol.DEFAULT_SHARED_DIR},
                         {"name": STOP_VOLUME, "mountPath": protocol.DEFAULT_STOP_DIR, "readOnly": True}],
        "resources": {
            "requests": {"cpu": sidecar.cpu_request, "memory": sidecar.memory_request},
            "limits": {"cpu": sidecar.cpu_limit, "memory": sidecar.memory_limit},
        },
        "securityContext": {
            "runAsNonRoot": True,
            "readOnlyRootFilesystem": True,
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
    }


def _trainer_env(tj_name: str, spec: api.TrainingJobSpec) -> list[dict[str, str]]:
    m = spec.metrics
    env = [_env(protocol.ENV_TRAININGJOB, tj_name), _env(protocol.ENV_STOP_FILE, protocol.DEFAULT_STOP_FILE)]
    if m.source == api.MetricsSource.FILE.value:
        env.append(_env(protocol.ENV_METRICS_FILE, m.path))
    elif m.source == api.MetricsSource.PUSH.value:
        env.append(_env(protocol.ENV_PUSH_URL, f"http://127.0.0.1:{m.push_port}{protocol.PUSH_PATH}"))
    return env


def scrape_annotations(metrics: api.MetricsSpec) -> dict[str, str]:
    """The pod annotations that carry spec.metrics.scrapeInterval to the chart's PodMonitor."""
    interval = round(parse_duration(metrics.scrape_interval) * 1000)
    return {SCRAPE_INTERVAL_ANNOTATION: format_milliseconds(interval),
            SCRAPE_TIMEOUT_ANNOTATION: format_milliseconds(min(interval, SCRAPE_TIMEOUT_MS))}


def build_job(tj: dict[str, Any], spec: api.TrainingJobSpec, sidecar: SidecarSettings) -> dict[str, Any]:
    """The batch/v1 Job for a TrainingJob with a template: trainer, sidecar, volumes, labels."""
    assert spec.template is not None
    meta = tj["metadata"]
    name = meta["name"]
    selector_label = {LABEL: label_value(name)}
    template = copy.deepcopy(spec.template.model_dump(by_alias=True))
    pod_meta = template.setdefault("metadata", {}) or {}
    template["metadata"] = pod_meta
    pod_meta["labels"] = {**(pod_meta.get("labels") or {}), **selector_label}
    pod_meta["annotations"] = {
        **(pod_meta.get("annotations") or {}),
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(protocol.DEFAULT_METRICS_PORT),
        "prometheus.io/path": "/metrics",
        **scrape_annotations(spec.metrics),
    }
    spec_for_sidecar = metric_spec_for(spec.stop)
    if spec_for_sidecar is not None:
        pod_meta["annotations"][protocol.SPEC_ANNOTATION] = spec_for_sidecar.text
    pod = template["spec"]
    pod.setdefault("restartPolicy", "Never")
    pod["volumes"] = [
        *(pod.get("volumes") or []),
        {"name": SHARED_VOLUME, "emptyDir": {}},
        {"name": STOP_VOLUME, "downwardAPI": {"items": [
            {"path": "stop", "fieldRef": {"fieldPath": f"metadata.annotations['{protocol.STOP_ANNOTATION}']"}},
            {"path": "spec", "fieldRef": {"fieldPath": f"metadata.annotations['{protocol.SPEC_ANNOTATION}']"}},
        ]}},
    ]
    containers = pod.get("containers") or []
    if containers:
        trainer = containers[0]
        own = {e.get("name") for e in trainer.get("env") or []}
        trainer["env"] = [*(trainer.get("env") or []), *(e for e in _trainer_env(name, spec) if e["name"] not in own)]
        trainer["volumeMounts"] = [
            *(trainer.get("volumeMounts") or []),
            {"name": SHARED_VOLUME, "mountPath": protocol.DEFAULT_SHARED_DIR},
            {"name": STOP_VOLUME, "mountPath": protocol.DEFAULT_STOP_DIR, "readOnly": True},
        ]
    pod["initContainers"] = [*(pod.get("initContainers") or []), _sidecar(name, spec, sidecar)]
    kueue = {k: v for k, v in (meta.get("labels") or {}).items() if k in KUEUE_LABELS}
    job_spec: dict[str, Any] = {
        "parallelism": spec.replicas,
        "completions": max(spec.replicas, 1),
        # Kueue starts a queued Job by unsuspending it once admitted (its webhook would suspend it too)
        "suspend": spec.replicas == 0 or KUEUE_QUEUE in kueue,
        "template": template,
    }
    if spec.replicas > 1:
        job_spec["completionMode"] = "Indexed"
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": meta["namespace"],
            "labels": {**kueue, **selector_label},
            "ownerReferences": [{
                "apiVersion": api.API_VERSION,
                "kind": api.KIND,
                "name": name,
                "uid": meta["uid"],
                "controller": True,
                "blockOwnerDeletion": True,
            }],
        },
        "spec": job_spec,
    }


# --- adapters --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Kind:
    group: str
    plural: str
    suspend_path: tuple[str, ...]  # empty: stop through /scale
    pod_label: str  # label carrying the workload's name on its pods


KINDS: dict[tuple[str, str], Kind] = {
    ("batch", "Job"): Kind("batch", "jobs", ("spec", "suspend"), "job-name"),
    ("jobset.x-k8s.io", "JobSet"): Kind("jobset.x-k8s.io", "jobsets", ("spec", "suspend"), "jobset.sigs.k8s.io/jobset-name"),
    ("kubeflow.org", "PyTorchJob"): Kind("kubeflow.org", "pytorchjobs", ("spec", "runPolicy", "suspend"), "training.kubeflow.org/job-name"),
    ("kubeflow.org", "TFJob"): Kind("kubeflow.org", "tfjobs", ("spec", "runPolicy", "suspend"), "training.kubeflow.org/job-name"),
    ("apps", "Deployment"): Kind("apps", "deployments", (), ""),
    ("apps", "StatefulSet"): Kind("apps", "statefulsets", (), ""),
}


def kind_of(api_version: str, kind: str) -> Kind:
    group = api_version.rsplit("/", 1)[0] if "/" in api_version else ""
    known = KINDS.get((group, kind))
    if known is not None:
        return known
    # Anything else is stopped through /scale; its plural follows the Kubernetes convention.
    return Kind(group, kind.lower() + "s", (), "")


def _nested(path: tuple[str, ...], value: Any) -> dict[str, Any]:
    out: Any = value
    for key in reversed(path):
        out = {key: out}
    return out


class Workload:
    """One workload (child or referenced): observe it, ask its pods to stop, suspend, resume."""

    def __init__(self, kube: Kube, namespace: str, api_version: str, kind: str, name: str) -> None:
        self.kube = kube
        self.namespace = namespace
        self.version = api_version.rsplit("/", 1)[-1]
        self.kind = kind_of(api_version, kind)
        self.kind_name = kind
        self.name = name

    def _get(self) -> Any:
        return self.kube.get_object(self.kind.group, self.version, self.kind.plural, self.namespace, self.name)

    async def observe(self) -> WorkloadState:
        try:
            obj = await self._get()
        except NotFound:
            return WorkloadState(exists=False)
        if self.kind.group == "batch":
            return job_state(obj)
        if self.kind.group == "kubeflow.org":
            return kubeflow_state(obj)
        if self.kind.group == "jobset.x-k8s.io":
            return jobset_state(obj)
        scale = await self.kube.get_scale(self.kind.group, self.version, self.kind.plural, self.namespace, self.name)
        return scaled_state(obj, scale)

    async def pod_selector(self) -> Optional[str]:
        if self.kind.pod_label:
            return f"{self.kind.pod_label}={self.name}"
        scale = await self.kube.get_scale(self.kind.group, self.version, self.kind.plural, self.namespace, self.name)
        return (scale.get("status") or {}).get("selector") or None

    async def request_stop(self, reason: str) -> int:
        """Annotate every pod not yet asked; returns how many were annotated now."""
        return await self._annotate_pods(protocol.STOP_ANNOTATION, reason)

    async def share_spec(self, text: str) -> int:
        """Hand the sidecars a new metric stop spec (a spec edit mid-run): the kubelet rewrites
        their downward-API file. Returns how many pods were annotated now."""
        return await self._annotate_pods(protocol.SPEC_ANNOTATION, text)

    async def _annotate_pods(self, key: str, value: str) -> int:
        selector = await self.pod_selector()
        if not selector:
            return 0
        annotated = 0
        for pod in await self.kube.pods(self.namespace, selector):
            annotations = (pod.get("metadata") or {}).get("annotations") or {}
            if annotations.get(key) != value:
                await self.kube.annotate_pod(self.namespace, pod["metadata"]["name"], {key: value})
                annotated += 1
        return annotated

    async def suspend(self, kueue_uid: str = "") -> None:
        """`kueue_uid`: the workload's uid when Kueue queues it (WorkloadState.kueue_uid). Kueue would
        start an admitted workload again: deactivating its Workload evicts it, suspends it and
        releases its quota. Then it is suspended as usual, in case Kueue is not there."""
        await self._set_kueue_active(kueue_uid, False)
        if self.kind.suspend_path:
            await self.kube.patch_object(self.kind.group, self.version, self.kind.plural, self.namespace, self.name,
                                         _nested(self.kind.suspend_path, True))
            return
        # The replicas to resume to are in the TrainingJob's status (replicasBeforeStop).
        await self.kube.patch_scale(self.kind.group, self.version, self.kind.plural, self.namespace, self.name, 0)

    async def resume(self, replicas: int, child: bool, kueue_uid: str = "") -> None:
        queued = await self._set_kueue_active(kueue_uid, True)
        if self.kind.suspend_path:
            # Kueue unsuspends what it admits: a queued workload is reactivated, not unsuspended.
            patch = {} if queued else _nested(self.kind.suspend_path, False)
            if child:  # a child Job follows the TrainingJob's replicas
                patch.setdefault("spec", {})["parallelism"] = replicas
            await self.kube.patch_object(self.kind.group, self.version, self.kind.plural, self.namespace, self.name, patch)
            return
        await self.kube.patch_scale(self.kind.group, self.version, self.kind.plural, self.namespace, self.name, replicas)

    async def _set_kueue_active(self, uid: str, active: bool) -> bool:
        """Set `spec.active` on the Kueue Workloads that the workload (`uid`) owns.
        Returns whether Kueue queues it (a Workload of Kueue's for it exists)."""
        if not uid or not self.kind.suspend_path:
            return False  # not queued; Kueue's pod-group integrations (Deployments...) own no such Workload
        try:
            workloads = await self.kube.list_objects(*KUEUE_WORKLOADS, self.namespace, f"{KUEUE_JOB_UID}={uid}")
        except NotFound:  # no Kueue in this cluster: the label is only a label
            return False
        owned = [w for w in workloads if any(o.get("uid") == uid for o in (w.get("metadata") or {}).get("ownerReferences") or [])]
        for workload in owned:
            if (workload.get("spec") or {}).get("active", True) != active:
                await self.kube.patch_object(*KUEUE_WORKLOADS, self.namespace, workload["metadata"]["name"],
                                             {"spec": {"active": active}})
        return bool(owned)
