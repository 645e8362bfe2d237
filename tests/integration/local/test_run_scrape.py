"""`plateau run`'s metric reading against a real `plateau-sidecar` process over HTTP: the
scraper, and the folding of new evaluations into the engine's track."""

from __future__ import annotations

import json
import math
import os
import threading
import time
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from plateau.api import StopSpec
from plateau.engine.history import MetricHistory, metric_spec_for
from plateau.local.metrics import MetricReader
from plateau.local.plan import free_port
from plateau.local.processes import Sidecar
from plateau.local.scrape import SidecarScraper, SourceError
from plateau.cli.replay import Row, RunHistory, replay_run
from plateau.engine.rules import Observation, decide
from plateau_sidecar import protocol as p
from plateau_sidecar.protocol import METRICS_PATH

pytestmark = pytest.mark.integration
SPEC = StopSpec.model_validate({"metric": {"name": "val_loss", "patience": 2}})


class RunningSidecar:
    """A real `plateau-sidecar` process following a JSONL file, as `plateau run` starts it."""

    def __init__(self, directory: Path, trainingjob: str, stop: StopSpec = SPEC) -> None:
        self.metrics_file = directory / "metrics.jsonl"
        self.spec = metric_spec_for(stop)
        assert self.spec is not None
        (directory / "spec").write_text(self.spec.text)
        self.url = f"http://127.0.0.1:{free_port()}{METRICS_PATH}"
        env = {
            **os.environ,
            p.ENV_TRAININGJOB: trainingjob,
            p.ENV_METRICS_ADDR: self.url.removeprefix("http://").removesuffix(METRICS_PATH),
            p.ENV_PUSH_ADDR: "off",
            p.ENV_METRICS_FILE: str(self.metrics_file),
            p.ENV_SPEC_FILE: str(directory / "spec"),
        }
        self.process = Sidecar(env, self.url, directory / "sidecar.log", linger=0)
        self.process.wait_ready()
        self.reports = 0

    def report(self, *records: tuple[int, float]) -> None:
        """Append val_loss (and accuracy) reports, and wait until the sidecar has read them."""
        with self.metrics_file.open("a") as f:
            for step, value in records:
                f.write(json.dumps({"step": step, "val_loss": value, "accuracy": 1 - value}) + "\n")
        self.reports += len(records)
        deadline = time.monotonic() + 10
        while f"{p.SERIES_REPORTS}{{metric=\"val_loss\"" not in (text := _get(self.url)) or self._count(text) < self.reports:
            assert time.monotonic() < deadline, "the sidecar did not read the reports"
            time.sleep(0.05)

    @staticmethod
    def _count(text: str) -> int:
        line = next(line for line in text.splitlines() if line.startswith(f'{p.SERIES_REPORTS}{{metric="val_loss"'))
        return int(float(line.rsplit(" ", 1)[1]))


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.read().decode()


@pytest.fixture
def sidecar(tmp_path: Path) -> Iterator[RunningSidecar]:
    running = RunningSidecar(tmp_path, "my-job")
    yield running
    running.process.kill()


def test_scrape_reads_one_metric_of_one_job(sidecar: RunningSidecar) -> None:
    scraper = SidecarScraper(sidecar.url, "my-job")
    assert scraper.read("val_loss") is None  # no report yet: no series, not an error
    sidecar.report((10, 0.9), (20, 0.5), (30, math.nan), (40, 0.7))
    read = scraper.read("val_loss")
    sent = [(10, 0.9), (20, 0.5), (30, math.nan), (40, 0.7)]
    folded = MetricHistory.folded(StopSpec.model_validate_json(sidecar.spec.text), sent)  # type: ignore[union-attr]
    assert read is not None and read.reports == 4 and read.spec_key == sidecar.spec.key  # type: ignore[union-attr]
    assert repr(read.current) == repr(folded.track) and repr(read.stopped) == repr(folded.stopped)
    assert read.stopped is not None and read.stopped.last_step == 30  # NaN: the first report that said stop
    assert SidecarScraper(sidecar.url, "another-job").read("val_loss") is None


def test_a_failed_scrape_is_a_source_error() -> None:
    with pytest.raises(SourceError) as caught:
        SidecarScraper("http://127.0.0.1:9/metrics", "my-job").read("val_loss")
    assert caught.value.reason == "Unreachable"


class _CutShort(BaseHTTPRequestHandler):
    """Answers like a sidecar that exits while sending a scrape."""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "1000")
        self.end_headers()
        self.wfile.write(b"plateau_metric_value")
        self.close_connection = True

    def log_message(self, *args: object) -> None:
        pass


def test_a_scrape_cut_short_is_a_source_error() -> None:
    server = HTTPServer(("127.0.0.1", 0), _CutShort)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with pytest.raises(SourceError, match="IncompleteRead"):
            SidecarScraper(f"http://127.0.0.1:{server.server_port}/metrics", "my-job").read("val_loss")
    finally:
        server.shutdown()
        server.server_close()


def test_reader_takes_the_track_and_keeps_real_points(sidecar: RunningSidecar) -> None:
    reader = MetricReader(SPEC.metric, SidecarScraper(sidecar.url, "my-job"), sidecar.spec.key)  # type: ignore[arg-type, union-attr]
    reader.read()
    assert reader.availability[:2] == ("False", "NoSeries") and reader.track is None
    sidecar.report((1, 1.0))
    reader.read()
    sidecar.report((2, 0.5), (3, 0.8), (4, 0.9))  # a burst between two reads
    reader.read()
    assert reader.availability[0] == "True"
    assert reader.track is not None and reader.track.evaluations == 4 and reader.track.best == 0.5
    assert reader.track.since_improvement == 2 and reader.stopped is not None and reader.stopped.last_step == 4
    assert reader.points == [(1, 1.0), (4, 0.9)]  # only values that were reported


LOOKAHEAD = {"metric": {"name": "val_loss", "forecast": {"lookahead": 1.5, "unit": "evaluations"}}}


@pytest.mark.parametrize("spec", [{"preset": preset, "metric": {"name": "val_loss"}}
                                  for preset in ("balanced", "conservative", "aggressive")] + [LOOKAHEAD],
                         ids=["balanced", "conservative", "aggressive", "lookahead"])
def test_twenty_reports_per_read_stop_where_replay_stops(tmp_path: Path, spec: dict) -> None:
    """A noisy curve reported 20 times per read: the first read that stops names replay's
    stop step, reason and evidence."""
    stop = StopSpec.model_validate(spec)
    sent = [(step, 0.3 + 0.7 * math.exp(-step / 40) + 0.02 * math.sin(step * 1.7)) for step in range(1, 601)]
    expected = replay_run(RunHistory("r", None, [Row(s, {"val_loss": v}, None, None) for s, v in sent]), stop)
    assert expected.stopped and expected.stop_step is not None and expected.stop_step < 580
    running = RunningSidecar(tmp_path, "my-job", stop)
    try:
        reader = MetricReader(stop.metric, SidecarScraper(running.url, "my-job"), running.spec.key)  # type: ignore[arg-type, union-attr]
        for start in range(0, len(sent), 20):
            running.report(*sent[start:start + 20])
            reader.read()
            decision = decide(stop, Observation(metric=reader.decision_track))
            if decision.would_stop:
                break
        assert reader.decision_track is not None and decision.would_stop
        assert (reader.decision_track.last_step, decision.reason, decision.message) == \
            (expected.stop_step, expected.reason, expected.message)
        assert reader.track is not None and reader.track.last_step == start + 20 >= expected.stop_step
    finally:
        running.process.kill()
