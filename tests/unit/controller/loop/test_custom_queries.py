"""A TrainingJob's own PromQL (spec.metrics.queries) in the operator: confined to its namespace
by default, refused or run as written as the chart's customQueries says, and a query that does
not parse is a SpecValid=False condition naming the field."""

from __future__ import annotations

from typing import Any, Callable

import pytest

from plateau import api
from plateau.controller.config import Settings
from plateau.controller.loop import assemble, fetch, gather
from plateau.controller.loop.context import CycleReport
from plateau.controller.loop.cycle import Loop
from plateau.controller.loop.registry import Registry
from plateau.prometheus.client import Sample
from plateau.engine.fold import Evaluation, track
from plateau.engine.rules import Observation, decide
from plateau.engine.status import SPEC_VALID, summary_from_track
from plateau.api import Reason


class FakePrometheus:
    def __init__(self) -> None:
        self.queries: list[str] = []

    async def query(self, promql: str, at: Any = None, decode: Callable[[bytes], Any] | None = None,
                    max_bytes: Any = None) -> list[Sample]:
        self.queries.append(promql)
        return [Sample({}, 0.5, 1000.0)]


def trainingjob(query: str) -> dict[str, Any]:
    return {"metadata": {"namespace": "team-a", "name": "guard", "uid": "u1", "generation": 1},
            "spec": {"workloadRef": {"apiVersion": "batch/v1", "kind": "Job", "name": "nightly"},
                     "metrics": {"queries": {"val_loss": query}},
                     "stop": {"preset": "conservative", "metric": {"name": "val_loss"}}}}


class RecordingKube:
    """Records the statuses written."""

    def __init__(self) -> None:
        self.written: list[api.TrainingJobStatus] = []

    async def patch_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        self.written.append(api.TrainingJobStatus.model_validate(status))


def new_loop(custom_queries: str) -> tuple[Loop, FakePrometheus, list[api.TrainingJobStatus]]:
    prometheus, kube = FakePrometheus(), RecordingKube()
    loop = Loop(Settings(custom_queries=custom_queries), Registry(), kube=kube, prometheus=prometheus)  # type: ignore[arg-type]
    return loop, prometheus, kube.written


async def read(custom_queries: str, query: str) -> tuple[list[str], list[api.TrainingJobStatus]]:
    """What the operator sends Prometheus for the job's query, and the statuses it writes."""
    loop, prometheus, written = new_loop(custom_queries)
    report = CycleReport()
    ctx = await gather.context(loop, trainingjob(query), 1000.0, report)
    if ctx is not None:
        await fetch.custom_metric(loop, ctx, report)
    return prometheus.queries, written


ESCAPING = 'max(my_loss{namespace=~".*"}) or max(other_loss{namespace="team-b", job="$name"})'


async def test_by_default_every_selector_is_confined_to_the_jobs_namespace() -> None:
    queries, written = await read("confined", ESCAPING)
    assert queries == ['max (my_loss{namespace=~".*", namespace="team-a"})'
                       ' or max (other_loss{namespace="team-b", job="guard", namespace="team-a"})']
    assert written == []


async def test_unconfined_runs_the_query_as_written() -> None:
    queries, _ = await read("unconfined", ESCAPING)
    assert queries == ['max(my_loss{namespace=~".*"}) or max(other_loss{namespace="team-b", job="guard"})']


@pytest.mark.parametrize("custom_queries", ["confined", "unconfined", "disabled"])
async def test_a_query_that_does_not_parse_makes_the_spec_invalid_naming_the_field(custom_queries: str) -> None:
    queries, written = await read(custom_queries, "max(my_loss{namespace=")
    assert queries == []
    [condition] = [c for c in written[-1].conditions if c.type == SPEC_VALID]
    assert (condition.status, condition.reason) == ("False", "InvalidSpec")
    assert condition.message.startswith("spec.metrics.queries.val_loss: ") and "not valid PromQL" in condition.message


async def test_disabled_makes_a_spec_with_queries_invalid() -> None:
    queries, written = await read("disabled", "max(my_loss)")
    assert queries == []
    [condition] = [c for c in written[-1].conditions if c.type == SPEC_VALID]
    assert (condition.status, condition.reason) == ("False", "InvalidSpec")
    assert condition.message == ("spec.metrics.queries: custom queries are disabled in this installation "
                                 "(Helm value customQueries)")


