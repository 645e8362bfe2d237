"""End to end with the real kubectl: what a user sees and does, while the operator runs.

`kubectl get`, `explain`, `describe`, `scale` and `patch` against the emulated API server
(over TLS: kubectl sends tokens only over TLS), with real trainer, sidecar, Prometheus and
operator processes behind it.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.harness import Environment, trainer, training_job

pytestmark = pytest.mark.e2e

PLATEAUING = ("--lr", "1.0", "--epochs", "400", "--sleep", "0.4")


def condition(status: dict[str, Any], type_: str) -> dict[str, Any]:
    return next((c for c in status.get("conditions") or [] if c["type"] == type_), {})


async def kubectl(env: Environment, *args: str) -> str:
    code, out, err = await env.kubectl(*args)
    assert code == 0, f"kubectl {' '.join(args)} failed ({code}): {err}"
    return out


def table(text: str) -> list[dict[str, str]]:
    """kubectl's column output as rows of {HEADER: cell}, cut at the header's column starts."""
    lines = [line for line in text.splitlines() if line.strip()]
    starts = [m.start() for m in re.finditer(r"\S+", lines[0])]
    names = lines[0].split()
    return [{n: line[a:b].strip() for n, a, b in zip(names, starts, [*starts[1:], None])} for line in lines[1:]]


# --- 8. get, explain, scale to 0 and back, describe ------------------------------------------------


async def test_kubectl_shows_explains_stops_resumes_and_describes_a_trainingjob(tmp_path: Path) -> None:
    async with Environment(tmp_path, ["tj-cli"], tls=True) as env:
        env.start_operator()
        env.create(training_job("tj-cli", {"metric": {"name": "val_loss", "patience": 100000}, "gracePeriod": "3s"},
                                trainer(*PLATEAUING, "--ignore-stop"), gpus=1))
        await env.wait("a metric and GPU-hours in status",
                       lambda: (env.status("tj-cli").get("metric") or {}).get("best") is not None
                       and env.status("tj-cli").get("gpuHours", 0) > 0, timeout=40)

        # get: the printer columns
        out = await kubectl(env, "get", "tj")
        assert out.split("\n")[0].split() == ["NAME", "PHASE", "REASON", "METRIC", "BEST", "GPU-H", "AGE"]
        [row] = table(out)
        assert row["NAME"] == "tj-cli" and row["PHASE"] == "Running" and row["REASON"] in ("", "<none>")
        assert 0 < float(row["METRIC"]) < 3 and 0 < float(row["BEST"]) <= float(row["METRIC"]) + 1e-9
        assert float(row["GPU-H"]) > 0 and re.fullmatch(r"\d+s", row["AGE"])
        [wide] = table(await kubectl(env, "get", "trainingjobs.plateau.dev", "tj-cli", "-o", "wide"))
        assert wide["MONITORED"] == "val_loss" and int(wide["STEP"]) % 22 == 0 and int(wide["STEP"]) > 0
        # the `plateau` category
        out = await kubectl(env, "get", "plateau")
        [row] = table(out)
        assert row["NAME"].rsplit("/", 1)[-1] == "tj-cli" and row["PHASE"] == "Running"

        # explain: the stop spec documents its fields
        out = await kubectl(env, "explain", "trainingjob.spec.stop")
        for field_ in ("combine", "maxDuration", "maxGpuHours", "metric", "gpuIdle", "cohort", "preset", "dryRun",
                       "gracePeriod"):
            assert re.search(rf"^\s+{field_}\s+<", out, re.M), (field_, out)
        assert "When to stop" in out
        out = await kubectl(env, "explain", "trainingjob.spec.stop.gracePeriod")
        assert "checkpoint" in out and "suspended or scaled to zero" in " ".join(out.split())
        out = await kubectl(env, "explain", "tj.spec.stop.metric.patience")
        assert "Plateau" in out and "evaluations" in out

        # scale to 0: the user's manual stop, through the scale subresource
        assert "scaled" in await kubectl(env, "scale", "tj", "tj-cli", "--replicas=0")
        assert env.tj("tj-cli")["spec"]["replicas"] == 0
        stopping = await env.wait_phase("tj-cli", "Stopping", timeout=15)
        assert stopping["reason"] == "Manual" and stopping["message"] == "replicas set to 0"
        assert env.child_job("tj-cli")["spec"].get("suspend") is not True  # the trainer has its grace period
        stopped = await env.wait_phase("tj-cli", "Stopped", timeout=20)
        assert stopped["reason"] == "Manual" and "gracePeriod 3s is over" in stopped["message"]
        assert stopped["replicas"] == 0 and stopped["observedGeneration"] == 2
        assert env.child_job("tj-cli")["spec"]["suspend"] is True
        await env.wait("the Job's pod gone", lambda: env.child_job("tj-cli").get("status", {}).get("active") == 0, timeout=15)
        [row] = table(await kubectl(env, "get", "tj", "tj-cli"))
        assert (row["PHASE"], row["REASON"]) == ("Stopped", "Manual")
        scale = json.loads(await kubectl(env, "get", "--raw",
                                         "/apis/plateau.dev/v1alpha1/namespaces/default/trainingjobs/tj-cli/scale"))
        assert scale["spec"]["replicas"] == 0 and scale["status"]["replicas"] == 0
        assert scale["status"]["selector"] == "plateau.dev/trainingjob=tj-cli"

        # scale back to 1: resumed
        await kubectl(env, "scale", "tj", "tj-cli", "--replicas=1")
        resumed = await env.wait_phase("tj-cli", "Running", timeout=15)
        assert resumed["observedGeneration"] == 3 and resumed["replicas"] == 1 and not resumed.get("reason")
        assert condition(resumed, "StopRequested")["status"] == "False"
        assert condition(resumed, "StopRequested")["reason"] == "Resumed"
        assert env.child_job("tj-cli")["spec"]["suspend"] is False
        await env.wait("a new pod running", lambda: env.child_job("tj-cli").get("status", {}).get("active") == 1
                       and env.kubelet.pods["tj-cli"].trainer.poll() is None, timeout=15)
        [row] = table(await kubectl(env, "get", "tj", "tj-cli"))
        assert row["PHASE"] == "Running"

        # describe: the Events tell the story, in order
        await env.wait_events("tj-cli", ["Running", "StopRequested", "Stopped", "Resumed"])
        out = await kubectl(env, "describe", "tj", "tj-cli")
        assert "Events:" in out
        events = out[out.index("Events:"):]
        story = [line.split()[1] for line in events.splitlines()
                 if line.strip().startswith("Normal") or line.strip().startswith("Warning")]
        assert story == ["Running", "StopRequested", "Stopped", "Resumed"], events
        assert "Manual: replicas set to 0" in events and "resumed with 1 replica(s)" in events
        assert "plateau-operator" in events or "plateau.dev/operator" in events
        assert re.search(r"Phase:\s+Running", out)
        assert env.event_reasons("tj-cli") == ["Running", "StopRequested", "Stopped", "Resumed"]


# --- 9. A spec edited while the job runs ------------------------------------------------------------


async def test_a_spec_edited_with_kubectl_patch_is_evaluated_from_the_next_cycle(tmp_path: Path) -> None:
    async with Environment(tmp_path, ["tj-edit"], tls=True) as env:
        env.start_operator()
        env.create(training_job("tj-edit", {"metric": {"name": "val_loss", "patience": 1000, "minDelta": {"relative": 0.05}},
                                            "gracePeriod": "20s"}, trainer(*PLATEAUING)))
        # Plateaued by the standard of patience 3, but patience is 1000.
        await env.wait("5 evaluations without a 5% improvement",
                       lambda: (env.status("tj-edit").get("metric") or {}).get("sinceImprovement", 0) >= 5, timeout=60)
        before = env.status("tj-edit")
        assert before["phase"] == "Running" and before["observedGeneration"] == 1

        patched = time.time()
        await kubectl(env, "patch", "tj", "tj-edit", "--type", "merge", "-p", '{"spec": {"stop": {"metric": {"patience": 3}}}}')
        assert env.tj("tj-edit")["metadata"]["generation"] == 2
        status = await env.wait("a stop under the new spec", lambda: env.status("tj-edit").get("stopRequestedTime")
                                and env.status("tj-edit"), timeout=15)
        took = time.time() - patched
        assert took < 6, f"the new spec took {took:.1f}s to act (the loop runs every 1s and wakes on a new generation)"
        assert status["reason"] == "Plateau" and status["observedGeneration"] == 2
        assert re.search(r"has not improved by 5\.00% for \d+ evaluations", status["message"])
        assert condition(status, "StopRequested")["observedGeneration"] == 2
        assert condition(status, "MetricsAvailable")["observedGeneration"] == 2
        # The history carried over: the metric's state from generation 1 is the same track.
        assert status["evaluations"] >= before["evaluations"]
        assert status["metric"]["best"] <= before["metric"]["best"]

        final = await env.wait_phase("tj-edit", "Stopped", timeout=20)
        assert final["observedGeneration"] == 2 and final["reason"] == "Plateau"
        await env.wait_events("tj-edit", ["Running", "StopRequested", "Stopped"])
