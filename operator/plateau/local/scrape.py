"""Reading the sidecar's series for one metric: straight from its /metrics, or from Prometheus.

Both readers return the same `SidecarTrack` the operator reads: the engine's state as the
sidecar folded it, so a local run decides on exactly what a cluster run decides on. A failed read raises
`SourceError`; no series yet is None. Neither is ever a reason to stop.
"""

from __future__ import annotations

import http.client
import urllib.error
import urllib.parse
import urllib.request
from typing import Optional, Protocol

from prometheus_client.parser import text_string_to_metric_families

from plateau.promql import escape_label_value
from plateau.summaries import TRACK_READ_SERIES, SidecarTrack, track_from_series
from plateau_sidecar import protocol as p

READ_TIMEOUT_SECONDS = 2.0


class SourceError(Exception):
    """A read that failed; `reason` is CamelCase, for the MetricsAvailable condition."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class MetricSource(Protocol):
    def read(self, metric: str) -> Optional[SidecarTrack]: ...


def _get(url: str, data: Optional[bytes] = None) -> bytes:
    try:
        with urllib.request.urlopen(url, data=data, timeout=READ_TIMEOUT_SECONDS) as response:
            return bytes(response.read())
    except urllib.error.HTTPError as exc:
        if data is not None and exc.code in (400, 422):  # Prometheus explains a bad query in the body
            return bytes(exc.read())
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


def prometheus_selector(trainingjob: str, metric: str) -> str:
    """Every sidecar series of one metric of one TrainingJob: one instant query."""
    return "{" + ", ".join(
        [
            f'__name__=~"{"|".join(TRACK_READ_SERIES)}"',
            f'{p.LABEL_METRIC}="{escape_label_value(metric)}"',
            f'{p.LABEL_TRAININGJOB}="{escape_label_value(trainingjob)}"',
        ]
    ) + "}"


class PrometheusReader:
    """The same series through Prometheus' HTTP API, as the operator reads them."""

    def __init__(self, url: str, trainingjob: str) -> None:
        self.url = url.rstrip("/") + "/api/v1/query"
        self.trainingjob = trainingjob

    def read(self, metric: str) -> Optional[SidecarTrack]:
        # Imported here: plateau.prometheus pulls in aiohttp (half a second), which only
        # --prometheus runs need.
        from plateau.promql import PrometheusError, parse_vector

        form = urllib.parse.urlencode({"query": prometheus_selector(self.trainingjob, metric)}).encode()
        try:
            samples = parse_vector(_get(self.url, data=form))
        except PrometheusError as exc:
            raise SourceError(exc.reason, f"{self.url}: {exc}") from None
        # Several series of one name (e.g. two scrape jobs) would be ambiguous: take the newest.
        newest = sorted(samples, key=lambda s: s.timestamp)
        return track_from_series({s.labels.get("__name__", ""): s.value for s in newest}, metric)
