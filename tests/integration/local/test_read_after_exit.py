"""`plateau run --prometheus` reads once more after the sidecar exits: what a real Prometheus
answers then, and what the reader keeps."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from plateau.api import StopSpec
from plateau.engine.history import metric_spec_for
from plateau.local.metrics import MetricReader
from plateau.local.scrape import PrometheusReader
from tests.support.prometheus import PrometheusServer, SidecarProcess

pytestmark = pytest.mark.integration
STOP = StopSpec.model_validate({"metric": {"name": "val_loss", "patience": 3}})


def test_once_the_sidecar_exits_prometheus_answers_no_series_and_the_reader_keeps_its_track(
    tmp_path: Path, prometheus: PrometheusServer,
) -> None:
    spec = metric_spec_for(STOP)
    assert spec is not None and STOP.metric is not None
    (tmp_path / "spec").write_text(spec.text)
    metrics = tmp_path / "metrics.jsonl"
    metrics.write_text("".join(json.dumps({"step": s, "val_loss": 1.0 / s}) + "\n" for s in range(1, 6)))
    sidecar = SidecarProcess(tmp_path, "tj", "--metrics-file", str(metrics), "--spec-file", str(tmp_path / "spec"))
    reader = MetricReader(STOP.metric, PrometheusReader(prometheus.url, "tj"), spec.key)
    try:
        sidecar.wait_ready()
        prometheus.add_target(sidecar.metrics_address)
        prometheus.start()
        prometheus.wait_for('plateau_metric_reports_total{metric="val_loss"}', lambda v: v == 5)
        reader.read()
        assert reader.availability[0] == "True" and reader.track is not None and reader.track.evaluations == 5
        sidecar.stop()
        # Prometheus's next scrape fails and marks the target's series stale (its documented
        # staleness handling): within a few scrape intervals a query finds none.
        deadline = time.monotonic() + 30
        while reader.source.read("val_loss") is not None:
            assert time.monotonic() < deadline, "the series never went stale"
            time.sleep(0.2)
        reader.read_last()
        assert reader.availability[0] == "True" and reader.track.evaluations == 5
    finally:
        sidecar.stop()
        reader.source.close()  # type: ignore[attr-defined]
