"""The Helm chart in tests: find helm, lint and render charts/plateau, read what it rendered.

`operator_command(values)` gives the operator container's command and environment exactly as
the chart sets them (downward-API fields filled in for a given pod), so a test can start
`plateau-operator` the way a cluster would.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "plateau"
RELEASE = "plateau"
NAMESPACE = "plateau-system"


def tool(name: str, local: Path, installer: str = "scripts/bootstrap") -> str:
    """A command-line tool from this checkout, else from PATH; a failure (never a skip) if missing."""
    found = str(local) if local.exists() else shutil.which(name)
    if not found:
        pytest.fail(f"{name} is not installed: run {installer} (it puts {name} in {local.parent})")
    return found


def helm(*args: str) -> subprocess.CompletedProcess[str]:
    """Run helm; the result's returncode is the caller's to check."""
    return subprocess.run([tool("helm", REPO / ".tools" / "bin" / "helm"), *args],
                          capture_output=True, text=True, timeout=120)


def _values_args(values: Optional[Mapping[str, Any]], workdir: str) -> list[str]:
    if not values:
        return []
    path = Path(workdir) / "values.yaml"
    path.write_text(yaml.safe_dump(dict(values)))
    return ["--values", str(path)]


def lint(*args: str) -> subprocess.CompletedProcess[str]:
    """`helm lint --strict` of the chart; the result's returncode is the caller's to check."""
    return helm("lint", "--strict", str(CHART), "--namespace", NAMESPACE, *args)


def template(values: Optional[Mapping[str, Any]] = None, *, namespace: str = NAMESPACE,
             release: str = RELEASE, extra: Iterable[str] = ()) -> subprocess.CompletedProcess[str]:
    """`helm template` of the chart with these values (nested like values.yaml)."""
    with tempfile.TemporaryDirectory() as workdir:
        return helm("template", release, str(CHART), "--namespace", namespace,
                    *_values_args(values, workdir), *extra)


def render(values: Optional[Mapping[str, Any]] = None, *, namespace: str = NAMESPACE,
           release: str = RELEASE) -> list[dict[str, Any]]:
    """The rendered manifests (without the CRD), or a test failure with helm's message."""
    result = template(values, namespace=namespace, release=release)
    if result.returncode != 0:
        pytest.fail(f"helm template failed: {result.stderr}")
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def only(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, rendered {len(found)}"
    return found[0]


@dataclass(frozen=True)
class OperatorCommand:
    command: list[str]
    args: list[str]
    env: dict[str, str]  # every variable the chart sets, downward-API fields resolved (not Secret or ConfigMap refs)


def operator_command(values: Optional[Mapping[str, Any]] = None, *, namespace: str = NAMESPACE,
                     release: str = RELEASE, pod_name: str = "plateau-operator-0") -> OperatorCommand:
    """How the chart's Deployment starts the operator, as pod `pod_name` in `namespace`."""
    deployment = only(render(values, namespace=namespace, release=release), "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    fields = {"metadata.name": pod_name, "metadata.namespace": namespace}
    env = {}
    for var in container.get("env", []):
        if "value" in var:
            env[var["name"]] = var["value"]
        elif "fieldRef" in var["valueFrom"]:
            env[var["name"]] = fields[var["valueFrom"]["fieldRef"]["fieldPath"]]
        # other references (extraEnv's secretKeyRef and the like) have no value outside a cluster
    return OperatorCommand(container.get("command", []), container.get("args", []), env)


MONITORING = {"release": "kube-prometheus-stack"}
# Every optional part on, for kube-prometheus-stack and dcgm-exporter's chart defaults.
EVERYTHING: dict[str, Any] = {
    "replicas": 2,
    "dryRun": True,
    "prometheus": {"url": "http://kube-prometheus-stack-prometheus.monitoring.svc:9090"},
    "dcgm": {"labelScheme": "exported_pod"},
    "serviceMonitor": {"enabled": True, "labels": MONITORING},
    "podMonitor": {"enabled": True, "labels": MONITORING},
    "prometheusRule": {"enabled": True, "labels": MONITORING, "alertLabels": {"team": "ml-platform"}},
    "dashboard": {"enabled": True, "annotations": {"grafana_folder": "Plateau"}},
    "serviceAccount": {"annotations": {"example.com/role": "plateau"}},
    "imagePullSecrets": [{"name": "registry"}],
    "priorityClassName": "system-cluster-critical",
    "podAnnotations": {"example.com/team": "ml-platform"},
    "podLabels": {"example.com/cost-center": "ml"},
    "nodeSelector": {"kubernetes.io/os": "linux"},
    "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "system", "effect": "NoSchedule"}],
    "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{
        "weight": 100,
        "podAffinityTerm": {"topologyKey": "kubernetes.io/hostname",
                            "labelSelector": {"matchLabels": {"app.kubernetes.io/name": "plateau"}}},
    }]}},
    "topologySpreadConstraints": [
        {"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "ScheduleAnyway"},
        {"maxSkew": 1, "topologyKey": "kubernetes.io/hostname", "whenUnsatisfiable": "DoNotSchedule",
         "labelSelector": {"matchLabels": {"app.kubernetes.io/instance": "plateau"}}}],
    "logLevel": "debug",
    "logFormat": "json",
    "extraEnv": [{"name": "SSL_CERT_FILE", "value": "/etc/plateau/ca/ca.crt"},
                 {"name": "HTTPS_PROXY", "valueFrom": {"secretKeyRef": {"name": "proxy", "key": "url"}}}],
    "extraVolumes": [{"name": "ca", "configMap": {"name": "prometheus-ca"}}],
    "extraVolumeMounts": [{"name": "ca", "mountPath": "/etc/plateau/ca", "readOnly": True}],
    "networkPolicy": {"enabled": True, "apiServer": {"cidrs": ["10.0.0.1/32", "fd00::1/128"]},
                      "metricsFrom": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}],
                      "extraEgress": [{"to": [{"ipBlock": {"cidr": "10.1.0.0/16"}}], "ports": [{"port": 8443, "protocol": "TCP"}]}]},
}
NAMESPACED = {**EVERYTHING, "watchNamespaces": ["team-a", "team-b"]}
