"""The chart refuses bad values at install: values.schema.json names the value `helm template`
and `helm lint` reject, and the templates refuse combinations a schema cannot express; the
schema covers every value the install guide documents, with the operator's own durations."""

from __future__ import annotations

import json
import re

import pytest
import yaml

from plateau.api.durations import DURATION_PATTERN
from tests.support.chart import CHART, REPO, lint, template


@pytest.mark.parametrize("bad, path", [
    ("replicas=two", "/replicas"),
    ("dcgm.labelScheme=exported", "/dcgm/labelScheme"),
    ("evaluation.interval=15 seconds", "/evaluation/interval"),
    ("watchNamespaces[0]=Team_A", "/watchNamespaces/0"),
    ("image.pullPolicy=Sometimes", "/image/pullPolicy"),
    ("sidecar.image.repository=", "/sidecar/image/repository"),
    ("sidecar.resources.limits.memory=lots", "/sidecar/resources/limits/memory"),
    ("metrics.port=80", "/metrics/port"),
    ("terminationGracePeriodSeconds=5", "/terminationGracePeriodSeconds"),
    ("serviceMonitor.enable=true", "/serviceMonitor"),
    ("nameOverride=Plateau_Ops", "/nameOverride"),
    ("fullnameOverride=-plateau", "/fullnameOverride"),
    ("fullnameOverride=9plateau", "/fullnameOverride"),  # its Service's name must start with a letter
    ("logLevel=verbose", "/logLevel"),
    ("logFormat=logfmt", "/logFormat"),
    ("podSecurityContext.runAsUser=root", "/podSecurityContext/runAsUser"),
    ("podSecurityContext.runAsNonroot=true", "/podSecurityContext"),
    ("securityContext.readOnlyRootFilesystem=yes", "/securityContext/readOnlyRootFilesystem"),
    ("securityContext.capabilities.drop=ALL", "/securityContext/capabilities/drop"),
    ("podDisruptionBudget.enabled=maybe", "/podDisruptionBudget/enabled"),
    ("podDisruptionBudget.minAvailable=half", "/podDisruptionBudget/minAvailable"),
    ("topologySpreadConstraints[0].maxSkew=one", "/topologySpreadConstraints/0/maxSkew"),
    ("extraEnv[0].value=x", "/extraEnv/0"),
    ("extraVolumes[0].emptyDir=x", "/extraVolumes/0"),
    ("extraVolumeMounts[0].name=ca", "/extraVolumeMounts/0"),
    ("networkPolicy.enabled=yes", "/networkPolicy/enabled"),
    ("networkPolicy.prometheus.port=http", "/networkPolicy/prometheus/port"),
    ("networkPolicy.apiServer.cidrs[0]=everywhere", "/networkPolicy/apiServer/cidrs/0"),
    ("prometheusRule.runbookUrl=wiki", "/prometheusRule/runbookUrl"),
    # an interval or timeout of zero: a cycle loop that never waits, /healthz failing at once,
    # API requests the client refuses
    ("evaluation.interval=0s", "/evaluation/interval"),
    ("prometheus.timeout=0.0s", "/prometheus/timeout"),
    ("kubernetesApi.timeout=0ms", "/kubernetesApi/timeout"),
    ("kubernetesApi.connectTimeout=0m0s", "/kubernetesApi/connectTimeout"),
    # no name: the binding would go to the namespace's "default" ServiceAccount
    ("serviceAccount.create=false", "/serviceAccount/name"),
])
def test_values_schema_rejects_bad_values(bad: str, path: str) -> None:
    for result in (template(extra=["--set", bad]), lint("--set", bad)):
        assert result.returncode != 0, f"{bad} was accepted"
        assert f"'{path}'" in result.stdout + result.stderr, result.stdout + result.stderr


def test_every_value_is_in_the_install_guides_table() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    table = (REPO / "docs" / "install.md").read_text().split("\n## Values\n", 1)[1].split("\n## ", 1)[0]
    documented = {name for cell in re.findall(r"^\| (.*?) \|", table, re.M) for name in re.findall(r"`([^`.]+)[^`]*`", cell)}
    assert set(values) - documented == set()
    schema = json.loads((CHART / "values.schema.json").read_text())
    assert set(schema["properties"]) - {"global"} == set(values)  # Helm passes `global` to every chart


def test_schema_durations_are_the_operators() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    assert schema["definitions"]["duration"]["pattern"] == DURATION_PATTERN


def test_several_replicas_need_leader_election() -> None:
    result = template({"replicas": 2, "leaderElection": {"enabled": False}})
    assert result.returncode != 0 and "leaderElection.enabled" in result.stderr


def test_a_release_name_that_cannot_name_a_service_is_refused() -> None:
    result = template(release="9rel")
    assert result.returncode != 0 and "9rel-plateau-metrics must start with a letter" in result.stderr


def test_alerts_need_the_service_monitor_whose_series_they_read() -> None:
    result = template({"prometheusRule": {"enabled": True}})
    assert result.returncode != 0 and "needs serviceMonitor.enabled" in result.stderr


def test_a_positive_interval_below_a_second_is_a_duration() -> None:
    assert template({"evaluation": {"interval": "0.5s"}, "kubernetesApi": {"timeout": "0.25s"}}).returncode == 0
