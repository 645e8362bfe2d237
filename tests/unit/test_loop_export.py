"""The loop's per-job figures: jobs by phase, and the running ones whose metrics are missing."""

from __future__ import annotations

from typing import Optional

from prometheus_client import REGISTRY

from plateau.controller.loop import export
from plateau.engine.status import set_condition
from plateau.engine.stopflow import rfc3339_at
from tests.unit.loop_cases import T0, body, new_loop


def test_jobs_are_counted_by_phase_and_only_running_ones_report_missing_metrics() -> None:
    loop = new_loop()
    missing = [c.model_dump(by_alias=True, mode="json") for c in
               set_condition([], "MetricsAvailable", "False", "NoSeries", "", rfc3339_at(T0), 1)]
    for name, phase in (("a", "Running"), ("b", "Running"), ("c", "Stopped")):
        loop.registry.on_trainingjob({"type": "ADDED", "object": body({"phase": phase, "conditions": missing},
                                                                       uid=name, name=name)})
    export.phases(loop)

    def sample(name: str, **labels: str) -> Optional[float]:
        return REGISTRY.get_sample_value(name, labels)

    assert sample("plateau_operator_trainingjobs", phase="Running") == 2
    assert sample("plateau_operator_trainingjobs", phase="Stopped") == 1
    assert sample("plateau_operator_trainingjobs", phase="Pending") == 0
    labels = {"namespace": "n", "condition": "MetricsAvailable", "reason": "NoSeries"}
    assert sample("plateau_operator_trainingjob_metrics_missing", trainingjob="a", **labels) == 1
    assert sample("plateau_operator_trainingjob_metrics_missing", trainingjob="c", **labels) is None
