"""The HTTP endpoints, in process: /metrics (checked by promtool) and /push with its bounds."""

from __future__ import annotations

import json
import math
import socket
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from plateau_sidecar import protocol as p
from plateau_sidecar.collector import Exposition
from plateau_sidecar.config import load_config
from plateau_sidecar.main import Sidecar
from plateau_sidecar.server import SidecarServer
from plateau_sidecar.store import BadInput, MetricStore
from tests.support.prometheus import check_metrics


class Endpoints:
    def __init__(self, max_inflight: int = 4, max_body_bytes: int = 4096) -> None:
        self.store = MetricStore("my-job")
        local = ("127.0.0.1", 0)
        limits = {"max_inflight": max_inflight, "max_body_bytes": max_body_bytes}
        self.metrics = SidecarServer(local, self.store, exposition=Exposition(self.store), **limits)
        self.push = SidecarServer(local, self.store, push=True, **limits)
        for server in (self.metrics, self.push):
            server.start()

    def close(self) -> None:
        for server in (self.metrics, self.push):
            server.shutdown()
            server.server_close()

    def get(self, path: str) -> tuple[int, str]:
        return request("GET", self.metrics.url + path)

    def post(self, body: bytes | object, headers: dict[str, str] | None = None) -> tuple[int, dict[str, object]]:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        status, text = request("POST", self.push.url + "/push", data, headers)
        return status, json.loads(text)

    def bad(self, kind: BadInput) -> int:
        return self.store.snapshot().bad_input[kind]


def request(method: str, url: str, data: bytes | None = None, headers: dict[str, str] | None = None) -> tuple[int, str]:
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


@pytest.fixture
def ep() -> Iterator[Endpoints]:
    endpoints = Endpoints()
    yield endpoints
    endpoints.close()


def test_metrics_pass_promtool_and_use_the_protocol_names(ep: Endpoints) -> None:
    ep.post([{"step": 1, "val_loss": 0.5, "acc": math.nan}, {"step": 2, "val_loss": math.inf, "acc": 0.7}])
    ep.post(b"{oops")
    status, text = ep.get("/metrics")
    assert status == 200
    check_metrics(text)
    samples = {
        (s.name, s.labels.get(p.LABEL_METRIC) or s.labels.get("kind")): (s.labels, s.value)
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name.startswith("plateau_")
    }
    for name in (p.SERIES_VALUE, p.SERIES_STEP, p.SERIES_REPORTS, p.SERIES_NONFINITE, p.SERIES_MIN, p.SERIES_MAX):
        labels, _ = samples[(name, "val_loss")]
        assert labels == {p.LABEL_METRIC: "val_loss", p.LABEL_TRAININGJOB: "my-job"}
    assert samples[(p.SERIES_MIN_REPORT, "val_loss")][1] == 1
    assert samples[(p.SERIES_MAX_STEP, "acc")][1] == 2
    assert samples[(p.SERIES_NONFINITE, "acc")][1] == 1
    assert samples[(p.SERIES_BAD_INPUT, "malformed_json")][1] == 1
    assert samples[(p.SERIES_BAD_INPUT, "line_too_long")][1] == 0  # every kind, from the start
    assert "job=" not in text.replace("trainingjob=", "")


def test_health_and_unknown_paths(ep: Endpoints) -> None:
    assert ep.get("/healthz") == (200, "ok\n")
    assert ep.get("/nope")[0] == 404
    assert request("POST", ep.metrics.url + "/push", b"{}")[0] == 404  # /metrics' port takes no pushes
    assert request("GET", ep.push.url + "/metrics")[0] == 404


def test_push_accepts_a_record_or_a_list(ep: Endpoints) -> None:
    assert ep.post({"step": 1, "m": 1.0}) == (200, {"accepted": 1, "resent": 0})
    assert ep.post([{"step": 2, "m": 2.0}, {"step": 3, "m": 0.5}]) == (200, {"accepted": 2, "resent": 0})
    m = ep.store.snapshot().series["m"]
    assert (m.reports, m.min, m.min_report) == (3, 0.5, 3)


