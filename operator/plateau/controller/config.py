"""Operator settings: flags, each with an environment variable the Helm chart sets."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field
from typing import Optional, Sequence

from plateau.api.durations import parse_duration
from plateau.controller.children import SidecarSettings
from plateau.prometheus.promql import DcgmConfig


# How spec.metrics.queries run: confined to the TrainingJob's namespace (every selector gets
# the namespace matcher), refused (the spec is invalid), or as written, with the operator's access.
CUSTOM_QUERIES = ("confined", "disabled", "unconfined")
LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("text", "json")  # json: one object a line, with kopf's `object` reference where it logs one


@dataclass(frozen=True)
class Settings:
    prometheus_url: str = "http://prometheus-operated.monitoring.svc:9090"
    prometheus_timeout: float = 10.0  # seconds one PromQL query may take (reason Timeout after)
    interval: float = 15.0  # seconds between evaluation cycles
    status_interval: float = 30.0  # metric-only status writes, at most this often per job
    namespaces: tuple[str, ...] = ()  # empty: every namespace (cluster-wide RBAC)
    default_dry_run: bool = False
    metrics_port: int = 8080
    leader_election: bool = True
    lease_name: str = "plateau-operator"
    lease_namespace: str = "default"
    identity: str = ""
    concurrency: int = 32  # API calls in flight per cycle
    query_concurrency: int = 8  # PromQL queries in flight of those made per job or per GPU window
    api_timeout: float = 10.0  # seconds one Kubernetes API request may wait for its answer (then retried)
    api_connect_timeout: float = 5.0  # seconds to connect to the API server
    liveness_intervals: float = 10.0  # /healthz fails when no evaluation cycle ended for this many intervals
    shutdown_timeout: float = 25.0  # seconds from SIGTERM to exit, whatever hangs (below terminationGracePeriodSeconds)
    dcgm: DcgmConfig = field(default_factory=DcgmConfig)
    sidecar: SidecarSettings = field(default_factory=SidecarSettings)
    prometheus_namespace_label: str = "namespace"  # label Prometheus puts on sidecar series
    custom_queries: str = "confined"  # one of CUSTOM_QUERIES: spec.metrics.queries confined to the job's namespace
    log_level: str = "info"  # one of LOG_LEVELS
    log_format: str = "text"  # one of LOG_FORMATS


def _env(name: str, default: str) -> str:
    return os.environ.get(name, default)


def _seconds(text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _positive_seconds(text: str) -> float:
    """An interval or a timeout: at 0 the loop would never wait, /healthz fail at once, and the
    Kubernetes client refuse every request."""
    seconds = _seconds(text)
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: must be above zero")
    return seconds


def build_parser() -> argparse.ArgumentParser:
    d = Settings()
    g, s = DcgmConfig(), SidecarSettings()
    p = argparse.ArgumentParser(prog="plateau-operator", description="Plateau's Kopf operator.")
    add = p.add_argument
    add("--prometheus-url", default=_env("PLATEAU_PROMETHEUS_URL", d.prometheus_url))
    add("--prometheus-timeout", type=_positive_seconds, default=_env("PLATEAU_PROMETHEUS_TIMEOUT", "10s"),
        help="how long one PromQL query may take before MetricsAvailable=False, reason Timeout")
    add("--interval", type=_positive_seconds, default=_env("PLATEAU_INTERVAL", "15s"), help="evaluation interval, e.g. 15s")
    add("--status-interval", type=_seconds, default=_env("PLATEAU_STATUS_INTERVAL", "30s"),
        help="write metric-only status changes at most this often per job")
    add("--api-timeout", type=_positive_seconds, default=_env("PLATEAU_API_TIMEOUT", "10s"),
        help="how long one Kubernetes API request may wait for its answer before it is retried")
    add("--api-connect-timeout", type=_positive_seconds, default=_env("PLATEAU_API_CONNECT_TIMEOUT", "5s"),
        help="how long connecting to the Kubernetes API may take")
    add("--liveness-intervals", type=float, default=float(_env("PLATEAU_LIVENESS_INTERVALS", str(d.liveness_intervals))),
        help="/healthz answers 503 when no evaluation cycle ended for this many intervals")
    add("--shutdown-timeout", type=_seconds, default=_env("PLATEAU_SHUTDOWN_TIMEOUT", "25s"),
        help="exit at most this long after SIGTERM, even with API requests hanging")
    add("--namespaces", default=_env("PLATEAU_NAMESPACES", ""), help="comma-separated; empty watches all")
    add("--default-dry-run", action=argparse.BooleanOptionalAction,
        default=_env("PLATEAU_DEFAULT_DRY_RUN", "false").lower() == "true")
    add("--metrics-port", type=int, default=int(_env("PLATEAU_METRICS_PORT", str(d.metrics_port))))
    add("--leader-election", action=argparse.BooleanOptionalAction,
        default=_env("PLATEAU_LEADER_ELECTION", "true").lower() == "true")
    add("--lease-name", default=_env("PLATEAU_LEASE_NAME", d.lease_name))
    add("--lease-namespace", default=_env("PLATEAU_LEASE_NAMESPACE", _env("POD_NAMESPACE", d.lease_namespace)))
    add("--identity", default=_env("POD_NAME", ""), help="leader-election identity (default: hostname and pid)")
    add("--dcgm-profiling-metric", default=_env("PLATEAU_DCGM_PROFILING_METRIC", g.profiling_metric))
    add("--dcgm-device-metric", default=_env("PLATEAU_DCGM_DEVICE_METRIC", g.device_metric))
    add("--dcgm-pod-label", default=_env("PLATEAU_DCGM_POD_LABEL", g.pod_label))
    add("--dcgm-namespace-label", default=_env("PLATEAU_DCGM_NAMESPACE_LABEL", g.namespace_label))
    add("--custom-queries", choices=CUSTOM_QUERIES, default=_env("PLATEAU_CUSTOM_QUERIES", d.custom_queries),
        help="spec.metrics.queries: confined to the TrainingJob's namespace, disabled, or unconfined")
    add("--log-level", choices=LOG_LEVELS, default=_env("PLATEAU_LOG_LEVEL", d.log_level))
    add("--log-format", choices=LOG_FORMATS, default=_env("PLATEAU_LOG_FORMAT", d.log_format),
        help="text lines, or one JSON object a line")
    add("--sidecar-image", default=_env("PLATEAU_SIDECAR_IMAGE", s.image))
    add("--sidecar-cpu-request", default=_env("PLATEAU_SIDECAR_CPU_REQUEST", s.cpu_request))
    add("--sidecar-memory-request", default=_env("PLATEAU_SIDECAR_MEMORY_REQUEST", s.memory_request))
    add("--sidecar-cpu-limit", default=_env("PLATEAU_SIDECAR_CPU_LIMIT", s.cpu_limit))
    add("--sidecar-memory-limit", default=_env("PLATEAU_SIDECAR_MEMORY_LIMIT", s.memory_limit))
    return p


def parse_settings(argv: Optional[Sequence[str]] = None) -> Settings:
    a = build_parser().parse_args(argv)
    interval = a.interval if isinstance(a.interval, float) else _seconds(a.interval)
    prometheus_timeout = a.prometheus_timeout if isinstance(a.prometheus_timeout, float) else _seconds(a.prometheus_timeout)
    status_interval = a.status_interval if isinstance(a.status_interval, float) else _seconds(a.status_interval)
    api_timeout, api_connect_timeout, shutdown_timeout = (
        v if isinstance(v, float) else _seconds(v) for v in (a.api_timeout, a.api_connect_timeout, a.shutdown_timeout))
    return Settings(
        prometheus_url=a.prometheus_url,
        prometheus_timeout=prometheus_timeout,
        interval=interval,
        status_interval=status_interval,
        api_timeout=api_timeout,
        api_connect_timeout=api_connect_timeout,
        liveness_intervals=a.liveness_intervals,
        shutdown_timeout=shutdown_timeout,
        namespaces=tuple(n.strip() for n in a.namespaces.split(",") if n.strip()),
        default_dry_run=a.default_dry_run,
        metrics_port=a.metrics_port,
        leader_election=a.leader_election,
        lease_name=a.lease_name,
        lease_namespace=a.lease_namespace,
        identity=a.identity or f"{os.uname().nodename}-{os.getpid()}",
        custom_queries=a.custom_queries,
        log_level=a.log_level,
        log_format=a.log_format,
        dcgm=DcgmConfig(
            profiling_metric=a.dcgm_profiling_metric,
            device_metric=a.dcgm_device_metric,
            pod_label=a.dcgm_pod_label,
            namespace_label=a.dcgm_namespace_label,
        ),
        sidecar=SidecarSettings(
            image=a.sidecar_image,
            cpu_request=a.sidecar_cpu_request,
            memory_request=a.sidecar_memory_request,
            cpu_limit=a.sidecar_cpu_limit,
            memory_limit=a.sidecar_memory_limit,
        ),
    )
