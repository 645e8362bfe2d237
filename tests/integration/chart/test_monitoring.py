"""The chart's monitoring: the PodMonitor that finds the sidecars, the alerts and the dashboard,
checked against the series the operator and the sidecar export, and fired in a real Prometheus."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import prometheus_client
import yaml

import plateau.controller.metrics
from plateau.api import TrainingJobSpec
from plateau.controller.children import LABEL, SidecarSettings, build_job
from plateau.controller.workload_state import SIDECAR_NAME
from plateau_sidecar import protocol
from tests.support.chart import CHART, EVERYTHING, NAMESPACED, REPO, only, render, template
from tests.support.prometheus import require_tool


# --- monitoring: the sidecar contract, the alerts, the dashboard --------------------------------


def sample_pod_template() -> dict[str, Any]:
    """The pod template the operator builds for the patience example, sidecar included."""
    example = yaml.safe_load((REPO / "examples/plateau-patience.yaml").read_text())
    body = {**example, "metadata": {**example["metadata"], "namespace": "team-a", "uid": "u1"}}
    return build_job(body, TrainingJobSpec.model_validate(example["spec"]), SidecarSettings())["spec"]["template"]


def test_pod_monitor_selects_the_injected_sidecars() -> None:
    template_ = sample_pod_template()
    sidecar = next(c for c in template_["spec"]["initContainers"] if c["name"] == SIDECAR_NAME)
    monitor = only(render(NAMESPACED), "PodMonitor")["spec"]
    assert monitor["selector"] == {"matchExpressions": [{"key": LABEL, "operator": "Exists"}]}
    assert LABEL in template_["metadata"]["labels"]
    assert [e["port"] for e in monitor["podMetricsEndpoints"]] == [p["name"] for p in sidecar["ports"]]
    assert monitor["namespaceSelector"] == {"matchNames": ["team-a", "team-b"]}
    assert only(render(EVERYTHING), "PodMonitor")["spec"]["namespaceSelector"] == {"any": True}


def test_pod_monitor_selects_a_sidecar_added_by_hand_as_the_user_guide_shows() -> None:
    guide = (REPO / "docs" / "user-guide.md").read_text()
    [snippet] = [yaml.safe_load(b) for b in re.findall(r"```yaml\n(.*?)```", guide, re.S) if "initContainers:" in b]
    template_ = snippet["spec"]["template"]
    [sidecar] = template_["spec"]["initContainers"]
    monitor = only(render(EVERYTHING), "PodMonitor")["spec"]
    [selector] = monitor["selector"]["matchExpressions"]
    assert selector["operator"] == "Exists" and selector["key"] in template_["metadata"]["labels"]
    assert [e["port"] for e in monitor["podMetricsEndpoints"]] == [p["name"] for p in sidecar["ports"]]
    assert sidecar["ports"][0]["containerPort"] == protocol.DEFAULT_METRICS_PORT


def known_series() -> set[str]:
    """The series names plateau.controller.metrics exposes, and Prometheus's `up`."""
    names = {"up"}
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
    for value in vars(plateau.controller.metrics).values():
        if isinstance(value, prometheus_client.metrics.MetricWrapperBase):
            names |= {value._name + s for s in suffixes[value._type]}
    return names


def alert_rules(values: dict[str, Any]) -> list[dict[str, Any]]:
    return [r for g in only(render(values), "PrometheusRule")["spec"]["groups"] for r in g["rules"]]


def dashboard(values: dict[str, Any]) -> dict[str, Any]:
    config_map = only(render(values), "ConfigMap")
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    return json.loads(config_map["data"]["plateau.json"])


def dashboard_exprs() -> list[str]:
    """The dashboard's queries, with Grafana's variables replaced by what Grafana would put there."""
    grafana = {"$__rate_interval": "5m", "$__range": "7d", "$job": ".+", "$cluster": ".*", "$namespace": ".*"}
    out = []
    for panel in dashboard(EVERYTHING)["panels"]:
        for target in panel["targets"]:
            expr = target["expr"]
            for variable, value in grafana.items():
                expr = expr.replace(variable, value)
            out.append(expr)
    return out


def test_alerts_and_dashboard_use_only_series_that_exist() -> None:
    exprs = [r["expr"] for r in alert_rules(EVERYTHING)] + dashboard_exprs()
    used = {name for expr in exprs for name in re.findall(r"\b(plateau_\w+|up)\b", expr)}
    assert used - known_series() == set(), "series the operator does not export (add them to plateau.controller.metrics)"


def test_dashboard_shows_what_platform_teams_ask_for() -> None:
    board = dashboard(EVERYTHING)
    titles = {p["title"] for p in board["panels"]}
    assert {"GPU-hours saved", "Stops by reason", "TrainingJobs by phase", "Evaluation cycle latency",
            "Jobs running without metrics", "Jobs running without metrics, by job"} <= titles
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert {"datasource", "cluster", "job", "namespace"} <= variables.keys()
    assert variables["cluster"]["allValue"] == ".*"  # "All" matches a Prometheus without a cluster label
    for panel in board["panels"]:
        for target in panel["targets"]:
            assert 'cluster=~"$cluster"' in target["expr"] and 'job=~"$job"' in target["expr"], panel["title"]
    missing = [t["expr"] for p in board["panels"] if p["title"].startswith("Jobs running without metrics") for t in p["targets"]]
    assert all("plateau_operator_trainingjob_metrics_missing" in e and 'namespace=~"$namespace"' in e for e in missing)
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


