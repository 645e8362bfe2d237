"""Hostile input to the sidecar's pure parts and its server in process (issue 15): a pattern
that backtracks, slow and lying HTTP clients, journals and followed paths that are not files."""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path

from plateau_sidecar.collector import Exposition
from plateau_sidecar.follow import FileFollower
from plateau_sidecar.journal import PushJournal
from plateau.api.stdout_pattern import compile_pattern
from plateau_sidecar.records import jsonl_sink, pattern_sink
from plateau_sidecar.server import SidecarServer
from plateau_sidecar.store import BadInput, MetricStore
from tests.support.prometheus import free_port

PATTERN = compile_pattern(r"step=(?P<step>\d+) loss=(?P<loss>\S+) (a|aa)+$")


def test_a_line_that_runs_out_of_time_is_counted_and_the_others_are_taken() -> None:
    store = MetricStore("tj")
    crafted = b"step=2 loss=9 " + b"a" * 5000 + b"!"
    started = time.monotonic()
    pattern_sink(store, PATTERN, timeout=0.1)([b"step=1 loss=0.5 aa", crafted, b"step=3 loss=0.25 a"])
    assert time.monotonic() - started < 5
    snap = store.snapshot()
    assert snap.series["loss"].reports == 2 and snap.series["loss"].step == 3
    assert snap.bad_input[BadInput.PATTERN_TIMEOUT] == 1


def test_the_pattern_is_matched_outside_the_stores_lock() -> None:
    store = MetricStore("tj")
    sink = pattern_sink(store, PATTERN, timeout=0.5)
    with store.lock:  # a scrape holding the lock does not wait for a match, nor a match for it
        worker = threading.Thread(target=sink, args=([b"step=2 loss=9 " + b"a" * 5000 + b"!"],))
        worker.start()
        time.sleep(1.5)  # the match ran out of time meanwhile; only counting it waits for the lock
    worker.join(timeout=5)
    assert not worker.is_alive() and store.snapshot().bad_input[BadInput.PATTERN_TIMEOUT] == 1


def test_an_abandoned_sink_drops_the_rest_of_its_lines() -> None:
    store, abandon = MetricStore("tj"), threading.Event()
    abandon.set()
    pattern_sink(store, PATTERN, abandon=abandon)([b"step=1 loss=0.5 aa"])
    assert not store.snapshot().series


def test_a_deeply_nested_line_is_malformed_and_the_next_is_taken() -> None:
    store = MetricStore("tj")
    jsonl_sink(store)([b"[" * 100_000, b'{"step": 1, "m": 1}'])
    snap = store.snapshot()
    assert snap.bad_input[BadInput.MALFORMED_JSON] == 1 and snap.series["m"].reports == 1


def test_a_metric_name_that_is_not_utf8_is_refused_and_scrapes_go_on() -> None:
    store = MetricStore("tj")
    jsonl_sink(store)([b'{"step": 1, "\\ud800": 1, "m": 2}'])
    assert store.snapshot().bad_input[BadInput.BAD_METRIC_NAME] == 1
    assert b'metric="m"' in Exposition(store).render()


def test_a_followed_fifo_is_never_opened_for_reading(tmp_path: Path) -> None:
    fifo = tmp_path / "metrics.jsonl"
    os.mkfifo(fifo)
    store = MetricStore("tj")
    follower = FileFollower(str(fifo), jsonl_sink(store), store)
    assert follower.poll() is False and follower.poll() is False  # no wait for a writer
    assert store.snapshot().bad_input[BadInput.NOT_A_FILE] == 1


def test_a_journal_line_that_is_no_record_is_counted_and_the_lines_after_it_are_taken(tmp_path: Path) -> None:
    path = tmp_path / "push.jsonl"
    path.write_bytes(b'{"step": 1, "m": 1}\n' + b"x" * 3_000_000 + b'\n{"step": 2, "m": 2}\n')  # longer than any push
    store, journal = MetricStore("tj"), PushJournal(str(path))
    assert journal.replay(jsonl_sink(store)) == 3 and not journal.full
    snap = store.snapshot()
    assert snap.series["m"].reports == 2 and snap.bad_input[BadInput.MALFORMED_JSON] == 1


def test_a_journal_larger_than_its_bound_is_read_only_to_the_bound(tmp_path: Path) -> None:
    path = tmp_path / "push.jsonl"
    path.write_bytes(b'{"step": 1, "m": 1}\n' * 100_000)
    store = MetricStore("tj")
    journal = PushJournal(str(path), max_bytes=20 * 1000)
    assert journal.replay(jsonl_sink(store)) == 1000 and journal.full  # the lines within the bound, no more


# --- the server, in process ---------------------------------------------------------------------


def _server(**limits: float) -> SidecarServer:
    store = MetricStore("tj")
    server = SidecarServer(("127.0.0.1", 0), store, exposition=Exposition(store), **limits)  # type: ignore[arg-type]
    server.start()
    return server


