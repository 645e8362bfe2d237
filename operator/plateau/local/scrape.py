"""Reading the sidecar's series for one metric: straight from its /metrics, or from Prometheus.

Both readers return the same `SidecarTrack` the operator reads: the engine's state as the
sidecar folded it, so a local run decides on exactly what a cluster run decides on. A failed read raises
`SourceError`; no series yet is None. Neither is ever a reason to stop.
"""

from __future__ import annotations

import http.client
import urllib.error
import urllib.request
from collections import defaultdict
from typing import Any, Optional, Protocol, Sequence

from prometheus_client.parser import text_string_to_metric_families

from plateau.prometheus.summaries import TRACK_READ_SERIES, SidecarTrack, track_from_series
from plateau_sidecar import protocol as p

READ_TIMEOUT_SECONDS = 2.0


class SourceError(Exception):
    """A read that failed; `reason` is CamelCase, for the MetricsAvailable condition."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class MetricSource(Protocol):
    def read(self, metric: str) -> Optional[SidecarTrack]: ...

    def close(self) -> None: ...


def _get(url: str) -> bytes:
    """The sidecar's /metrics from 127.0.0.1 (plateau run's own process)."""
    try:
        with urllib.request.urlopen(url, timeout=READ_TIMEOUT_SECONDS) as response:
            return bytes(response.read())
    except urllib.error.HTTPError as exc:
        raise SourceError("HttpError", f"HTTP {exc.code} from {url}") from None
    except (OSError, http.client.HTTPException) as exc:  # refused, reset, timed out, cut short
        raise SourceError("Unreachable", f"cannot reach {url}: {exc!r}") from None


class SidecarScraper:
    """GET the sidecar's /metrics and pick one TrainingJob's series of one metric."""

    def __init__(self, url: str, trainingjob: str) -> None:
        self.url = url
        self.trainingjob = trainingjob

    def read(self, metric: str) -> Optional[SidecarTrack]:
        text = _get(self.url).decode("utf-8", errors="replace")
        wanted = {p.LABEL_METRIC: metric, p.LABEL_TRAININGJOB: self.trainingjob}
        try:
            values = {
                sample.name: sample.value
                for family in text_string_to_metric_families(text)
                for sample in family.samples
                if sample.name in TRACK_READ_SERIES and all(sample.labels.get(k) == v for k, v in wanted.items())
            }
        except ValueError as exc:
            raise SourceError("MalformedResponse", f"{self.url}: not a Prometheus exposition: {exc}") from None
        return track_from_series(values, metric)

    def close(self) -> None:
        pass


# A local read of Prometheus answers at most this much: one job's series are a few kilobytes.
MAX_ANSWER_BYTES = 8 * 1024 * 1024


class PrometheusReader:
    """The same series through Prometheus, read with the operator's own client and query: one
    total deadline per read (connect and every byte), a size cap, and the series selected by
    the job's labels as the operator selects them (its namespace, its name, the metric). A
    series with no namespace label at all is taken too: `plateau run`'s own sidecar, scraped
    outside Kubernetes, has none. Another namespace's or another job's series never count."""

    def __init__(self, url: str, trainingjob: str, namespace: str = "default", namespace_label: str = "namespace") -> None:
        # Imported here: plateau.prometheus.client pulls in aiohttp (half a second), which only
        # --prometheus runs need.
        import asyncio

        from plateau.prometheus.client import PrometheusClient
        from plateau.prometheus.promql import SidecarDecoder

        self.url = url.rstrip("/")
        self.trainingjob = trainingjob
        self.namespaces = (namespace, "")
        self.namespace_label = namespace_label
        self._client = PrometheusClient(self.url, timeout=READ_TIMEOUT_SECONDS, max_bytes=MAX_ANSWER_BYTES)
        self._decode = SidecarDecoder(namespace_label)
        self._loop = asyncio.new_event_loop()

    def read(self, metric: str) -> Optional[SidecarTrack]:
        from plateau.prometheus.promql import PrometheusError, sidecar_query

        query = sidecar_query(self.namespaces, [metric], self.namespace_label, trainingjobs=[self.trainingjob])
        try:
            answer = self._loop.run_until_complete(self._client.query(query, decode=self._decode))
        except PrometheusError as exc:
            raise SourceError(exc.reason, f"{self.url}: {exc}") from None
        return pick_track(answer, self.namespaces, self.trainingjob, metric)

    def close(self) -> None:
        self._loop.run_until_complete(self._client.close())
        self._loop.close()


def pick_track(answer: list[tuple[Any, float]], namespaces: Sequence[str], trainingjob: str, metric: str
               ) -> Optional[SidecarTrack]:
    """The track of the reporting replica (most reports) among the series of exactly this job and
    metric, as the operator assembles it: each (pod, instance) apart, so two scrapes of one
    sidecar, or two replicas, are never mixed into one track."""
    series: dict[tuple[str, str, str], dict[str, float]] = defaultdict(dict)
    for labels, value in answer:
        if labels.namespace in namespaces and labels.trainingjob == trainingjob and labels.metric == metric:
            series[(labels.namespace, labels.pod, labels.instance)][labels.name] = value
    best: Optional[SidecarTrack] = None
    for values in series.values():
        track = track_from_series(values, metric)
        if track is not None and (best is None or track.reports > best.reports):
            best = track
    return best
