"""End to end: the operator's stop is replay's stop, with a real Prometheus that scrapes far
slower than the trainer reports, and with a trainer that resumes from an older checkpoint.

The expected stop is what `plateau replay` makes of the trainer's own metrics file, read after
the run: the operator never sees that file, only what Prometheus scraped from the sidecar.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from plateau.api import StopSpec
from plateau.engine.history import metric_spec_for
from plateau.cli.replay import Row, RunHistory, RunResult, replay_run
from plateau.controller.children import SHARED_VOLUME
from plateau_sidecar.protocol import SPEC_ANNOTATION
from tests.e2e.harness import NAMESPACE, Environment, training_job, trainer

pytestmark = pytest.mark.e2e

PRESETS = ("balanced", "conservative", "aggressive")


def reports(env: Environment, job: str) -> list[dict[str, float]]:
    path = env.kubelet.volume(job, SHARED_VOLUME) / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def replayed(stop: dict, records: list[dict[str, float]]) -> RunResult:
    rows = [Row(int(r["step"]), {"val_loss": r["val_loss"]}, None, None) for r in records]
    return replay_run(RunHistory("r", None, rows), StopSpec.model_validate(stop))


async def test_each_preset_would_stop_where_replay_stops_with_five_reports_or_more_per_scrape(tmp_path: Path) -> None:
    jobs = [f"tj-{preset}" for preset in PRESETS]
    specs = {job: {"preset": preset, "metric": {"name": "val_loss"}} for job, preset in zip(jobs, PRESETS)}
    async with Environment(tmp_path, jobs) as env:  # Prometheus scrapes every 1 s
        env.start_operator()
        env.create(*(training_job(job, {**specs[job], "dryRun": True},
                                  trainer("--lr", "0.3", "--epochs", "250", "--sleep", "0.02")) for job in jobs))
        for job in jobs:
            status = await env.wait_phase(job, "Succeeded", timeout=180)
            sent = reports(env, job)
            expected = replayed(specs[job], sent)
            assert expected.stopped and expected.stop_step is not None, (job, expected)
            upto = [r for r in sent if r["step"] <= expected.stop_step]
            per_second = len(upto) / max(1e-9, upto[-1]["time"] - upto[0]["time"])
            assert per_second >= 5, f"{job}: {per_second:.1f} reports/s is not 5 per 1 s scrape"
            would = status["wouldStop"]
            assert (would["step"], would["reason"], would["message"]) == \
                (expected.stop_step, expected.reason, expected.message), job
            # Reads stop once the Job completes, so the last reports may never be read; none is made up.
            assert expected.stop_step <= status["metric"]["lastStep"] and status["metric"]["sidecarReports"] <= len(sent)


async def test_a_resumed_trainer_stops_as_replay_stops_and_the_resume_is_told(tmp_path: Path) -> None:
    stop = {"preset": "balanced", "metric": {"name": "val_loss"}}
    async with Environment(tmp_path, ["tj-resumed"]) as env:
        env.start_operator()
        # At epoch 12 the trainer goes back to its checkpoint of epoch 4 and reports those steps again.
        env.create(training_job("tj-resumed", {**stop, "gracePeriod": "20s"},
                                trainer("--lr", "0.3", "--epochs", "200", "--sleep", "0.02", "--resume", "12:4")))
        status = await env.wait_phase("tj-resumed", "Stopped", "Succeeded", timeout=180)
        expected = replayed(stop, reports(env, "tj-resumed"))
        assert expected.resumes == 1
        if expected.stopped:
            assert status["reason"] == expected.reason and status["message"].startswith(expected.message)
            told = ["Running", "Resumed", "StopRequested", "Stopped"]
        else:
            assert status["reason"] == "Completed"
            told = ["Running", "Resumed", "Succeeded"]
        assert status["metric"]["resumes"] == 1
        await env.wait_events("tj-resumed", told)


async def test_a_spec_edit_mid_run_reaches_the_sidecar_which_folds_every_report_again(tmp_path: Path) -> None:
    """The new spec travels by pod annotation and downward-API file; meanwhile no metric rule
    decides (SpecPending). The stop then is replay's under the new spec, over every report."""
    first = {"metric": {"name": "val_loss", "patience": 100000}, "gracePeriod": "20s"}
    edited = {"metric": {"name": "val_loss", "patience": 3, "minDelta": {"relative": 0.05}}, "gracePeriod": "20s"}
    async with Environment(tmp_path, ["tj-edited"]) as env:
        env.start_operator()
        env.create(training_job("tj-edited", first, trainer("--lr", "0.3", "--epochs", "400", "--sleep", "0.2")))
        await env.wait("the first spec's track", lambda: any(
            c["type"] == "MetricsAvailable" and c["status"] == "True" for c in env.status("tj-edited").get("conditions", [])))
        code, _ = await env.request("PATCH", f"/apis/plateau.dev/v1alpha1/namespaces/{NAMESPACE}/trainingjobs/tj-edited",
                                    {"spec": {"stop": edited}})
        assert code == 200
        status = await env.wait_phase("tj-edited", "Stopped", timeout=120)
        expected = replayed(edited, reports(env, "tj-edited"))
        assert expected.stopped and status["reason"] == expected.reason == "Plateau"
        assert status["message"].startswith(expected.message)
        new_key = metric_spec_for(StopSpec.model_validate(edited))
        assert new_key is not None and status["metric"]["specKey"] == new_key.key
        pod = await env.request("GET", f"/api/v1/namespaces/{NAMESPACE}/pods/{env.slots[0].pod}")
        assert pod[1]["metadata"]["annotations"][SPEC_ANNOTATION] == new_key.text  # handed over by the operator


async def test_a_push_trainer_reaches_its_sidecar_at_the_url_the_operator_gave(tmp_path: Path) -> None:
    """The trainer's client POSTs to PLATEAU_PUSH_URL as the operator wrote it (the stand-in
    changes only the port); its reports reach the track, and the stop is replay's."""
    stop = {"metric": {"name": "val_loss", "patience": 3, "minDelta": {"relative": 0.05}}, "gracePeriod": "20s"}
    async with Environment(tmp_path, ["tj-push"]) as env:
        env.start_operator()
        env.create(training_job("tj-push", stop, trainer("--lr", "0.3", "--epochs", "300", "--sleep", "0.05"),
                                metrics={"source": "push", "names": ["val_loss", "accuracy"], "scrapeInterval": "1s"}))
        status = await env.wait_phase("tj-push", "Stopped", timeout=120)
        journal = env.kubelet.volume("tj-push", SHARED_VOLUME) / "push-journal.jsonl"
        pushes = [json.loads(line) for line in journal.read_text().splitlines()]  # what the sidecar accepted
        assert pushes and all(type(push) is list for push in pushes)  # [reporter, first, records]: each push named
        sent = [record for _, _, records in pushes for record in records]
        expected = replayed(stop, sent)
        assert expected.stopped and status["reason"] == expected.reason == "Plateau"
        assert status["message"].startswith(expected.message)