async def test_one_jobs_failing_query_leaves_the_other_jobs_reads_alone() -> None:
    """Prometheus refuses one team's query (say, too many samples): that job alone has no metric
    this cycle, with the error; every other job's read goes on."""
    from plateau.prometheus.client import PrometheusError

    class OneFails(FakePrometheus):
        async def query(self, promql: str, at: Any = None, decode: Callable[[bytes], Any] | None = None,
                    max_bytes: Any = None) -> list[Sample]:
            if "bad_loss" in promql:
                raise PrometheusError("QueryFailed", "query processing would load too many samples")
            return await super().query(promql, at, decode)

    loop, _, _ = new_loop("confined")
    loop.prometheus = OneFails()  # type: ignore[assignment]
    report = CycleReport()
    contexts = []
    for name, query in (("bad", "max(bad_loss)"), ("good", "max(good_loss)")):
        body = trainingjob(query)
        body["metadata"].update(name=name, uid=name)
        body["status"] = {"phase": "Running"}
        ctx = await gather.context(loop, body, 1000.0, report)
        assert ctx is not None
        contexts.append(ctx)
    summaries, shared_error, _ = await fetch.metrics(loop, contexts, report, lambda jobs, s: None)
    assert shared_error is None
    assert ("team-a", "good") in summaries and ("team-a", "bad") not in summaries
    assert contexts[0].query_error == ("QueryFailed", "query processing would load too many samples")
    assert contexts[1].query_error is None


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
async def test_a_query_answering_nan_or_inf_is_missing_data_not_a_report(value: float) -> None:
    """A custom query's NaN (a 0/0 ratio) was folded as a reported NaN (a NotFinite stop), and
    counted again each cycle since NaN never equals the last value."""

    class Answers(FakePrometheus):
        async def query(self, promql: str, at: Any = None, decode: Callable[[bytes], Any] | None = None,
                    max_bytes: Any = None) -> list[Sample]:
            return [Sample({}, value, 1000.0)]

    loop, _, _ = new_loop("confined")
    loop.prometheus = Answers()  # type: ignore[assignment]
    report = CycleReport()
    ctx = await gather.context(loop, trainingjob("max(val_loss)"), 1000.0, report)
    assert ctx is not None
    track = await fetch.custom_metric(loop, ctx, report)
    assert track is not None and track.current is None and track.reports == 0


async def test_a_forecast_after_a_restart_starts_again_rather_than_fit_a_curve_missing_its_start() -> None:
    """A workloadRef's query is folded here, and status keeps the forecast's fit but never its
    sketch: a restarted operator forecasts again from minEvaluations new values, as after a
    learning-rate drop, never from the few values it has seen since it started."""
    loop, _, _ = new_loop("confined")
    job, report = trainingjob("max(val_loss)"), CycleReport()
    ctx = await gather.context(loop, job, 1000.0, report)
    assert ctx is not None and ctx.rule is not None and ctx.rule.forecast is not None  # the preset's lookahead
    before = track(None, ctx.rule, [Evaluation(10 * i, 1.0 / i) for i in range(1, 31)])
    assert before.forecast_gain is not None and before.regime_evaluations == 30 and before.sketch
    job["status"] = api.TrainingJobStatus(metric=summary_from_track(before), evaluations=30).model_dump(
        by_alias=True, exclude_none=True, mode="json")
    restarted = await gather.context(loop, job, 1000.0, report)  # nothing of the job in memory
    assert restarted is not None
    got = assemble.custom_track(restarted, [Sample({}, 0.03, 310.0)], loop.tracks)
    assert got is not None and got.current is not None
    assert (got.current.evaluations, got.current.regime_evaluations, got.current.forecast_gain) == (31, 1, None)
    assert got.current.origin == 300.0 and got.current.best == 0.03  # the rest of the state goes on
    outcomes = decide(restarted.stop, Observation(metric=got.current)).outcomes
    converged = next(o for o in outcomes if o.reason == Reason.CONVERGED)
    assert converged.fired is None and "too few evaluations to forecast (1 of 12)" in converged.explain()


async def test_a_custom_querys_answer_beyond_one_series_worth_is_refused_before_it_is_decoded() -> None:
    """label_join can grow one series' label to any size: a custom query's answer is held to
    CUSTOM_ANSWER_BYTES, far below the batched answers' bound, and refused for that job alone."""
    from aiohttp import web

    from plateau.prometheus.client import PrometheusClient, PrometheusError
    from tests.support.prometheus import free_port

    huge = '{"status": "success", "data": {"resultType": "vector", "result": [{"metric": {"l": "%s"}, "value": [1, "0.5"]}]}}'

    async def answer(_: web.Request) -> web.Response:
        return web.Response(text=huge % ("x" * (2 * fetch.CUSTOM_ANSWER_BYTES)), content_type="application/json")

    app = web.Application()
    app.router.add_post("/api/v1/query", answer)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    client = PrometheusClient(f"http://127.0.0.1:{port}")
    try:
        loop = Loop(Settings(), Registry(), kube=RecordingKube(), prometheus=client)  # type: ignore[arg-type]
        report = CycleReport()
        ctx = await gather.context(loop, trainingjob("max(my_loss)"), 1000.0, report)
        assert ctx is not None
        with pytest.raises(PrometheusError) as refused:
            await fetch.custom_metric(loop, ctx, report)
        assert refused.value.reason == "AnswerTooLarge" and str(fetch.CUSTOM_ANSWER_BYTES) in str(refused.value)
        assert len(await client.query("up")) == 1  # the batched queries' bound is the client's own
    finally:
        await client.close()
        await runner.cleanup()