def test_a_push_resent_from_a_named_origin_is_taken_once(ep: Endpoints) -> None:
    origin = {p.PUSH_REPORTER_HEADER: "trainer-1", p.PUSH_SEQUENCE_HEADER: "0"}
    assert ep.post([{"step": 1, "m": 1.0}], origin) == (200, {"accepted": 1, "resent": 0})
    assert ep.post([{"step": 1, "m": 1.0}, {"step": 2, "m": 0.5}], origin) == (200, {"accepted": 1, "resent": 1})
    assert ep.store.snapshot().series["m"].reports == 2
    assert ep.post({"step": 3, "m": 1.0}, {p.PUSH_REPORTER_HEADER: "trainer-1"}) == (
        400, {"error": "Plateau-Sequence must be a decimal number of at most 18 digits, with Plateau-Reporter"})
    assert ep.store.snapshot().series["m"].reports == 2


@pytest.mark.parametrize(
    ("body", "kind", "message"),
    [
        (b"not json", "malformed_json", "invalid JSON"),
        (b"42", "not_an_object", "record 0: a record must be a JSON object"),
        (b'[{"step": 1, "m": 1}, {"m": 2}]', "bad_step", "record 1: 'step' must be an integer"),
    ],
)
def test_a_bad_payload_gets_400_with_a_message(ep: Endpoints, body: bytes, kind: str, message: str) -> None:
    status, answer = ep.post(body)
    assert status == 400 and answer["kind"] == kind and str(answer["error"]).startswith(message)
    assert ep.bad(BadInput(kind)) == 1 and not ep.store.snapshot().series


def test_a_body_over_the_bound_gets_413(ep: Endpoints) -> None:
    big = [{"step": i, "m": 1.0} for i in range(1000)]
    status, answer = ep.post(big)
    assert status == 413 and "exceeds" in str(answer["error"])
    assert ep.bad(BadInput.PUSH_TOO_LARGE) == 1 and not ep.store.snapshot().series


def test_a_push_without_content_length_gets_411(ep: Endpoints) -> None:
    with socket.create_connection(ep.push.server_address[:2], timeout=5) as s:
        s.sendall(b"POST /push HTTP/1.0\r\n\r\n")
        assert s.recv(100).startswith(b"HTTP/1.0 411")


def test_requests_beyond_the_bound_in_flight_get_429_and_are_counted() -> None:
    ep = Endpoints(max_inflight=2)
    stalled = [socket.create_connection(ep.push.server_address[:2]) for _ in range(2)]
    try:
        for s in stalled:  # two clients that never finish their body hold both slots
            s.sendall(b"POST /push HTTP/1.0\r\nContent-Length: 100\r\n\r\n{")
        for _ in range(50):  # their headers are in once the slots are taken
            if ep.push.slots._value == 0:  # type: ignore[attr-defined]
                break
            threading.Event().wait(0.05)
        status, answer = ep.post({"step": 1, "m": 1.0})
        assert status == 429 and "retry" in str(answer["error"])
        assert ep.bad(BadInput.TOO_MANY_REQUESTS) == 1
    finally:
        for s in stalled:
            s.close()
    # The slots come back once the stalled clients go away.
    for _ in range(50):
        if ep.post({"step": 2, "m": 1.0})[0] == 200:
            break
        threading.Event().wait(0.1)
    assert ep.store.snapshot().series["m"].reports == 1
    ep.close()


def test_a_flood_of_pushes_is_answered_and_accounted_for() -> None:
    ep = Endpoints(max_inflight=2)

    def push(i: int) -> int:
        try:
            return ep.post([{"step": i, "m": float(i)}] * 20)[0]
        except OSError:  # a rejected connection may be reset before the client reads the 429
            return 429

    with ThreadPoolExecutor(max_workers=16) as pool:
        statuses = list(pool.map(push, range(400)))
    accepted = statuses.count(200)
    assert accepted + statuses.count(429) == 400 and accepted > 0
    assert ep.store.snapshot().series["m"].reports == 20 * accepted
    assert ep.bad(BadInput.TOO_MANY_REQUESTS) == 400 - accepted
    assert ep.get("/healthz")[0] == 200
    ep.close()


HUGE = b"1" + b"0" * 400  # a valid JSON integer, beyond the largest float


