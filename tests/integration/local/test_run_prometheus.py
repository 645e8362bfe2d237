"""`plateau run --prometheus`: the same series, read back from a real Prometheus that scrapes the
run's sidecar, with the trainingjob label matcher quoted."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.local.test_run import manifest, run, trainer_command
from tests.support.prometheus import PrometheusServer, free_port

pytestmark = pytest.mark.integration


def test_metrics_read_through_prometheus(tmp_path: Path, prometheus: PrometheusServer) -> None:
    port = free_port()
    prometheus.add_target(f"127.0.0.1:{port}")
    prometheus.start()
    # Prometheus has the first sample ~6 s after it starts: the trainer runs long enough.
    command = trainer_command("--lr", "0.5", "--epochs", "300", "--sleep", "0.2")
    stop = {"metric": {"name": "accuracy", "mode": "max", "target": 0.95}, "maxDuration": "45s"}
    metrics = {"source": "file", "names": ["accuracy"], "scrapeInterval": "1s"}
    name = "digits.v1-run"  # a dot: the query's regex matcher must quote it
    result = run(tmp_path, manifest(command, stop, metrics=metrics, name=name), "--metrics-port", str(port), "--prometheus", prometheus.url)

    assert result.returncode == 0, result.stderr
    status = result.status
    assert (status["phase"], status["reason"]) == ("Succeeded", "TargetReached"), status["message"]
    assert result.condition("MetricsAvailable")["status"] == "True"
    assert f"metrics from {prometheus.url}" in result.stdout
    result.assert_png()
