"""plateau.controller.health: /healthz is 200 while the loop beats, 503 once the last beat is stale, and silent."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

from plateau.controller.health import Heartbeat, serve
from tests.support.prometheus import free_port


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def probe(port: int, path: str = "/healthz") -> tuple[int, dict[str, object]]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}") if exc.code == 503 else {}


def test_healthz_follows_the_last_beat_and_writes_no_access_log(capfd: pytest.CaptureFixture[str]) -> None:
    clock = Clock()
    heartbeat = Heartbeat(stale_after=30.0, clock=clock)
    port = free_port()
    server = serve(heartbeat, port, host="127.0.0.1")
    try:
        assert probe(port) == (200, {"lastCycleSecondsAgo": 0.0, "staleAfterSeconds": 30.0})  # start-up counts
        clock.now += 30.0
        assert probe(port)[0] == 200
        clock.now += 0.5  # no pass ended for longer than stale_after: the loop hangs
        assert probe(port) == (503, {"lastCycleSecondsAgo": 30.5, "staleAfterSeconds": 30.0})
        heartbeat.beat()  # the loop goes on
        assert probe(port)[0] == 200
        assert probe(port, "/metrics")[0] == 404
    finally:
        server.shutdown()
    assert capfd.readouterr().err == ""  # probes leave no access-log line
