"""A push whose answer is lost is resent, and the sidecar takes each record exactly once."""

from __future__ import annotations

import io
import os
import signal
import urllib.error
import warnings
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import plateau_client as client
from plateau_sidecar import protocol as p
from plateau_sidecar.ledger import Origin
from plateau_sidecar.records import ingest_payload
from plateau_sidecar.server import SidecarServer
from plateau_sidecar.store import MetricStore


def steps(store: MetricStore, name: str) -> list[int]:
    return list(store.kept.reports[name].steps)


def test_a_push_the_sidecar_took_too_late_to_answer_is_not_taken_twice(
    push_server: tuple[SidecarServer, MetricStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    server, store = push_server
    monkeypatch.setattr(client, "PUSH_TIMEOUT_SECONDS", 0.3)
    reporter = client.Reporter(push_url=server.url + p.PUSH_PATH)
    reporter.report(1, loss=1.0)
    with store.lock, pytest.warns(RuntimeWarning, match="timed out"):  # a sidecar paused past the client's timeout
        reporter.report(2, loss=0.5)
    reporter.report(3, loss=0.25)  # resends step 2, which the sidecar took once its pause ended
    assert steps(store, "loss") == [1, 2, 3]
    assert store.snapshot().series["loss"].reports == 3


def test_a_forked_child_reports_under_a_name_of_its_own_even_if_forked_mid_push(
    push_server: tuple[SidecarServer, MetricStore],
) -> None:
    """A DataLoader worker forked from the trainer shares its reporter: neither may skip the
    other's records, and a push (or report) under way in another thread at the fork must not
    leave the child's locks held for ever."""
    server, store = push_server
    reporter = client.Reporter(push_url=server.url + p.PUSH_PATH)
    reporter.report(1, parent=1.0)
    with reporter._lock, reporter._push_lock:  # as another thread holds them, mid-push
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                signal.alarm(10)  # a child that hangs on a lock is killed, and the test fails
                reporter.report(1, child=1.0)
                code = 0 if not reporter._pending else 2
            finally:
                os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    reporter.report(2, parent=2.0)
    assert (steps(store, "parent"), steps(store, "child")) == ([1, 2], [1])


@dataclass
class Sidecar:
    """The transport, for the property below: each push reaches the real ingest, with the outcome drawn."""

    store: MetricStore
    outcomes: Iterator[str]

    def open(self, request: urllib.request.Request, timeout: float) -> io.BytesIO:
        outcome = next(self.outcomes, "answered")
        if outcome == "down":
            raise urllib.error.URLError("connection refused")
        if outcome == "busy":
            raise urllib.error.HTTPError(request.full_url, 429, "Too Many Requests", {}, None)  # type: ignore[arg-type]
        origin = Origin.from_headers(request.get_header(p.PUSH_REPORTER_HEADER.capitalize()),
                                     request.get_header(p.PUSH_SEQUENCE_HEADER.capitalize()))
        ingest_payload(self.store, request.data, origin=origin)  # type: ignore[arg-type]
        if outcome == "lost":  # taken, but the answer came too late
            raise TimeoutError("timed out")
        return io.BytesIO(b"{}")


@settings(max_examples=300, deadline=None)
@given(reports=st.integers(1, 40), outcomes=st.lists(st.sampled_from(["answered", "lost", "down", "busy"]), max_size=60))
def test_whatever_the_answers_the_sidecar_takes_exactly_the_trainers_sequence(reports: int, outcomes: list[str]) -> None:
    store = MetricStore("tj")
    transport = Sidecar(store, iter(outcomes))
    reporter = client.Reporter(push_url="http://sidecar/push")
    with warnings.catch_warnings(), pytest.MonkeyPatch.context() as patch:
        warnings.simplefilter("ignore")
        patch.setattr(client, "_OPENER", transport)
        for step in range(reports):
            reporter.report(step, m=float(step))
        while reporter._pending:  # the trainer goes on reporting until the sidecar has everything
            reporter.report(reports, flush=0.0)
    assert steps(store, "m") == list(range(reports))
    assert store.snapshot().series["m"].reports == reports
