"""Batched PromQL for the evaluation loop, and parsing Prometheus' answers. Pure, no I/O.

Every query covers all running jobs at once (grouped by label), so a cycle costs a fixed
number of queries whatever the number of jobs. Label values are always escaped.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Iterable, Optional

import msgspec

from plateau.api import confine
from plateau.api.confine import escape_label_value
from plateau.prometheus.summaries import TRACK_READ_SERIES
from plateau_sidecar import protocol

def regex_alternation(values: Iterable[str]) -> str:
    """An anchored RE2 alternation matching exactly these values (regex metacharacters quoted)."""
    parts = sorted({re.escape(v) for v in values})
    return "|".join(parts) if parts else "a^"  # "a^" matches nothing


def matcher(label: str, values: Iterable[str]) -> str:
    """label=~"v1|v2" with the values quoted for RE2 and escaped for the string literal."""
    return f'{label}=~"{escape_label_value(regex_alternation(values))}"'


@dataclass(frozen=True)
class DcgmConfig:
    """Where dcgm-exporter's GPU utilisation lives; the names are Helm values."""

    profiling_metric: str = "DCGM_FI_PROF_GR_ENGINE_ACTIVE"  # 0..1, works on MIG
    device_metric: str = "DCGM_FI_DEV_GPU_UTIL"  # 0..100, reads 0 on MIG: never used there
    pod_label: str = "pod"  # or exported_pod with the chart's ServiceMonitor honorLabels: false
    namespace_label: str = "namespace"  # or exported_namespace
    mig_label: str = "GPU_I_ID"  # set on MIG slices
    resolution: str = "30s"  # dcgm-exporter's collection interval, for the coverage subquery


def sidecar_query(namespaces: Iterable[str], metric_names: Iterable[str], namespace_label: str = "namespace",
                  series: Iterable[str] = TRACK_READ_SERIES, trainingjobs: Optional[Iterable[str]] = None,
                  part: Optional[str] = None) -> str:
    """Sidecar series of the monitored metrics in the watched namespaces (of these
    TrainingJobs only, if given; of the jobs whose name matches `part`, one of `name_parts`):
    one query."""
    names = "|".join(series)  # fixed metric names: nothing to quote
    matchers = [f'__name__=~"{names}"', matcher(protocol.LABEL_METRIC, metric_names), matcher(namespace_label, namespaces)]
    if trainingjobs is not None:
        matchers.append(matcher(protocol.LABEL_TRAININGJOB, trainingjobs))
    if part is not None:
        matchers.append(f'{protocol.LABEL_TRAININGJOB}=~"{escape_label_value(part)}"')
    return "{" + ", ".join(matchers) + "}"


# Kubernetes names end in [a-z0-9]. Spread digits and letters over the parts, so that names
# numbered in sequence, or ending in words, split evenly.
_NAME_ENDINGS = "0123456789abcdefghijklmnopqrstuvwxyz"


def name_parts(parts: int) -> list[str]:
    """RE2 patterns that split any set of names into `parts` disjoint parts by their last
    character, without listing the names: every non-empty name matches exactly one. (The
    last pattern takes every ending the others do not.) A job's series share its name, so
    each part holds whole jobs: one query's consistent snapshot of each."""
    if parts < 2:
        return ["(?s:.+)"]
    classes = [_NAME_ENDINGS[i::parts] for i in range(parts)]
    return [f"(?s:.*)[{c}]" for c in classes[:-1]] + [f"(?s:.*)[^{''.join(classes[:-1])}]"]


def custom_query(template: str, namespace: str, name: str, confine_label: Optional[str] = "namespace") -> str:
    """A user's PromQL template for workloadRef metrics, with $namespace and $name escaped,
    and `confine_label`="<namespace>" added to every selector (None: as written). ValueError
    if it cannot be confined (`api` rejects such templates first)."""
    query = confine.substitute(template, namespace, name)
    return query if confine_label is None else confine.confine(query, confine_label, namespace)


def _selectors(dcgm: DcgmConfig, namespaces: Iterable[str]) -> tuple[str, str]:
    ns = matcher(dcgm.namespace_label, namespaces)
    # The device metric reads 0 on MIG slices, which is not idleness: exclude those series.
    return f"{dcgm.profiling_metric}{{{ns}}}", f'{dcgm.device_metric}{{{ns}, {dcgm.mig_label}=""}}'


def gpu_max_query(dcgm: DcgmConfig, namespaces: Iterable[str], window: str) -> str:
    """Per pod, the highest GPU utilisation (0..1) over the window; the profiling metric wins."""
    profiling, device = _selectors(dcgm, namespaces)
    by = f"{dcgm.namespace_label}, {dcgm.pod_label}"
    return (f"max by ({by}) (max_over_time({profiling}[{window}]))"
            f" or max by ({by}) (max_over_time({device}[{window}])) / 100")


def gpu_since_query(dcgm: DcgmConfig, namespaces: Iterable[str], window: str) -> str:
    """Per pod, the time of the sample in force at the window's start, of the metric whose
    busiest sample gpu_max_query reads; absent if that metric's series began inside the
    window. (Coverage: now minus this is at least the window.) A pod whose profiling series
    began inside the window is not covered by its device series, which the busiest sample
    does not read."""
    profiling, device = _selectors(dcgm, namespaces)
    by = f"{dcgm.namespace_label}, {dcgm.pod_label}"
    return (f"min by ({by}) (timestamp({profiling} offset {window}))"
            f" or (min by ({by}) (timestamp({device} offset {window}))"
            f" unless on ({by}) max_over_time({profiling}[{window}]))")


