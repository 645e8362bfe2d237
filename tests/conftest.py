"""Fixtures shared across the test suites, and the hypothesis profiles."""

import os

from hypothesis import settings

from tests.support.dcgm import dcgm_exporter  # noqa: F401 (a fixture: a dcgm-shaped exporter)
from tests.support.prometheus import prometheus  # noqa: F401 (a fixture: a real Prometheus server)

pytest_plugins = ["tests.support.apiserver.fixtures"]  # apiserver, kubeconfig, http, k8s, kubectl

# Every run draws the same examples, so a test passes or fails the same way in CI and on a
# laptop (no example database, no deadline on shared machines). What a random run once found
# is pinned with @example. HYPOTHESIS_PROFILE=explore draws new examples, to look for more.
settings.register_profile("ci", derandomize=True, database=None, deadline=None)
settings.register_profile("explore", derandomize=False, max_examples=1000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
