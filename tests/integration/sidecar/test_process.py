"""The real `plateau-sidecar` process: memory, bad input, shutdown."""

from __future__ import annotations

import json
import math
import os
import re
import signal
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from plateau.api import StopSpec
from plateau.engine.history import metric_spec_for
from plateau_sidecar import protocol as p
from tests.support.prometheus import PrometheusServer, SidecarProcess, check_metrics, require_tool

pytestmark = pytest.mark.integration

MEMORY_BUDGET = 64 * 1024 * 1024  # the sidecar carries the stop-rule engine (and pydantic) to fold the track


def samples(sidecar: SidecarProcess) -> dict[tuple[str, str], float]:
    """{(series, metric or kind): value} from one scrape."""
    return {
        (s.name, s.labels.get(p.LABEL_METRIC) or s.labels.get("kind", "")): s.value
        for family in text_string_to_metric_families(sidecar.scrape())
        for s in family.samples
    }


def wait_until(predicate: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def push(url: str, body: bytes, headers: dict[str, str] | None = None) -> int:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=body, method="POST", headers=headers or {}),
                                    timeout=10) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:
        return 0


def test_resident_memory_stays_within_budget_with_100_metrics_and_a_push_flood(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    sidecar = SidecarProcess(tmp_path, "mem", "--metrics-file", str(path), push=True).wait_ready()
    try:
        with path.open("w") as f:
            for step in range(2000):
                f.write(json.dumps({"step": step, **{f"metric_{i}": math.sin(step + i) for i in range(100)}}) + "\n")
        wait_until(lambda: samples(sidecar).get((p.SERIES_REPORTS, "metric_99")) == 2000)
        body = json.dumps([{"step": i, "metric_0": 0.5} for i in range(500)]).encode()
        with ThreadPoolExecutor(max_workers=32) as pool:
            statuses = list(pool.map(lambda _: push(sidecar.push_url, body), range(400)))
        assert statuses.count(200) > 0
        after = samples(sidecar)
        assert after[(p.SERIES_REPORTS, "metric_0")] == 2000 + 500 * statuses.count(200)
        assert after[(p.SERIES_BAD_INPUT, "too_many_requests")] == statuses.count(429)
        rss, peak = sidecar.rss_bytes()
        assert rss < MEMORY_BUDGET and peak < MEMORY_BUDGET, (rss, peak)
        assert after[("process_resident_memory_bytes", "")] < MEMORY_BUDGET
    finally:
        assert sidecar.stop() == 0


def test_bad_input_is_counted_logged_once_per_kind_and_survived(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"  # missing at first
    sidecar = SidecarProcess(
        tmp_path, "bad", "--metrics-file", str(path), "--metric-names", "loss", "--max-line-bytes", "1000"
    ).wait_ready()
    try:
        wait_until(lambda: samples(sidecar).get((p.SERIES_BAD_INPUT, "missing_file")) == 1)
        bad = [
            b"{nope",
            b'{"step": 1, "loss": "high"}',
            b'{"step": 2, "loss": NaN}',
            b'{"step": 3, "lr": 1}',
            b'{"step": 4, "loss": 1, "pad": "' + b"x" * 2000 + b'"}',
        ]
        path.write_bytes(b"\n".join(bad * 3) + b"\n" + b'{"step": 5, "loss": 0.5}\n')
        wait_until(lambda: samples(sidecar).get((p.SERIES_REPORTS, "loss")) == 4)
        os.truncate(path, 0)
        wait_until(lambda: samples(sidecar).get((p.SERIES_BAD_INPUT, "truncated_file")) == 1)
        path.write_bytes(b'{"step": 6, "loss": 0.25}\n')
        wait_until(lambda: samples(sidecar).get((p.SERIES_REPORTS, "loss")) == 5)
        got = samples(sidecar)
        for kind, count in [("malformed_json", 3), ("non_numeric", 3), ("unknown_metric", 3), ("line_too_long", 3)]:
            assert got[(p.SERIES_BAD_INPUT, kind)] == count, kind
        assert got[(p.SERIES_NONFINITE, "loss")] == 3 and got[(p.SERIES_MIN, "loss")] == 0.25
        check_metrics(sidecar.scrape())
    finally:
        assert sidecar.stop() == 0
    log = sidecar.log()
    for kind in ("missing_file", "malformed_json", "non_numeric", "non_finite", "unknown_metric", "line_too_long"):
        assert log.count(f"{kind}:") == 1, (kind, log)


def test_numbers_out_of_range_are_counted_and_the_reader_goes_on(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    sidecar = SidecarProcess(tmp_path, "range", "--metrics-file", str(path)).wait_ready()
    try:
        huge = "1" + "0" * 400  # valid JSON integers, beyond the largest float
        lines = [f'{{"step": 1, "loss": {huge}}}', f'{{"step": {huge}, "loss": 1}}', '{"step": -1, "loss": 1}']
        path.write_text("\n".join([*lines, '{"step": 2, "loss": 0.5}']) + "\n")
        wait_until(lambda: samples(sidecar).get((p.SERIES_REPORTS, "loss")) == 1)
        got = samples(sidecar)
        assert got[(p.SERIES_STEP, "loss")] == 2
        assert got[(p.SERIES_BAD_INPUT, "non_numeric")] == 1 and got[(p.SERIES_BAD_INPUT, "bad_step")] == 2
        with urllib.request.urlopen(f"http://{sidecar.metrics_address}/healthz", timeout=10) as r:
            assert r.status == 200
    finally:
        assert sidecar.stop() == 0


def test_on_sigterm_the_last_reports_are_scraped_before_exit(tmp_path: Path, prometheus: PrometheusServer) -> None:
    path = tmp_path / "metrics.jsonl"
    sidecar = SidecarProcess(tmp_path, "linger", "--metrics-file", str(path), "--linger", "20").wait_ready()
    prometheus.add_target(sidecar.metrics_address)
    prometheus.start()
    prometheus.wait_for(f'up{{instance="{sidecar.metrics_address}"}}', lambda v: v == 1, timeout=30)
    # The trainer's last evaluations, then the pod is torn down at once.
    path.write_text("".join(json.dumps({"step": s, "loss": 1 / s}) + "\n" for s in range(1, 4)))
    sidecar.process.send_signal(signal.SIGTERM)
    started = time.monotonic()
    assert sidecar.process.wait(timeout=20) == 0
    assert time.monotonic() - started < 5  # it waited for one scrape, not for the whole linger
    selector = '{trainingjob="linger",metric="loss"}'
    assert prometheus.wait_for(p.SERIES_REPORTS + selector, lambda v: v == 3) == 3
    assert prometheus.query_value(p.SERIES_MIN_STEP + selector) == 3


def test_on_sigterm_the_scrape_the_linger_waited_for_is_answered_whole_before_exit(tmp_path: Path) -> None:
    """The linger ends once a scrape has collected every report; the process must not exit while
    that scrape's answer is still being written. A scraper that reads slowly (a small receive
    window, an answer of some 7 MB) holds the answer in the sidecar for over a second."""
    names = 12_000
    sidecar = SidecarProcess(tmp_path, "slow", "--max-metrics", str(names), "--max-push-bytes", str(4 << 20),
                             "--linger", "20", push=True).wait_ready()
    try:
        assert push(sidecar.push_url, json.dumps({"step": 1, **{f"m{i}": 1.0 for i in range(names)}}).encode()) == 200
        host, port = sidecar.metrics_address.rsplit(":", 1)
        with socket.socket() as scraper:
            scraper.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            scraper.connect((host, int(port)))
            scraper.sendall(b"GET /metrics HTTP/1.0\r\n\r\n")
            scraper.settimeout(30)
            assert scraper.recv(1, socket.MSG_PEEK)  # collected: the answer is being written
            sidecar.process.send_signal(signal.SIGTERM)
            time.sleep(0.3)  # the linger has nothing left to wait for; the answer is not out yet
            answer = bytearray()
            while chunk := scraper.recv(1 << 20):
                answer += chunk
        head, _, body = bytes(answer).partition(b"\r\n\r\n")
        declared = re.search(rb"(?im)^content-length:\s*(\d+)", head)
        assert declared and len(body) == int(declared.group(1)) > 4 << 20
        reports = {s.labels[p.LABEL_METRIC]: s.value for family in text_string_to_metric_families(body.decode())
                   for s in family.samples if s.name == p.SERIES_REPORTS}
        assert len(reports) == names and set(reports.values()) == {1.0}
        assert sidecar.process.wait(timeout=20) == 0
    finally:
        sidecar.stop()


def test_after_sigterm_a_push_is_refused_at_once_while_the_last_reports_wait_for_their_scrape(tmp_path: Path) -> None:
    """The trainer may still report while its pod ends: a push the sidecar will not take must
    fail at once (the client keeps it), not hang until the client's timeout each time."""
    sidecar = SidecarProcess(tmp_path, "closing", "--linger", "20", push=True).wait_ready()
    try:
        assert push(sidecar.push_url, b'{"step": 1, "loss": 1.0}') == 200
        sidecar.scrape()  # a scraper is known: the sidecar lingers for its next scrape
        assert push(sidecar.push_url, b'{"step": 2, "loss": 0.5}') == 200
        sidecar.process.send_signal(signal.SIGTERM)
        wait_until(lambda: push(sidecar.push_url, b'{"step": 3, "loss": 0.4}') == 0)
        started = time.monotonic()
        assert push(sidecar.push_url, b'{"step": 4, "loss": 0.3}') == 0
        assert time.monotonic() - started < 0.5
        time.sleep(1.0)
        assert sidecar.process.poll() is None  # refused, while it still waits for the scrape
    finally:
        sidecar.stop()  # a second SIGTERM: it leaves at once


def test_on_sigterm_with_no_scraper_it_exits_at_once(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1, "loss": 1}\n')
    sidecar = SidecarProcess(tmp_path, "alone", "--metrics-file", str(path), "--linger", "60").wait_ready()
    started = time.monotonic()
    assert sidecar.stop() == 0
    assert time.monotonic() - started < 5


def test_an_address_in_use_exits_1_with_a_message(tmp_path: Path) -> None:
    first = SidecarProcess(tmp_path, "first").wait_ready()
    try:
        second = SidecarProcess(tmp_path, "second", "--metrics-addr", first.metrics_address)
        assert second.process.wait(timeout=30) == 1
        assert "cannot start" in second.log() and "in use" in second.log()
    finally:
        first.stop()


def test_the_prometheus_fixture_fails_rather_than_skips_without_the_binary(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(pytest.fail.Exception, match="run scripts/bootstrap"):
        require_tool("prometheus")


def test_a_push_sidecar_killed_and_restarted_exports_the_same_track(tmp_path: Path) -> None:
    """A sidecar container restart (SIGKILL, same pod volume): the push journal brings back
    every answered push, so the series and the folded track are what they were, and what it
    remembers of the pushes' origins, so a resend of the last push is not taken again."""
    spec = tmp_path / "spec"
    spec.write_text(metric_spec_for(StopSpec.model_validate({"preset": "balanced", "metric": {"name": "loss"}})).text)  # type: ignore[union-attr]
    flags = ("--spec-file", str(spec), "--push-journal", str(tmp_path / "push.jsonl"))
    sent = [{"step": s, "loss": 1.0 / s + 0.01 * math.sin(s)} for s in range(1, 301)] + \
        [{"step": s, "loss": 0.5 / s} for s in range(150, 201)]  # and a resume
    first = SidecarProcess(tmp_path, "tj", *flags, push=True).wait_ready()
    try:
        for start in range(0, len(sent), 50):  # the client's pushes name their origin; half of them here
            origin = {p.PUSH_REPORTER_HEADER: "trainer", p.PUSH_SEQUENCE_HEADER: str(start)} if start % 100 else {}
            assert push(first.push_url, json.dumps(sent[start:start + 50]).encode(), origin) == 200
        before = samples(first)
    finally:
        first.process.send_signal(signal.SIGKILL)
        first.process.wait()
    assert before[(p.SERIES_TRACK_RESUMES, "loss")] == 1 and before[(p.SERIES_REPORTS, "loss")] == len(sent)
    second = SidecarProcess(tmp_path, "tj2", *flags, push=True).wait_ready()
    try:
        assert push(second.push_url, json.dumps(sent[start:]).encode(), origin) == 200  # its answer was lost
        after = samples(second)
        track = {k: v for k, v in after.items() if k[0].startswith(("plateau_metric_", "plateau_track_"))}
        assert track == {k: v for k, v in before.items() if k[0].startswith(("plateau_metric_", "plateau_track_"))}
    finally:
        assert second.stop() == 0


def test_a_restarted_push_sidecar_takes_in_every_push_it_accepted_even_ones_that_grow_when_written(
    tmp_path: Path,
) -> None:
    """A sidecar killed and restarted takes in again every push it accepted: non-ASCII text, a
    name with no UTF-8, and records the journal writes longer than the push bound (1e15 is written
    1000000000000000.0). The pushes after the restart are journaled too."""
    flags = ("--push-journal", str(tmp_path / "push.jsonl"))
    bodies = [
        b'{"step": 1, "loss": 1.0}',
        json.dumps({"step": 2, "loss": 0.9, "note": "\u00e9" * 400_000}, ensure_ascii=False).encode(),
        b'{"step": 3, "loss": 0.8, "pad": [' + b",".join([b"1e15"] * 200_000) + b"]}",
        b'{"step": 4, "loss": 0.7, "\\ud800": 1}',  # counted as bad_metric_name, again on replay
    ]
    assert max(map(len, bodies)) <= 1024 * 1024  # the default --max-push-bytes

    def exported(sidecar: SidecarProcess) -> dict[tuple[str, str], float]:
        return {k: v for k, v in samples(sidecar).items() if k[0].startswith("plateau_")}

    def restarted(sidecar: SidecarProcess, name: str) -> SidecarProcess:
        sidecar.process.send_signal(signal.SIGKILL)
        sidecar.process.wait()
        return SidecarProcess(tmp_path, name, *flags, push=True).wait_ready()

    sidecar = SidecarProcess(tmp_path, "tj", *flags, push=True).wait_ready()
    try:
        assert [push(sidecar.push_url, body) for body in bodies] == [200] * len(bodies)
        before = exported(sidecar)
        assert before[(p.SERIES_REPORTS, "loss")] == 4 and before[(p.SERIES_BAD_INPUT, "bad_metric_name")] == 1
        sidecar = restarted(sidecar, "tj2")
        assert exported(sidecar) == before
        assert push(sidecar.push_url, b'{"step": 5, "loss": 0.6}') == 200
        before = exported(sidecar)
        sidecar = restarted(sidecar, "tj3")
        assert exported(sidecar) == before and before[(p.SERIES_REPORTS, "loss")] == 5
    finally:
        assert sidecar.stop() == 0
