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
from plateau.replay import Row, RunHistory, RunResult, replay_run
from tests.e2e.harness import Environment, training_job, trainer

pytestmark = pytest.mark.e2e

PRESETS = ("balanced", "conservative", "aggressive")


def reports(env: Environment, job: str) -> list[dict[str, float]]:
    slot = next(s for s in env.slots if s.job == job)
    path = env.workdir / "pods" / slot.pod / "plateau" / "metrics.jsonl"
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
            assert status["metric"]["sidecarReports"] == len(sent)


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
