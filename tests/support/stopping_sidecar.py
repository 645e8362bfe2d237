"""A real `plateau-sidecar` that a trainer pushes to, with the operator's part played beside it.

The sidecar folds the monitored metric under a metric stop spec, as in a pod. The operator's
part is one look at the sidecar's track, with the operator's own reader: once the track says
stop, the reason goes into the trainer's stop file, as the kubelet writes the `plateau.dev/stop`
annotation there. The look comes right after each report (`reporter()`, for a trainer in this
process: the stop then lands at an exact evaluation) or every 50 ms (`watching()`, for a
trainer process).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import SupportsFloat

import pytest
from prometheus_client.parser import text_string_to_metric_families

import plateau_client
from plateau.api import StopSpec
from plateau.history import MetricHistory, metric_spec_for
from plateau.local.scrape import SidecarScraper
from plateau_sidecar import protocol as p
from tests.support.prometheus import SidecarProcess

TRAININGJOB = "trainer"


def plateau_spec(metric: str) -> StopSpec:
    """No evaluation improves the metric by a million, so the plateau rule fires at the third
    evaluation whatever a tiny model learns: well before a test's planned epochs."""
    return StopSpec.model_validate({"metric": {"name": metric, "patience": 2, "minDelta": {"absolute": 1e6}}})


class StoppingSidecar:
    def __init__(self, directory: Path, metric: str) -> None:
        self.metric = metric
        self.spec = plateau_spec(metric)
        spec = metric_spec_for(self.spec)
        assert spec is not None
        (directory / "spec").write_text(spec.text)
        self.stop_file = directory / "stop"
        self.process = SidecarProcess(directory, TRAININGJOB, "--spec-file", str(directory / "spec"), push=True)
        self.process.wait_ready()
        self.scraper = SidecarScraper(self.process.metrics_url, TRAININGJOB)
        self.stopped_at: int | None = None  # the step of the report at which the track said stop

    @property
    def env(self) -> dict[str, str]:
        """What the operator sets in the trainer's container for `source: push`."""
        return {p.ENV_PUSH_URL: self.process.push_url, p.ENV_STOP_FILE: str(self.stop_file)}

    def look(self) -> None:
        """The operator's look: a stop the sidecar's track says is written once."""
        if self.stopped_at is not None:
            return
        read = self.scraper.read(self.metric)
        if read is not None and read.stopped is not None:
            self.stopped_at = read.stopped.last_step
            self.stop_file.write_text(f"plateau: {self.metric} has not improved (step {self.stopped_at})")

    def reporter(self) -> plateau_client.Reporter:
        """A push reporter after whose every report the operator looks once."""
        return _LookAfterEachReport(self)

    @contextmanager
    def watching(self) -> Iterator[None]:
        done = threading.Event()

        def watch() -> None:
            while not done.wait(0.05):
                self.look()

        thread = threading.Thread(target=watch, daemon=True)
        thread.start()
        try:
            yield
        finally:
            done.set()
            thread.join()

    def series(self) -> dict[str, tuple[int, float]]:
        """Every metric the sidecar holds: (reports, last value)."""
        reports: dict[str, int] = {}
        values: dict[str, float] = {}
        for family in text_string_to_metric_families(self.process.scrape()):
            for sample in family.samples:
                if sample.name == p.SERIES_REPORTS:
                    reports[sample.labels[p.LABEL_METRIC]] = int(sample.value)
                elif sample.name == p.SERIES_VALUE:
                    values[sample.labels[p.LABEL_METRIC]] = sample.value
        return {name: (count, values[name]) for name, count in reports.items()}

    def stop_step(self, reports: list[tuple[int, float]]) -> int | None:
        """Where the rules, folded here over the same reports, say stop: the sidecar must agree."""
        stopped = MetricHistory.folded(self.spec, reports).stopped
        return stopped.last_step if stopped is not None else None

    def close(self) -> None:
        assert self.process.stop() == 0, self.process.log()


@contextmanager
def stopping_sidecar(directory: Path, metric: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[StoppingSidecar]:
    """Started, with this process's environment set as the operator sets the trainer's, so the
    client's default reporter pushes to it and its stop file is the one read."""
    running = StoppingSidecar(directory, metric)
    for name, value in running.env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(plateau_client, "_reporter", None)
    try:
        yield running
    finally:
        running.close()


class _LookAfterEachReport(plateau_client.Reporter):
    def __init__(self, sidecar: StoppingSidecar) -> None:
        super().__init__(push_url=sidecar.process.push_url)
        self.sidecar = sidecar

    def report(self, step: int, **metrics: SupportsFloat) -> None:
        super().report(step, **metrics)
        self.sidecar.look()
