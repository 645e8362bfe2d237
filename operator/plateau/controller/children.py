"""The child Job a `template` TrainingJob runs: its trainer, its native sidecar, its labels and
annotations. Pure: plateau.controller.workloads creates it."""

from __future__ import annotations

import copy
import hashlib
from dataclasses import dataclass
from typing import Any

from plateau import api
from plateau.api.durations import format_milliseconds
from plateau.controller.workload_state import KUEUE_QUEUE, SIDECAR_NAME
from plateau.engine.history import metric_spec_for
from plateau_sidecar import protocol

LABEL = "plateau.dev/trainingjob"
SHARED_VOLUME = "plateau-shared"
STOP_VOLUME = "plateau-stop"
# Kueue's labels: a TrainingJob's pass to its child Job, which Kueue then queues and admits.
KUEUE_LABELS = (KUEUE_QUEUE, "kueue.x-k8s.io/priority-class")
# spec.metrics.scrapeInterval, in Prometheus' duration form; the chart's PodMonitor relabels
# them into __scrape_interval__ and __scrape_timeout__ (which must not exceed the interval).
SCRAPE_INTERVAL_ANNOTATION = "plateau.dev/scrape-interval"
SCRAPE_TIMEOUT_ANNOTATION = "plateau.dev/scrape-timeout"
SCRAPE_TIMEOUT_MS = 10_000  # Prometheus' default


@dataclass(frozen=True)
class SidecarSettings:
    """The sidecar container the child Job gets; plateau.controller.config fills it from flags."""

    image: str = "localhost/plateau-sidecar:0.1.0"  # scripts/build-image's tag, and the chart's default
    cpu_request: str = "20m"
    memory_request: str = "64Mi"
    cpu_limit: str = "200m"
    memory_limit: str = "128Mi"  # the engine and up to 1,000,000 kept reports (16 B each, twice for the monitored metric)


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
        _env(protocol.ENV_METRIC_NAMES, ",".join(spec.exported_metrics())),
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
    interval = round(metrics.scrape_interval.seconds * 1000)
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
