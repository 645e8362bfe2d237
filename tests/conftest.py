"""Fixtures shared across the test suites."""

from tests.support.dcgm import dcgm_exporter  # noqa: F401 (a fixture: a dcgm-shaped exporter)
from tests.support.prometheus import prometheus  # noqa: F401 (a fixture: a real Prometheus server)

pytest_plugins = ["tests.support.apiserver.fixtures"]  # apiserver, kubeconfig, http, k8s, kubectl