# The label that tells a window query's two reads apart (a by-pod result has no other label).
GPU_READ_LABEL = "plateau_read"
GPU_READS = ("max", "since")


def gpu_window_query(dcgm: DcgmConfig, namespaces: Iterable[str], window: str) -> str:
    """gpu_max_query and gpu_since_query in one round trip: each answer's samples carry
    GPU_READ_LABEL, "max" or "since", so `or` keeps both (their label sets differ)."""
    namespaces = list(namespaces)
    reads = zip(GPU_READS, (gpu_max_query(dcgm, namespaces, window), gpu_since_query(dcgm, namespaces, window)))
    return " or ".join(f'label_replace({expr}, "{GPU_READ_LABEL}", "{read}", "", "")' for read, expr in reads)


# --- answers -------------------------------------------------------------------------------------


class PrometheusError(Exception):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason  # CamelCase, for conditions and the query-errors metric


@dataclass(frozen=True)
class Sample:
    labels: dict[str, str]
    value: float
    timestamp: float


def _parse_value(raw: Any) -> float:
    """Prometheus encodes sample values as strings: "1.5", "NaN", "+Inf", "-Inf"."""
    if not isinstance(raw, str):
        raise ValueError(f"sample value {raw!r} is not a string")
    value = float(raw)
    if math.isnan(value) and raw != "NaN":
        raise ValueError(f"sample value {raw!r}")
    return value


class _Series(msgspec.Struct):
    metric: dict[str, str]
    value: tuple[float, str]


class _Data(msgspec.Struct):
    resultType: str  # noqa: N815 (Prometheus' field name)
    result: msgspec.Raw  # its shape depends on resultType


class _Answer(msgspec.Struct):
    status: str = ""
    errorType: str = "error"  # noqa: N815
    error: str = "unknown error"
    data: Optional[_Data] = None


# Typed decoders: JSON parsing and shape checks in one C pass, with no intermediate dicts
# (an answer for 10,000 jobs holds 100,000 samples).
_ANSWER = msgspec.json.Decoder(_Answer)
_VECTOR = msgspec.json.Decoder(list[_Series])


# Characters kept of each of Prometheus' own words (errorType, error): they become every
# job's MetricsAvailable message, and whatever answers at the URL writes them.
ERROR_TEXT_LIMIT = 200


def _decode_vector(raw: bytes | str, decoder: msgspec.json.Decoder) -> list[Any]:
    """The series of an instant-query response body, or PrometheusError if it is malformed."""
    try:
        answer = _ANSWER.decode(raw)
        if answer.status != "success":
            raise PrometheusError("QueryFailed", f"{answer.errorType[:ERROR_TEXT_LIMIT]}: "
                                                 f"{answer.error[:ERROR_TEXT_LIMIT]}")
        if answer.data is None or answer.data.resultType != "vector":
            raise PrometheusError("MalformedResponse", "expected data.resultType vector with a result list")
        return decoder.decode(answer.data.result)
    except msgspec.ValidationError as exc:
        raise PrometheusError("MalformedResponse", f"unexpected response: {exc}") from None
    except (msgspec.DecodeError, UnicodeError):  # UnicodeError: a str body that cannot be UTF-8
        raise PrometheusError("MalformedResponse", "response is not JSON") from None
    except RecursionError:  # the decoder's depth limit: a few KB of brackets reach it
        raise PrometheusError("MalformedResponse", "response is nested too deep") from None


def parse_vector(raw: bytes | str) -> list[Sample]:
    """The samples of an instant-query response body, or PrometheusError if it is malformed."""
    series = _decode_vector(raw, _VECTOR)
    try:
        return [Sample(s.metric, _parse_value(s.value[1]), s.value[0]) for s in series]
    except ValueError as exc:
        raise PrometheusError("MalformedResponse", f"bad sample: {exc}") from None


class SidecarDecoder:
    """Decodes the answer to a `sidecar_query` into (labels, value) pairs, keeping only the
    labels the loop reads. At 10,000 jobs an answer holds 110,000 series: a struct of six
    strings per series, instead of a dict of every label and a Sample, halves the decoding
    time and the answer's transient memory."""

    def __init__(self, namespace_label: str = "namespace") -> None:
        fields = ("name", "namespace", "trainingjob", "metric", "pod", "instance")
        rename = {"name": "__name__", "namespace": namespace_label,
                  "trainingjob": protocol.LABEL_TRAININGJOB, "metric": protocol.LABEL_METRIC}
        if len(set(rename.values()) | {"pod", "instance"}) != len(fields):
            raise ValueError(f"the namespace label {namespace_label!r} is one of the sidecar's own labels")
        # gc=False: strings only, no cycles; 110,000 of them must not each cost the collector.
        self.labels_type = msgspec.defstruct("SidecarLabels", [(f, str, "") for f in fields], rename=rename,
                                             frozen=True, gc=False)
        series = msgspec.defstruct("SidecarSeries", [("metric", self.labels_type), ("value", tuple[float, str])],
                                   gc=False)
        self._decoder = msgspec.json.Decoder(list[series])  # type: ignore[valid-type]

    def __call__(self, raw: bytes | str) -> list[tuple[Any, float]]:
        series = _decode_vector(raw, self._decoder)
        try:
            return [(s.metric, _parse_value(s.value[1])) for s in series]
        except ValueError as exc:
            raise PrometheusError("MalformedResponse", f"bad sample: {exc}") from None
