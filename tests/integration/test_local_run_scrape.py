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

from plateau.api import MetricRule
from plateau.local.metrics import MetricReader
from plateau.local.plan import free_port
from plateau.local.processes import Sidecar
from plateau.local.scrape import SidecarScraper, SourceError
from plateau.summaries import SidecarSummary
from plateau_sidecar import protocol as p
from plateau_sidecar.server import METRICS_PATH

pytestmark = pytest.mark.integration


class RunningSidecar:
    """A real `plateau-sidecar` process following a JSONL file, as `plateau run` starts it."""

    def __init__(self, directory: Path, trainingjob: str) -> None:
        self.metrics_file = directory / "metrics.jsonl"
        self.url = f"http://127.0.0.1:{free_port()}{METRICS_PATH}"
        env = {
            **os.environ,
            p.ENV_TRAININGJOB: trainingjob,
            p.ENV_METRICS_ADDR: self.url.removeprefix("http://").removesuffix(METRICS_PATH),
            p.ENV_PUSH_ADDR: "off",
            p.ENV_METRICS_FILE: str(self.metrics_file),
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
    summary = scraper.read("val_loss")
    assert summary == SidecarSummary(
        reports=4, value=0.7, step=40, non_finite=1,
        min=0.5, min_step=20, min_report=2, max=0.9, max_step=10, max_report=1,
    )
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


def test_reader_folds_new_evaluations_and_keeps_real_points(sidecar: RunningSidecar) -> None:
    reader = MetricReader(MetricRule(name="val_loss", patience=2), SidecarScraper(sidecar.url, "my-job"))
    reader.read()
    assert reader.availability[:2] == ("False", "NoSeries") and reader.track is None
    sidecar.report((1, 1.0))
    reader.read()
    sidecar.report((2, 0.5), (3, 0.8), (4, 0.9))  # a burst between two reads
    reader.read()
    assert reader.availability[0] == "True"
    assert reader.track is not None and reader.track.evaluations == 4 and reader.track.best == 0.5
    assert reader.track.since_improvement == 2
    assert reader.points == [(1, 1.0), (4, 0.9)]  # only values known exactly
