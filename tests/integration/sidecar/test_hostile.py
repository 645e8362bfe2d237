"""Hostile input against the real sidecar process (issue 15): every case gets a one-line error
and a non-zero exit, or is counted and ignored, never a traceback, a hang or unbounded memory.

Classes: (1) a stdout pattern with catastrophic backtracking, (2) slow clients, (3) push bodies
whose length lies, (4) bad flags and variables, (5) other unbounded reads from outside (FIFOs,
devices, names that cannot be encoded, deep nesting). Timed checks are deadlines, not speed.

The process runs as `python -m plateau_sidecar.main` with PYTHONPATH on this checkout, so the
code under test is this tree's, whatever package the virtual environment has installed.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from plateau_sidecar import protocol as p
from tests.support.prometheus import SidecarProcess, free_port

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(str(ROOT / d) for d in ("operator", "sidecar", "."))}
COMMAND = [sys.executable, "-m", "plateau_sidecar.main"]


class Sidecar(SidecarProcess):
    """SidecarProcess, started from this checkout's sources."""

    def __init__(self, workdir: Path, *flags: str, push: bool = False) -> None:  # noqa: D107
        self.trainingjob = "hostile"
        self.metrics_address = f"127.0.0.1:{free_port()}"
        self.push_address = f"127.0.0.1:{free_port()}" if push else None
        self.log_path = workdir / "sidecar.log"
        argv = [*COMMAND, "--trainingjob", self.trainingjob, "--metrics-addr", self.metrics_address]
        argv += ["--push-addr", self.push_address or "off", "--poll-interval", "0.05", "--linger", "0", *flags]
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=ENV)

    def samples(self) -> dict[tuple[str, str], float]:
        return {
            (s.name, s.labels.get(p.LABEL_METRIC) or s.labels.get("kind", "")): s.value
            for family in text_string_to_metric_families(self.scrape())
            for s in family.samples
        }

    def bad(self, kind: str) -> float:
        return self.samples()[(p.SERIES_BAD_INPUT, kind)]

    def stop_within(self, seconds: float) -> int:
        """SIGTERM; the exit status, which must come within `seconds`."""
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=seconds)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            pytest.fail(f"the sidecar ignored SIGTERM for {seconds} s:\n{self.log()[-2000:]}")