SEVERITIES = {"PlateauOperatorDown": "critical", "PlateauNoLeader": "critical",  # nothing is stopped
              "PlateauPrometheusUnreachable": "warning", "PlateauPrometheusQueryErrors": "warning",
              "PlateauKubernetesApiErrors": "warning",  # some rules on hold for every job
              "PlateauMetricsMissing": "info", "PlateauSidecarDown": "info"}  # one job unwatched


def test_alerts_have_runbooks_in_the_troubleshooting_guide_and_severities_by_urgency() -> None:
    guide = (REPO / "docs" / "troubleshooting.md").read_text()
    anchors = {github_anchor(h) for h in re.findall(r"^#+ (.+)$", guide, re.M)}
    base = yaml.safe_load((CHART / "values.yaml").read_text())["prometheusRule"]["runbookUrl"]
    assert base.endswith("/docs/troubleshooting.md")
    rules = {r["alert"]: r for r in alert_rules(EVERYTHING)}
    assert rules.keys() == SEVERITIES.keys()
    for name, rule in rules.items():
        page, anchor = rule["annotations"]["runbook_url"].split("#")
        assert page == base and anchor in anchors, name
        assert rule["labels"] == {"severity": SEVERITIES[name], **EVERYTHING["prometheusRule"]["alertLabels"]}
    values = {**EVERYTHING, "prometheusRule": {"enabled": True, "alertLabels": {"severity": "page"},
                                               "runbookUrl": "https://wiki.example.com/plateau"}}
    for rule in alert_rules(values):
        assert rule["labels"] == {"severity": "page"}
        assert rule["annotations"]["runbook_url"] == f"https://wiki.example.com/plateau#{rule['alert'].lower()}"


def promtool(*args: str, cwd: Path) -> None:
    result = subprocess.run([require_tool("promtool"), *args], capture_output=True, text=True, timeout=60, cwd=cwd)
    assert result.returncode == 0, result.stdout + result.stderr


def test_alert_rules_and_dashboard_queries_parse(tmp_path: Path) -> None:
    groups = only(render(EVERYTHING), "PrometheusRule")["spec"]["groups"]
    recorded = [{"record": f"plateau:dashboard_query:{i}", "expr": e} for i, e in enumerate(dashboard_exprs())]
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": [*groups, {"name": "dashboard", "rules": recorded}]}))
    promtool("check", "rules", "rules.yaml", cwd=tmp_path)


def expected_alert(rule: dict[str, Any], labels: dict[str, str]) -> dict[str, Any]:
    """What promtool should see fire: the rule's labels and its annotations expanded for `labels`."""
    def expand(text: str) -> str:
        return re.sub(r"\{\{ \$labels\.(\w+) \}\}", lambda m: labels.get(m.group(1), ""), text)
    return {"exp_labels": {**labels, **rule["labels"]}, "exp_annotations": {k: expand(v) for k, v in rule["annotations"].items()}}


def test_alerts_fire_when_they_should(tmp_path: Path) -> None:
    rules = {r["alert"]: r for r in alert_rules(EVERYTHING)}
    operator = 'job="plateau-metrics", namespace="plateau-system"'
    down = {"interval": "1m", "input_series": [{"series": f'up{{{operator}, pod="p"}}', "values": "1x5 0x20"}],
            "alert_rule_test": [
                {"eval_time": "4m", "alertname": "PlateauOperatorDown", "exp_alerts": []},
                {"eval_time": "15m", "alertname": "PlateauOperatorDown", "exp_alerts": [expected_alert(rules["PlateauOperatorDown"], {})]}]}
    unreachable = {"reason": "Unreachable"}
    errors = {"interval": "1m", "input_series": [
        {"series": f'plateau_operator_prometheus_errors_total{{{operator}, reason="Unreachable"}}', "values": "0+4x30"},
        {"series": f'plateau_operator_leader{{{operator}, pod="p"}}', "values": "1x30"}],
        "alert_rule_test": [
            {"eval_time": "20m", "alertname": "PlateauPrometheusUnreachable",
             "exp_alerts": [expected_alert(rules["PlateauPrometheusUnreachable"], unreachable)]},
            {"eval_time": "20m", "alertname": "PlateauNoLeader", "exp_alerts": []}]}
    job = {"namespace": "team-a", "trainingjob": "resnet", "condition": "MetricsAvailable", "reason": "NoSeries"}
    selector = ", ".join(f'{k}="{v}"' for k, v in job.items())
    missing = {"interval": "1m", "input_series": [
        {"series": f'plateau_operator_trainingjob_metrics_missing{{job="plateau-metrics", {selector}}}', "values": "1x30"}],
        "alert_rule_test": [{"eval_time": "20m", "alertname": "PlateauMetricsMissing",
                             "exp_alerts": [expected_alert(rules["PlateauMetricsMissing"], job)]}]}
    hung = {"verb": "patch trainingjobs/status", "code": "timeout"}
    timeouts = {"interval": "1m", "input_series": [
        {"series": f'plateau_operator_api_errors_total{{{operator}, verb="{hung["verb"]}", code="timeout"}}', "values": "0+4x30"}],
        "alert_rule_test": [{"eval_time": "20m", "alertname": "PlateauKubernetesApiErrors",
                             "exp_alerts": [expected_alert(rules["PlateauKubernetesApiErrors"], hung)]}]}
    groups = only(render(EVERYTHING), "PrometheusRule")["spec"]["groups"]
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": groups}))
    (tmp_path / "tests.yaml").write_text(yaml.safe_dump({"rule_files": ["rules.yaml"], "evaluation_interval": "1m",
                                                         "tests": [down, errors, missing, timeouts]}))
    promtool("test", "rules", "tests.yaml", cwd=tmp_path)
