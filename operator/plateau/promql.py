"""Batched PromQL for the evaluation loop. Pure: strings in, strings out.

Every query covers all running jobs at once (grouped by label), so a cycle costs a fixed
number of queries whatever the number of jobs. Label values are always escaped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable

from plateau_sidecar import protocol

# Every series the sidecar exports per metric, fetched in one query by name regex.
SIDECAR_SERIES = (
    protocol.SERIES_VALUE,
    protocol.SERIES_STEP,
    protocol.SERIES_REPORTS,
    protocol.SERIES_NONFINITE,
    protocol.SERIES_MIN,
    protocol.SERIES_MIN_STEP,
    protocol.SERIES_MIN_REPORT,
    protocol.SERIES_MAX,
    protocol.SERIES_MAX_STEP,
    protocol.SERIES_MAX_REPORT,
)


def escape_label_value(value: str) -> str:
    """A PromQL double-quoted string literal body: backslash, quote and newline escaped."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


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


def sidecar_query(namespaces: Iterable[str], metric_names: Iterable[str], namespace_label: str = "namespace") -> str:
    """Every sidecar series of the monitored metrics in the watched namespaces: one query."""
    names = "|".join(SIDECAR_SERIES)  # fixed metric names: nothing to quote
    return "{" + ", ".join(
        [
            f'__name__=~"{names}"',
            matcher(protocol.LABEL_METRIC, metric_names),
            matcher(namespace_label, namespaces),
        ]
    ) + "}"


def custom_query(template: str, namespace: str, name: str) -> str:
    """A user's PromQL template for workloadRef metrics, with $namespace and $name escaped."""
    return template.replace("$namespace", escape_label_value(namespace)).replace("$name", escape_label_value(name))


def _utilisation(dcgm: DcgmConfig, namespaces: Iterable[str]) -> str:
    ns = matcher(dcgm.namespace_label, namespaces)
    by = f"{dcgm.namespace_label}, {dcgm.pod_label}"
    profiling = f"max by ({by}) ({dcgm.profiling_metric}{{{ns}}})"
    # The device metric is a percentage, and reads 0 on MIG slices: exclude those.
    device = f'max by ({by}) ({dcgm.device_metric}{{{ns}, {dcgm.mig_label}=""}}) / 100'
    return f"({profiling} or {device})"


def gpu_max_query(dcgm: DcgmConfig, namespaces: Iterable[str], window: str) -> str:
    """Per pod, the highest GPU utilisation (0..1) over the window."""
    return f"max_over_time({_utilisation(dcgm, namespaces)}[{window}:{dcgm.resolution}])"


def gpu_since_query(dcgm: DcgmConfig, namespaces: Iterable[str], window: str) -> str:
    """Per pod, the timestamp of the oldest utilisation sample in the window (for coverage)."""
    return f"min_over_time(timestamp({_utilisation(dcgm, namespaces)})[{window}:{dcgm.resolution}])"