def wait_until(predicate: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def get(url: str, timeout: float = 5.0) -> int:
    """The status of a GET that must be answered within `timeout` seconds."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            response.read()
            return response.status
    except urllib.error.HTTPError as e:
        return e.code


def raw(address: str, request: bytes) -> bytes:
    """Send a whole request, then read the answer's first bytes."""
    host, port = address.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as s:
        try:
            s.sendall(request)
        except OSError:  # answered and closed before the whole (oversized) request was sent
            pass
        return s.recv(200)


def no_traceback(sidecar: Sidecar) -> None:
    assert "Traceback" not in sidecar.log(), sidecar.log()


# --- (1) the stdout pattern ---------------------------------------------------------------------

PATTERN = r"step=(?P<step>\d+) loss=(?P<loss>\S+) (a|aa)+$"  # (a|aa)+ backtracks exponentially
CRAFTED = b"step=9 loss=9 " + b"a" * 5000 + b"!\n"


def test_a_catastrophic_line_is_counted_and_skipped_and_later_lines_are_read(tmp_path: Path) -> None:
    log = tmp_path / "train.log"
    log.write_bytes(b"step=1 loss=0.5 aa\n" + CRAFTED * 3 + b"step=2 loss=0.25 aaa\n")
    sidecar = Sidecar(tmp_path, "--stdout-file", str(log), "--stdout-pattern", PATTERN).wait_ready()
    try:
        wait_until(lambda: sidecar.samples().get((p.SERIES_REPORTS, "loss")) == 2)
        got = sidecar.samples()
        assert got[(p.SERIES_STEP, "loss")] == 2 and got[(p.SERIES_BAD_INPUT, "pattern_timeout")] == 3
    finally:
        assert sidecar.stop_within(20) == 0
    no_traceback(sidecar)


def test_metrics_and_sigterm_keep_working_while_crafted_lines_are_matched(tmp_path: Path) -> None:
    log = tmp_path / "train.log"
    log.write_bytes(b"step=1 loss=0.5 aa\n")
    sidecar = Sidecar(tmp_path, "--stdout-file", str(log), "--stdout-pattern", PATTERN).wait_ready()
    wait_until(lambda: sidecar.samples().get((p.SERIES_REPORTS, "loss")) == 1)
    with log.open("ab") as f:
        f.write(CRAFTED * 200)  # a minute of matching at the time limit: longer than the drain
    wait_until(lambda: sidecar.bad("pattern_timeout") >= 1)
    for _ in range(3):
        assert get(sidecar.metrics_url, timeout=5) == 200  # while a crafted line is being matched
    assert sidecar.stop_within(20) == 0
    no_traceback(sidecar)


# --- (2) slow clients ---------------------------------------------------------------------------


def test_scrapes_get_through_while_twelve_slow_clients_drip_and_those_are_cut_off(tmp_path: Path) -> None:
    sidecar = Sidecar(tmp_path).wait_ready()  # --max-inflight 8
    host, port = sidecar.metrics_address.rsplit(":", 1)
    cut_off: list[float] = []
    started = time.monotonic()

    def drip() -> None:
        with socket.create_connection((host, int(port)), timeout=30) as s:
            try:
                s.sendall(b"GET /metrics HTTP/1.1\r\n")
                for _ in range(10):  # a byte every 3 s for 30 s, unless cut off first
                    time.sleep(3)
                    s.sendall(b"X")
                    if s.recv(1024, socket.MSG_DONTWAIT) == b"":
                        break
            except BlockingIOError:
                pass
            except OSError:
                pass
            cut_off.append(time.monotonic() - started)

    clients = [threading.Thread(target=drip) for _ in range(12)]
    for client in clients:
        client.start()
    try:
        time.sleep(1)  # every slow client is connected and has sent part of its request
        statuses = [get(sidecar.metrics_url, timeout=5) for _ in range(5)]
        assert statuses == [200] * 5, statuses
        for client in clients:
            client.join(timeout=40)
        assert len(cut_off) == 12 and max(cut_off) < 20, cut_off  # the 10 s request deadline, not 30 s
    finally:
        assert sidecar.stop_within(20) == 0
    no_traceback(sidecar)


def test_a_push_whose_body_drips_is_cut_off_and_ingests_nothing(tmp_path: Path) -> None:
    sidecar = Sidecar(tmp_path, push=True).wait_ready()
    host, port = sidecar.push_address.rsplit(":", 1)  # type: ignore[union-attr]
    body = b'{"step": 1, "loss": 0.5}'
    started = time.monotonic()
    with socket.create_connection((host, int(port)), timeout=30) as s:
        s.sendall(b"POST /push HTTP/1.0\r\nContent-Length: %d\r\n\r\n" % len(body))
        try:
            for byte in body[:20]:
                s.sendall(bytes([byte]))
                time.sleep(1)
        except OSError:
            pass
        answer = s.recv(200)
    elapsed = time.monotonic() - started
    assert elapsed < 20, elapsed
    assert answer == b"" or answer.startswith(b"HTTP/1.0 408"), answer
    assert (p.SERIES_REPORTS, "loss") not in sidecar.samples()
    assert sidecar.stop_within(20) == 0


def answer_then_close(s: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (the socket's timeout if never)."""
    answer = b""
    while chunk := s.recv(4096):
        answer += chunk
    return answer


def test_a_stalled_or_oversized_request_is_answered_before_the_close(tmp_path: Path) -> None:
    """A body that stalls halfway gets a 408 at the request deadline, a declared length past the
    bound a 413 though the body then stalls, and a head over 64 KiB a 431: each is answered, then
    closed, within the deadline and a moment."""
    sidecar = Sidecar(tmp_path, push=True).wait_ready()
    cases = [
        (sidecar.push_address, b'POST /push HTTP/1.0\r\nContent-Length: 100\r\n\r\n{"step": 1,', b"HTTP/1.0 408"),
        (sidecar.push_address, b"POST /push HTTP/1.0\r\nContent-Length: 999999999999999\r\n\r\n[{", b"HTTP/1.0 413"),
        (sidecar.metrics_address, b"GET /metrics HTTP/1.0\r\nX-Pad: " + b"x" * 70_000 + b"\r\n\r\n", b"HTTP/1.0 431"),
    ]
    started = time.monotonic()
    connections = []
    try:
        for address, request, _ in cases:  # all at once: their deadlines run together
            host, port = address.rsplit(":", 1)  # type: ignore[union-attr]
            connections.append(socket.create_connection((host, int(port)), timeout=20))
            connections[-1].sendall(request)
        answers = [answer_then_close(s) for s in connections]
        elapsed = time.monotonic() - started
        assert [a[:12] for a in answers] == [status for *_, status in cases], answers
        assert elapsed < 13, elapsed  # the 10 s deadline, then the answer
    finally:
        for s in connections:
            s.close()
        assert sidecar.stop_within(20) == 0
    no_traceback(sidecar)


# --- (3) push bodies whose length lies ----------------------------------------------------------

@pytest.fixture(scope="module")
def pusher(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sidecar]:
    sidecar = Sidecar(tmp_path_factory.mktemp("push"), push=True).wait_ready()
    yield sidecar
    assert sidecar.stop_within(20) == 0


BIG = json.dumps([{"step": i, "loss": 0.5, "pad": "x" * 50} for i in range(30_000)]).encode()  # 2.8 MB
SMALL = b'{"step": 1, "loss": 0.5}'


@pytest.mark.parametrize(
    ("head", "body", "answer"),
    [
        (b"Content-Length: -1", BIG, b"HTTP/1.0 411"),
        (b"Content-Length: +%d" % len(SMALL), SMALL, b"HTTP/1.0 411"),
        (b"Content-Length: 2_4", SMALL, b"HTTP/1.0 411"),
        (b"Content-Length: %d\r\nContent-Length: 3" % len(SMALL), SMALL, b"HTTP/1.0 411"),
        (b"Content-Length: %d\r\nTransfer-Encoding: chunked" % len(SMALL), SMALL, b"HTTP/1.0 411"),
        (b"Transfer-Encoding: chunked", b"%x\r\n%s\r\n0\r\n\r\n" % (len(BIG), BIG), b"HTTP/1.0 411"),
        (b"Content-Length: %d" % len(BIG), BIG, b"HTTP/1.0 413"),
        (b"Content-Length: 99999999999999999999", BIG, b"HTTP/1.0 411"),
    ],
    ids=["negative", "plus-sign", "underscore", "two-lengths", "length-and-chunked", "chunked-oversize",
         "oversize", "absurd"],
)
def test_a_push_whose_length_lies_is_refused_and_ingests_nothing(
    pusher: Sidecar, head: bytes, body: bytes, answer: bytes
) -> None:
    before = pusher.samples().get((p.SERIES_REPORTS, "loss"), 0)
    got = raw(pusher.push_address, b"POST /push HTTP/1.1\r\nHost: x\r\n" + head + b"\r\n\r\n" + body)  # type: ignore[arg-type]
    assert got.startswith(answer), got
    assert pusher.samples().get((p.SERIES_REPORTS, "loss"), 0) == before
    good = b"POST /push HTTP/1.0\r\nContent-Length: %d\r\n\r\n%s" % (len(SMALL), SMALL)
    assert raw(pusher.push_address, good).startswith(b"HTTP/1.0 200")  # type: ignore[arg-type]
    assert pusher.samples()[(p.SERIES_REPORTS, "loss")] == before + 1
    no_traceback(pusher)


def test_a_body_longer_than_its_length_is_read_only_to_its_length(pusher: Sidecar) -> None:
    before = pusher.samples().get((p.SERIES_REPORTS, "loss"), 0)
    request = b"POST /push HTTP/1.0\r\nContent-Length: %d\r\n\r\n%s" % (len(SMALL), SMALL + BIG)
    assert raw(pusher.push_address, request).startswith(b"HTTP/1.0 200")  # type: ignore[arg-type]
    assert pusher.samples()[(p.SERIES_REPORTS, "loss")] == before + 1


# --- (4) flags and variables --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flags", "env", "named"),
    [
        (["--poll-interval", "nan"], {}, "--poll-interval"),
        (["--poll-interval", "-1"], {}, "--poll-interval"),
        (["--poll-interval", "0"], {}, "--poll-interval"),
        (["--poll-interval", "inf"], {}, "--poll-interval"),
        (["--max-inflight", "0"], {}, "--max-inflight"),
        (["--max-inflight", "-3"], {}, "--max-inflight"),
        (["--max-line-bytes", "0"], {}, "--max-line-bytes"),
        (["--max-metrics", "0"], {}, "--max-metrics"),
        (["--max-push-bytes", "-1"], {}, "--max-push-bytes"),
        (["--max-journal-bytes", "-1"], {}, "--max-journal-bytes"),
        (["--linger", "nan"], {}, "--linger"),
        (["--metrics-addr", "127.0.0.1:70000"], {}, "--metrics-addr"),
        (["--metrics-port", "70000"], {}, "--metrics-port"),
        (["--push-addr", ":-1"], {}, "--push-addr"),
        ([], {p.ENV_METRICS_ADDR: ":70000"}, p.ENV_METRICS_ADDR),
        ([], {p.ENV_PUSH_ADDR: "127.0.0.1:99999"}, p.ENV_PUSH_ADDR),
        ([], {p.ENV_STDOUT_FILE: "x.log", p.ENV_STDOUT_PATTERN: "(?P<step>"}, p.ENV_STDOUT_PATTERN),
        (["--trainingjob", "a\nb"], {}, "--trainingjob"),
        (["--metric-names", "x" * 300], {}, "--metric-names"),
    ],
)
def test_a_bad_setting_exits_2_with_one_line_naming_it(flags: list[str], env: dict[str, str], named: str) -> None:
    base = [] if p.ENV_METRICS_ADDR in env else ["--metrics-addr", "127.0.0.1:0"]
    base += [] if p.ENV_PUSH_ADDR in env else ["--push-addr", "off"]
    result = subprocess.run(
        [*COMMAND, *base, *flags],
        env={**ENV, **env}, capture_output=True, text=True, timeout=30,
    )
    assert result.returncode == 2, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("plateau-sidecar: error:") and named in lines[0], result.stderr


# --- (5) other reads from outside ---------------------------------------------------------------


def test_a_fifo_or_a_device_is_never_read_and_sigterm_still_works(tmp_path: Path) -> None:
    fifo = tmp_path / "metrics.jsonl"
    os.mkfifo(fifo)
    spec_fifo = tmp_path / "spec"
    os.mkfifo(spec_fifo)
    sidecar = Sidecar(tmp_path, "--metrics-file", str(fifo), "--spec-file", str(spec_fifo),
                      "--stdout-file", "/dev/zero", "--stdout-pattern", PATTERN).wait_ready()
    try:
        wait_until(lambda: sidecar.bad("not_a_file") == 2)
        assert get(sidecar.metrics_url) == 200
    finally:
        assert sidecar.stop_within(20) == 0
    no_traceback(sidecar)


def test_a_push_journal_that_is_a_fifo_stops_the_start_with_one_line(tmp_path: Path) -> None:
    journal = tmp_path / "journal"
    os.mkfifo(journal)
    sidecar = Sidecar(tmp_path, "--push-journal", str(journal), push=True)
    try:
        assert sidecar.process.wait(timeout=20) == 1
    except subprocess.TimeoutExpired:
        sidecar.process.kill()
        pytest.fail("the sidecar hung on a FIFO push journal")
    assert "cannot start" in sidecar.log() and "not a regular file" in sidecar.log()
    no_traceback(sidecar)


@pytest.mark.parametrize(
    "body",
    [
        b'{"step": 1, "\\ud800": 1, "loss": 0.5}',  # a lone surrogate: no UTF-8 for the label
        b'{"step": 1, "loss": 0.5, "deep": ' + b"[" * 5_000 + b"]" * 5_000 + b"}",  # deeper than json recurses
    ],
    ids=["surrogate-name", "deep-nesting"],
)
def test_a_push_with_a_bad_name_or_nesting_is_contained_and_scrapes_go_on(tmp_path: Path, body: bytes) -> None:
    sidecar = Sidecar(tmp_path, "--max-push-bytes", str(2 * len(body)), push=True).wait_ready()
    try:
        raw(sidecar.push_address, b"POST /push HTTP/1.0\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))  # type: ignore[arg-type]
        for _ in range(2):
            assert get(sidecar.metrics_url) == 200
        got = sidecar.samples()
        assert got[(p.SERIES_BAD_INPUT, "bad_metric_name")] + got[(p.SERIES_BAD_INPUT, "malformed_json")] == 1
    finally:
        assert sidecar.stop_within(20) == 0
    no_traceback(sidecar)


def test_the_checkout_under_test_is_this_one() -> None:
    found = subprocess.run([sys.executable, "-c", "import plateau_sidecar; print(plateau_sidecar.__file__)"],
                           env=ENV, capture_output=True, text=True, timeout=30).stdout
    assert found.startswith(str(ROOT)), found


def test_a_push_of_a_million_tiny_objects_is_refused_before_it_is_parsed(tmp_path: Path) -> None:
    body = b"[" + b",".join([b"{}"] * 300_000) + b"]"  # under 1 MiB; 20 MB and more as dicts
    sidecar = Sidecar(tmp_path, push=True).wait_ready()
    try:
        _, peak_before = sidecar.rss_bytes()
        answers = [raw(sidecar.push_address, b"POST /push HTTP/1.0\r\nContent-Length: %d\r\n\r\n%s"  # type: ignore[arg-type]
                       % (len(body), body)) for _ in range(4)]
        assert all(a.startswith(b"HTTP/1.0 413") for a in answers), answers
        _, peak = sidecar.rss_bytes()
        assert peak - peak_before < 16 * 1024 * 1024, (peak_before, peak)
        assert sidecar.bad("push_too_large") == 4
    finally:
        assert sidecar.stop_within(20) == 0
    no_traceback(sidecar)