def test_a_value_too_large_for_a_float_is_counted_and_the_push_answered(ep: Endpoints) -> None:
    assert ep.post(b'[{"step": 1, "m": 1.0}, {"step": 2, "m": %s, "n": 2.0}]' % HUGE) == (200, {"accepted": 2, "resent": 0})
    snap = ep.store.snapshot()
    assert (snap.series["m"].reports, snap.series["n"].reports) == (1, 1)
    assert snap.bad_input[BadInput.NON_NUMERIC] == 1


def test_a_step_out_of_range_rejects_the_whole_batch_and_scrapes_go_on(ep: Endpoints) -> None:
    status, answer = ep.post(b'[{"step": 1, "m": 1.0}, {"step": %s, "m": 2.0}]' % HUGE)
    assert status == 400 and answer["kind"] == "bad_step"
    assert str(answer["error"]).startswith("record 1: 'step' must be an integer in [0, 2**53)")
    assert not ep.store.snapshot().series  # the good record is not ingested: a resend duplicates nothing
    assert ep.get("/metrics")[0] == 200


@pytest.mark.parametrize(
    ("request_bytes", "answer"),
    [
        (b"POST /push HTTP/1.0\r\nContent-Length: -1\r\n\r\n{}", b"HTTP/1.0 411"),
        # Refused before it is parsed: more arrays than a push may hold records.
        (b"POST /push HTTP/1.0\r\nContent-Length: 100000\r\n\r\n" + b"[" * 100_000, b"HTTP/1.0 413"),
    ],
)
def test_pushes_that_once_got_no_answer_are_answered(ep: Endpoints, request_bytes: bytes, answer: bytes) -> None:
    ep.push.max_body_bytes = 200_000
    with socket.create_connection(ep.push.server_address[:2], timeout=5) as s:
        s.sendall(request_bytes)
        assert s.recv(100).startswith(answer)


def test_healthz_is_503_with_what_the_health_check_reports() -> None:
    store = MetricStore("tj")
    problems = [None, "reader thread died: /x"]
    server = SidecarServer(("127.0.0.1", 0), store, exposition=Exposition(store), health=lambda: problems[-1])
    server.start()
    try:
        assert request("GET", server.url + "/healthz") == (503, "unhealthy: reader thread died: /x\n")
        problems.pop()
        assert request("GET", server.url + "/healthz") == (200, "ok\n")
    finally:
        server.shutdown()
        server.server_close()


def test_healthz_fails_naming_the_file_when_a_reader_thread_of_the_sidecar_dies(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1, "m": 1}\n')
    flags = ["--metrics-addr", "127.0.0.1:0", "--push-addr", "off", "--metrics-file", str(path)]
    sidecar = Sidecar(load_config(flags, env={}))

    def dies(lines: list[bytes]) -> None:  # a death that threading does not even print
        raise SystemExit(3)

    sidecar.followers[0].sink = dies
    sidecar.start()
    try:
        url = sidecar.servers[0].url + "/healthz"
        assert unhealthy(url) == f"unhealthy: reader thread died: {path} (SystemExit(3))\n"
    finally:
        sidecar.stop()


def unhealthy(url: str) -> str:
    """/healthz's body once it answers 503 (polled for up to 5 s; fails if it stays healthy)."""
    for _ in range(100):
        status, body = request("GET", url)
        if status == 503:
            return body
        threading.Event().wait(0.05)
    raise AssertionError(f"{url} still answers {status}")


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")  # the death is the point
def test_healthz_fails_naming_the_spec_file_when_its_reader_dies(tmp_path: Path) -> None:
    spec = tmp_path / "spec"
    spec.write_text("")
    flags = ["--metrics-addr", "127.0.0.1:0", "--push-addr", "off", "--spec-file", str(spec)]
    sidecar = Sidecar(load_config(flags, env={}))
    sidecar.start()
    assert sidecar.spec is not None
    try:
        url = sidecar.servers[0].url + "/healthz"
        assert request("GET", url)[0] == 200

        def dies() -> None:
            raise SystemExit(3)

        sidecar.spec.poll = dies  # type: ignore[method-assign]  # the next poll ends its thread
        assert unhealthy(url) == f"unhealthy: reader thread died: {spec} (the metric stop spec)\n"
    finally:
        sidecar.stop()
