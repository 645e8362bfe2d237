"""End to end: real trainer, sidecar, Prometheus and operator processes; emulated API.

Each test applies a TrainingJob and watches the operator stop it for one reason.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.harness import Environment, training_job, trainer

pytestmark = pytest.mark.e2e


async def test_plateau_stops_the_job_with_the_handshake_and_tells_the_story(tmp_path: Path) -> None:
    async with Environment(tmp_path, ["tj-plateau"]) as env:
        env.start_operator()
        env.create(training_job(
            "tj-plateau",
            {"metric": {"name": "val_loss", "patience": 3, "minDelta": {"relative": 0.05}}, "gracePeriod": "20s"},
            trainer("--lr", "1.0", "--epochs", "400", "--sleep", "0.4"),
        ))
        status = await env.wait_phase("tj-plateau", "Stopped")
        assert status["reason"] == "Plateau"
        assert "has not improved by 5.00% for" in status["message"]
        assert "the trainer exited" in status["message"]  # it checkpointed and exited in the grace period
        metric = status["metric"]
        assert metric["name"] == "val_loss" and metric["best"] <= metric["last"] + 1e-12
        assert status["evaluations"] >= 4 and status["stopTime"] and status["startTime"]
        assert env.kubelet.finished["tj-plateau"] == 0
        assert (tmp_path / "pods" / env.slots[0].pod / "plateau").exists()
        assert env.event_reasons("tj-plateau") == ["Running", "StopRequested", "Stopped"]
        conditions = {c["type"]: c for c in status["conditions"]}
        assert conditions["MetricsAvailable"]["status"] == "True"
        assert conditions["StopRequested"]["reason"] == "Plateau"
