"""The Helm chart: lint, render, validate every resource, and hold it to the operator's contract
(its settings, its RBAC). Its monitoring (the sidecar's labels and port, the metrics' names in
alerts and the dashboard) is test_monitoring.py's."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any, Iterator

import kubernetes_validate
import pytest
import yaml

from plateau.controller import rbac
from plateau.controller.children import SidecarSettings
from plateau.controller.config import Settings, parse_settings
from plateau.cli.crd import build_crd
from plateau.prometheus.promql import DcgmConfig
from plateau_sidecar import protocol
from tests.support import chart
from tests.support.chart import CHART, EVERYTHING, NAMESPACE, NAMESPACED, REPO, lint, only, operator_command, render, template

KUBERNETES_VERSIONS = ("1.28.0", kubernetes_validate.latest_version())
# OpenShift's restricted-v2: no fixed UID, names and a registry of the platform team's choosing, one replica with a budget.
OPENSHIFT = {**EVERYTHING, "replicas": 1, "podDisruptionBudget": {"enabled": True, "maxUnavailable": "50%"},
             "podSecurityContext": {"runAsUser": None, "runAsGroup": None}, "fullnameOverride": "ml-stopper",
             "nameOverride": "stopper", "image": {"repository": "registry.example.com/plateau-operator", "pullPolicy": "Always"},
             "sidecar": {"image": {"repository": "registry.example.com/plateau-sidecar", "tag": "0.1.0-rc1"},
                         "resources": {"requests": {"cpu": "20m", "memory": "64Mi"}, "limits": {"cpu": "200m", "memory": "128Mi"}}}}
CONFIGS = {"defaults": {}, "everything": EVERYTHING, "everything-namespaced": NAMESPACED, "openshift": OPENSHIFT}
OPTIONAL_KINDS = {"ServiceMonitor", "PodMonitor", "PrometheusRule", "ConfigMap", "PodDisruptionBudget", "NetworkPolicy"}

# Minimal schemas for prometheus-operator's resources (none ships offline): the fields this
# chart uses, typed, and nothing else, so a typo in a template fails here.
STRINGS = {"type": "object", "additionalProperties": {"type": "string"}}
META = {"type": "object", "required": ["name", "namespace"],
        "properties": {"name": {"type": "string"}, "namespace": {"type": "string"}, "labels": STRINGS}}
RELABELING = {"type": "object", "additionalProperties": False, "properties": {
    "sourceLabels": {"type": "array", "items": {"type": "string"}}, "separator": {"type": "string"},
    "targetLabel": {"type": "string"}, "regex": {"type": "string"}, "replacement": {"type": "string"},
    "action": {"enum": ["replace", "keep", "drop", "labelmap", "labeldrop", "labelkeep", "hashmod"]}}}
ENDPOINT = {"type": "object", "additionalProperties": False, "required": ["port"], "properties": {
    "port": {"type": "string"}, "path": {"type": "string"}, "interval": {"type": "string", "pattern": "^([0-9]+(ms|s|m|h))+$"},
    "honorLabels": {"type": "boolean"}, "relabelings": {"type": "array", "items": RELABELING}}}
SELECTOR = {"type": "object", "additionalProperties": False, "properties": {
    "matchLabels": STRINGS, "matchExpressions": {"type": "array", "items": {
        "type": "object", "required": ["key", "operator"], "additionalProperties": False,
        "properties": {"key": {"type": "string"}, "operator": {"enum": ["In", "NotIn", "Exists", "DoesNotExist"]},
                       "values": {"type": "array", "items": {"type": "string"}}}}}}}
NAMESPACE_SELECTOR = {"type": "object", "additionalProperties": False, "properties": {
    "any": {"type": "boolean"}, "matchNames": {"type": "array", "items": {"type": "string"}, "minItems": 1}}}
RULE = {"type": "object", "additionalProperties": False, "required": ["alert", "expr"], "properties": {
    "alert": {"type": "string", "pattern": "^[A-Za-z][A-Za-z0-9]*$"}, "expr": {"type": "string", "minLength": 1},
    "for": {"type": "string"}, "labels": STRINGS, "annotations": STRINGS}}


def resource_schema(kind: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"$schema": "http://json-schema.org/draft-07/schema#", "type": "object",
            "required": ["apiVersion", "kind", "metadata", "spec"],
            "properties": {"apiVersion": {"const": "monitoring.coreos.com/v1"}, "kind": {"const": kind},
                           "metadata": META, "spec": spec}}


CR_SCHEMAS = {
    "ServiceMonitor": resource_schema("ServiceMonitor", {
        "type": "object", "additionalProperties": False, "required": ["selector", "endpoints"],
        "properties": {"selector": SELECTOR, "namespaceSelector": NAMESPACE_SELECTOR,
                       "endpoints": {"type": "array", "minItems": 1, "items": ENDPOINT}}}),
    "PodMonitor": resource_schema("PodMonitor", {
        "type": "object", "additionalProperties": False, "required": ["selector", "podMetricsEndpoints"],
        "properties": {"selector": SELECTOR, "namespaceSelector": NAMESPACE_SELECTOR,
                       "podMetricsEndpoints": {"type": "array", "minItems": 1, "items": ENDPOINT}}}),
    "PrometheusRule": resource_schema("PrometheusRule", {
        "type": "object", "additionalProperties": False, "required": ["groups"],
        "properties": {"groups": {"type": "array", "minItems": 1, "items": {
            "type": "object", "additionalProperties": False, "required": ["name", "rules"],
            "properties": {"name": {"type": "string"}, "rules": {"type": "array", "minItems": 1, "items": RULE}}}}}}),
}


def check_jsonschema(schema: dict[str, Any], docs: list[dict[str, Any]], workdir: Path) -> None:
    """Validate documents with the check-jsonschema command; fails with its report."""
    workdir.mkdir(parents=True, exist_ok=True)
    schema_file = workdir / "schema.json"
    schema_file.write_text(json.dumps(schema))
    files = []
    for i, doc in enumerate(docs):  # JSON: a YAML 1.2 reader would take PyYAML's unquoted "3e-4" for a number
        files.append(workdir / f"doc-{i}.json")
        files[-1].write_text(json.dumps(doc))
    result = subprocess.run([chart.tool("check-jsonschema", REPO / ".venv" / "bin" / "check-jsonschema"),
                             "--schemafile", str(schema_file), *map(str, files)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def values_file(values: dict[str, Any], tmp_path: Path) -> str:
    path = tmp_path / "values.yaml"
    path.write_text(yaml.safe_dump(values))
    return str(path)


# --- lint, render, validate ---------------------------------------------------------------------


@pytest.mark.parametrize("name", CONFIGS)
def test_helm_lint_strict(name: str, tmp_path: Path) -> None:
    for kube in KUBERNETES_VERSIONS:
        result = lint("--values", values_file(CONFIGS[name], tmp_path), "--kube-version", kube)
        assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("name", CONFIGS)
def test_every_rendered_resource_validates(name: str, tmp_path: Path) -> None:
    docs = render(CONFIGS[name])
    kinds = {d["kind"] for d in docs}
    assert kinds & OPTIONAL_KINDS == (set() if name == "defaults" else OPTIONAL_KINDS)
    custom = [d for d in docs if d["kind"] in CR_SCHEMAS]
    for doc in docs:
        if doc["kind"] in CR_SCHEMAS:
            continue
        for version in KUBERNETES_VERSIONS:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                pytest.fail(f"{doc['kind']}/{doc['metadata']['name']} on Kubernetes {version}: {exc.message} at {list(exc.path)}")
    for kind, schema in CR_SCHEMAS.items():
        of_kind = [d for d in custom if d["kind"] == kind]
        if of_kind:
            check_jsonschema(schema, of_kind, tmp_path / kind)


def test_examples_validate_against_the_crd_schema(tmp_path: Path) -> None:
    schema = {"$schema": "http://json-schema.org/draft-04/schema#",  # OpenAPI 3.0's boolean exclusiveMinimum
              **build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]}
    examples = [doc for path in sorted((REPO / "examples").glob("*.yaml"))
                for doc in yaml.safe_load_all(path.read_text()) if doc and doc.get("kind") == "TrainingJob"]
    assert len(examples) >= 5
    check_jsonschema(schema, examples, tmp_path)


def test_the_charts_crd_is_the_generated_one() -> None:
    assert (CHART / "crds" / "trainingjob.yaml").read_bytes() == (REPO / "crds" / "trainingjob.yaml").read_bytes()


def test_helm_is_required_not_skipped(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(pytest.fail.Exception, match="run scripts/bootstrap"):
        chart.tool("helm", tmp_path / "helm")


# --- the operator's settings ---------------------------------------------------------------------


def settings_from(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    for name in [n for n in os.environ if n.startswith("PLATEAU_") or n.startswith("POD_")]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return parse_settings([])


def test_the_chart_sets_every_operator_setting() -> None:
    wanted = set(re.findall(r'_env\("((?:PLATEAU|POD)_[A-Z_]+)"', (REPO / "operator/plateau/controller/config.py").read_text()))
    assert len(wanted) > 15
    started = operator_command()
    assert started.command == ["plateau-operator"] and not started.args
    assert wanted <= set(started.env), wanted - set(started.env)


def test_default_values_give_the_operators_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = settings_from(operator_command(pod_name="plateau-abc").env, monkeypatch)
    defaults = Settings()
    assert settings.prometheus_url == defaults.prometheus_url
    assert (settings.interval, settings.status_interval) == (defaults.interval, defaults.status_interval)
    assert (settings.api_timeout, settings.api_connect_timeout) == (defaults.api_timeout, defaults.api_connect_timeout)
    assert settings.liveness_intervals == defaults.liveness_intervals
    assert settings.shutdown_timeout == defaults.shutdown_timeout
    assert settings.namespaces == () and settings.default_dry_run is False
    assert settings.metrics_port == defaults.metrics_port
    assert settings.leader_election and settings.lease_name == "plateau" and settings.lease_namespace == NAMESPACE
    assert settings.identity == "plateau-abc"
    # dcgm-exporter's own chart scrapes with honorLabels: false: the GPU's pod is exported_pod.
    assert settings.dcgm == DcgmConfig(pod_label="exported_pod", namespace_label="exported_namespace")
    assert settings.sidecar == SidecarSettings()  # the slim sidecar image, at the operator's tag
    assert (settings.log_level, settings.log_format) == (defaults.log_level, defaults.log_format)


def test_everything_reaches_the_operator(monkeypatch: pytest.MonkeyPatch) -> None:
    values = {**NAMESPACED, "evaluation": {"interval": "1m", "statusInterval": "2m", "livenessIntervals": 4},
              "kubernetesApi": {"timeout": "30s", "connectTimeout": "3s"},
              "sidecar": {"image": {"tag": "0.2.0"},
                          "resources": {"requests": {"cpu": "50m", "memory": "48Mi"}, "limits": {"cpu": "1", "memory": "1Gi"}}}}
    settings = settings_from(operator_command(values).env, monkeypatch)
    assert settings.prometheus_url == EVERYTHING["prometheus"]["url"]
    assert (settings.interval, settings.status_interval) == (60.0, 120.0)
    assert (settings.api_timeout, settings.api_connect_timeout) == (30.0, 3.0)
    assert settings.liveness_intervals == 4
    assert settings.namespaces == ("team-a", "team-b") and settings.default_dry_run is True
    assert (settings.dcgm.pod_label, settings.dcgm.namespace_label) == ("exported_pod", "exported_namespace")
    assert settings.sidecar == SidecarSettings("localhost/plateau-sidecar:0.2.0", "50m", "48Mi", "1", "1Gi")
    assert (settings.log_level, settings.log_format) == ("debug", "json")


def test_dcgm_label_overrides_win_over_the_scheme(monkeypatch: pytest.MonkeyPatch) -> None:
    values = {"dcgm": {"labelScheme": "exported_pod", "namespaceLabel": "k8s_namespace",
                       "profilingMetric": "DCGM_FI_PROF_SM_ACTIVE"}}
    dcgm = settings_from(operator_command(values).env, monkeypatch).dcgm
    assert (dcgm.pod_label, dcgm.namespace_label, dcgm.profiling_metric) == ("exported_pod", "k8s_namespace", "DCGM_FI_PROF_SM_ACTIVE")


@pytest.mark.parametrize("grace", [None, 60])
def test_the_operators_shutdown_deadline_ends_within_the_pods_grace_period(grace: int, monkeypatch: pytest.MonkeyPatch) -> None:
    values = {} if grace is None else {"terminationGracePeriodSeconds": grace}
    pod = only(render(values), "Deployment")["spec"]["template"]["spec"]
    settings = settings_from(operator_command(values).env, monkeypatch)
    assert pod["terminationGracePeriodSeconds"] == (grace or Settings().shutdown_timeout + 5)
    assert settings.shutdown_timeout == pod["terminationGracePeriodSeconds"] - 5  # kopf's last resort kills it then
    assert settings.api_timeout < settings.shutdown_timeout  # a hung request ends before the deadline


def test_custom_queries_are_confined_unless_the_chart_says_otherwise(monkeypatch: pytest.MonkeyPatch) -> None:
    assert settings_from(operator_command().env, monkeypatch).custom_queries == "confined"
    for mode in ("disabled", "unconfined"):
        assert settings_from(operator_command({"customQueries": mode}).env, monkeypatch).custom_queries == mode
    result = template({"customQueries": "open"})
    assert result.returncode != 0 and "customQueries" in result.stderr


def test_operator_pod_is_locked_down() -> None:
    pod = only(render(), "Deployment")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert pod["securityContext"]["runAsNonRoot"] and pod["securityContext"]["runAsUser"] == 65532
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] and security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert {"requests", "limits"} <= container["resources"].keys()
    assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
    assert {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}} in pod["volumes"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"metrics": Settings().metrics_port, "healthz": Settings().metrics_port + 1}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "healthz"}


# --- values platform teams expect -----------------------------------------------------------------


def pod_spec(values: dict[str, Any]) -> dict[str, Any]:
    return only(render(values), "Deployment")["spec"]["template"]["spec"]


def test_name_overrides_rename_every_resource_and_keep_selectors_matching() -> None:
    for values, name, label in (({}, "plateau", "plateau"), ({"nameOverride": "stopper"}, "plateau-stopper", "stopper"),
                                ({"fullnameOverride": "ml-stopper"}, "ml-stopper", "plateau")):
        docs = render({**EVERYTHING, **values})
        deployment = only(docs, "Deployment")
        pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert deployment["metadata"]["name"] == name and pod_labels["app.kubernetes.io/name"] == label
        assert only(docs, "Service")["metadata"]["name"] == f"{name}-metrics"
        assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == name
        for doc in docs:
            assert doc["metadata"]["name"].startswith(name), doc["kind"]
        for selector in (deployment["spec"]["selector"]["matchLabels"], only(docs, "Service")["spec"]["selector"],
                         only(docs, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"],
                         only(docs, "NetworkPolicy")["spec"]["podSelector"]["matchLabels"],
                         only(docs, "ServiceMonitor")["spec"]["selector"]["matchLabels"]):
            assert selector.items() <= pod_labels.items()
        assert operator_command({**EVERYTHING, **values}).env["PLATEAU_LEASE_NAME"] == name


def test_security_contexts_are_overridable_and_a_fixed_uid_removable() -> None:
    openshift = pod_spec({"podSecurityContext": {"runAsUser": None, "runAsGroup": None}})
    assert openshift["securityContext"] == {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}
    assert openshift["containers"][0]["securityContext"] == pod_spec({})["containers"][0]["securityContext"]
    assert "securityContext" not in pod_spec({"podSecurityContext": None})
    container = pod_spec({"securityContext": {"readOnlyRootFilesystem": False, "runAsUser": 1000}})["containers"][0]
    assert container["securityContext"]["readOnlyRootFilesystem"] is False and container["securityContext"]["runAsUser"] == 1000
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}  # the rest of the defaults stay
    assert pod_spec({"podSecurityContext": {"fsGroup": 2000}})["securityContext"]["fsGroup"] == 2000


@pytest.mark.parametrize("values, budget", [
    ({}, None),
    ({"replicas": 2}, {"minAvailable": 1}),
    ({"replicas": 3, "podDisruptionBudget": {"minAvailable": "50%"}}, {"minAvailable": "50%"}),
    ({"replicas": 2, "podDisruptionBudget": {"enabled": False}}, None),
    ({"podDisruptionBudget": {"enabled": True, "maxUnavailable": 1}}, {"maxUnavailable": 1}),
    ({"replicas": 3, "podDisruptionBudget": {"maxUnavailable": 0}}, {"maxUnavailable": 0}),  # no eviction, not minAvailable 1
])
def test_pod_disruption_budget_for_several_replicas_or_when_asked(values: dict[str, Any], budget: Any) -> None:
    docs = render(values)
    found = [d for d in docs if d["kind"] == "PodDisruptionBudget"]
    if budget is None:
        assert found == []
        return
    (pdb,) = found
    assert {k: v for k, v in pdb["spec"].items() if k != "selector"} == budget
    assert pdb["spec"]["selector"] == only(docs, "Deployment")["spec"]["selector"]
    kubernetes_validate.validate(pdb, KUBERNETES_VERSIONS[0], strict=True)


def test_topology_spread_constraints_select_the_operator_pods_unless_told() -> None:
    pod = pod_spec(EVERYTHING)
    own, given = pod["topologySpreadConstraints"]
    assert own["labelSelector"] == only(render(EVERYTHING), "Deployment")["spec"]["selector"]
    assert given == EVERYTHING["topologySpreadConstraints"][1]
    assert "topologySpreadConstraints" not in pod_spec({})


def test_extra_env_and_volumes_are_added_to_the_chart_s_own() -> None:
    pod = pod_spec(EVERYTHING)
    (container,) = pod["containers"]
    assert container["env"][-2:] == EVERYTHING["extraEnv"]
    assert container["volumeMounts"] == [{"name": "tmp", "mountPath": "/tmp"}, *EVERYTHING["extraVolumeMounts"]]
    assert pod["volumes"][1:] == EVERYTHING["extraVolumes"] and pod["volumes"][0]["name"] == "tmp"
    defaults = pod_spec({})
    assert [v["name"] for v in defaults["volumes"]] == ["tmp"]
    assert defaults["containers"][0]["env"][-1]["name"] == "POD_NAMESPACE"


def test_network_policy_allows_dns_the_api_server_prometheus_and_the_metrics_ports() -> None:
    assert not [d for d in render() if d["kind"] == "NetworkPolicy"]
    docs = render(EVERYTHING)
    policy = only(docs, "NetworkPolicy")["spec"]
    (container,) = only(docs, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    assert policy["podSelector"] == only(docs, "Deployment")["spec"]["selector"]
    (ingress,) = policy["ingress"]
    assert {p["port"] for p in ingress["ports"]} == {p["name"] for p in container["ports"]}
    assert ingress["from"] == EVERYTHING["networkPolicy"]["metricsFrom"]
    dns, api, prometheus, *extra = policy["egress"]
    assert {(p["port"], p["protocol"]) for p in dns["ports"]} == {(53, "UDP"), (53, "TCP")}
    assert api == {"ports": [{"port": 443, "protocol": "TCP"}, {"port": 6443, "protocol": "TCP"}],
                   "to": [{"ipBlock": {"cidr": "10.0.0.1/32"}}, {"ipBlock": {"cidr": "fd00::1/128"}}]}
    assert prometheus["to"] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}},
                                 "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}}}]
    assert prometheus["ports"] == [{"port": 9090, "protocol": "TCP"}]  # prometheus.url's port
    assert extra == EVERYTHING["networkPolicy"]["extraEgress"]
    bare = only(render({"networkPolicy": {"enabled": True, "dns": {"enabled": False}}}), "NetworkPolicy")["spec"]
    assert "from" not in bare["ingress"][0] and "to" not in bare["egress"][0] and len(bare["egress"]) == 2


# --- RBAC ------------------------------------------------------------------------------------------


Grant = tuple[str, str, str]  # (apiGroup, resource, verb)


def grants(rules: list[dict[str, list[str]]]) -> set[Grant]:
    return {(g, r, v) for rule in rules for g in rule["apiGroups"] for r in rule["resources"] for v in rule["verbs"]}


def roles(docs: list[dict[str, Any]]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """Each (Cluster)Role with its (Cluster)RoleBinding; every binding must bind a rendered role."""
    by_key = {(d["kind"], d["metadata"].get("namespace"), d["metadata"]["name"]): d for d in docs}
    bindings = [d for d in docs if d["kind"] in ("RoleBinding", "ClusterRoleBinding")]
    assert len(bindings) == len([d for d in docs if d["kind"] in ("Role", "ClusterRole")])
    for binding in bindings:
        ref = binding["roleRef"]
        yield by_key[(ref["kind"], binding["metadata"].get("namespace"), ref["name"])], binding


@pytest.mark.parametrize("name", CONFIGS)
def test_rbac_grants_exactly_the_operators_rules(name: str) -> None:
    docs = render(CONFIGS[name])
    account = only(docs, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"]
    watched = CONFIGS[name].get("watchNamespaces", [])
    expected = {("ClusterRole", None): grants(rbac.RULES)} if not watched else {
        ("Role", ns): grants(rbac.RULES) for ns in watched}
    expected[("Role", NAMESPACE)] = grants(rbac.LEASE_RULES)
    rendered = {}
    for role, binding in roles(docs):
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": account, "namespace": NAMESPACE}]
        rendered[(role["kind"], role["metadata"].get("namespace"))] = grants(role["rules"])
    assert rendered == expected


def test_no_lease_role_without_leader_election() -> None:
    docs = render({"leaderElection": {"enabled": False}})
    assert [grants(d["rules"]) for d in docs if d["kind"] in ("Role", "ClusterRole")] == [grants(rbac.RULES)]