def _connect(server: SidecarServer) -> socket.socket:
    return socket.create_connection(server.server_address[:2], timeout=10)


def _closed_within(s: socket.socket, seconds: float, drip: bytes = b"X") -> bool:
    """Send a byte every 0.2 s; whether the server closed the connection within `seconds`."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            s.sendall(drip)
            s.settimeout(0.2)
            if s.recv(4096) == b"":
                return True
        except TimeoutError:
            continue
        except OSError:
            return True
    return False


def test_a_client_dripping_its_headers_is_cut_off_at_the_request_deadline() -> None:
    server = _server(request_seconds=1.0)
    try:
        with _connect(server) as s:
            s.sendall(b"GET /metrics HTTP/1.0\r\n")
            assert _closed_within(s, 5.0)
    finally:
        server.shutdown()
        server.server_close()


def test_closing_waits_for_a_connection_in_flight_only_within_its_grace() -> None:
    server = _server(request_seconds=30.0)
    with _connect(server) as s:
        s.sendall(b"GET /metrics HTTP/1.0\r\nX: ")  # accepted, and never done
        time.sleep(0.2)
        started = time.monotonic()
        server.close(grace=0.5)
        waited = time.monotonic() - started
    assert 0.4 < waited < 3.0  # it waited for the connection, not for its 30 s deadline


def test_clients_dripping_headers_take_no_slot_from_a_scrape() -> None:
    server = _server(max_inflight=2, request_seconds=30.0)
    slow = [_connect(server) for _ in range(4)]
    try:
        for s in slow:
            s.sendall(b"GET /metrics HTTP/1.0\r\nX: ")
        time.sleep(0.2)
        with _connect(server) as s:
            s.sendall(b"GET /metrics HTTP/1.0\r\n\r\n")
            assert s.recv(12) == b"HTTP/1.0 200"
    finally:
        for s in slow:
            s.close()
        server.shutdown()
        server.server_close()


def test_connections_past_the_bound_get_429_even_while_one_drips_into_the_reject() -> None:
    server = _server(max_connections=1, request_seconds=30.0)
    held = _connect(server)
    try:
        held.sendall(b"GET /metrics HTTP/1.0\r\n")
        time.sleep(0.2)
        with _connect(server) as dripping, _connect(server) as third:
            dripping.sendall(b"G")  # the accepting thread reads a rejected request only briefly
            third.sendall(b"GET /metrics HTTP/1.0\r\n\r\n")
            started = time.monotonic()
            assert third.recv(12) == b"HTTP/1.0 429" and time.monotonic() - started < 5
    finally:
        held.close()
        server.shutdown()
        server.server_close()


def test_headers_larger_than_the_bound_are_not_read_on() -> None:
    server = _server()
    try:
        with _connect(server) as s:
            s.sendall(b"GET /metrics HTTP/1.0\r\n")
            try:
                for _ in range(200):  # 100 headers of 60 KB each is what http.server alone allows
                    s.sendall(b"X-Pad: " + b"x" * 60_000 + b"\r\n")
            except OSError:
                pass  # closed by the server: the head bound was reached
            s.settimeout(5)
            try:
                answer = s.recv(12)
            except OSError:
                answer = b""
            assert not answer.startswith(b"HTTP/1.0 200")
    finally:
        server.shutdown()
        server.server_close()


# --- the trainer-side client ----------------------------------------------------------------------


def test_the_client_never_blocks_on_a_fifo_stop_file_or_metrics_file(tmp_path: Path) -> None:
    import warnings

    import plateau_client as client

    stop, metrics = tmp_path / "stop", tmp_path / "metrics.jsonl"
    os.mkfifo(stop)
    os.mkfifo(metrics)
    done = threading.Event()

    def train() -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            assert client.stop_reason(str(stop)) is None
            client.Reporter(metrics_file=str(metrics)).report(1, loss=0.5)
        done.set()

    threading.Thread(target=train, daemon=True).start()
    assert done.wait(5), "the training loop blocked on a FIFO"


def test_a_push_the_sidecar_finds_too_large_sheds_the_oldest_reports() -> None:
    import warnings

    import plateau_client as client

    store = MetricStore("tj")
    server = SidecarServer(("127.0.0.1", 0), store, push=True, max_body_bytes=2000)
    server.start()
    try:
        reporter = client.Reporter(push_url=f"http://127.0.0.1:{free_port()}/push")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for step in range(1000):  # kept while the sidecar was away
                reporter.report(step, loss=0.5)
            assert len(reporter._pending) == 1000
            reporter.push_url = server.url + "/push"
            for step in range(1000, 1010):
                reporter.report(step, loss=0.5)
        assert store.snapshot().series["loss"].step == 1009  # pushes go through again
        assert store.snapshot().series["loss"].reports < 1010  # the oldest were shed
    finally:
        server.shutdown()
        server.server_close()
