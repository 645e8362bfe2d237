"""The operator's own metrics (prometheus-client), served on --metrics-port at /metrics."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

JOBS = Gauge("plateau_operator_trainingjobs", "TrainingJobs by phase.", ["phase"])
STOPS = Counter("plateau_operator_stops_total", "Jobs stopped (or, in a dry run, that would have been) by reason.",
                ["reason", "dry_run"])
GPU_HOURS_USED = Counter("plateau_operator_gpu_hours_used_total", "GPU-hours used by running TrainingJobs.")
GPU_HOURS_SAVED = Counter("plateau_operator_gpu_hours_saved_total",
                          "GPU-hours saved by stops, against the job's budget or deadline.")
CYCLE_SECONDS = Histogram("plateau_operator_cycle_duration_seconds", "Duration of one evaluation cycle.",
                          buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30))
PROMETHEUS_ERRORS = Counter("plateau_operator_prometheus_errors_total", "Failed Prometheus queries.", ["reason"])
API_ERRORS = Counter("plateau_operator_api_errors_total", "Failed Kubernetes API calls.", ["verb", "code"])
LEADER = Gauge("plateau_operator_leader", "1 while this replica holds the leader lease.")
METRICS_MISSING = Gauge(
    "plateau_operator_trainingjob_metrics_missing",
    "1 per Running TrainingJob whose MetricsAvailable or GpuMetricsAvailable condition is False.",
    ["namespace", "trainingjob", "condition", "reason"],
)


def clear_job_gauges() -> None:
    """A replica that stops leading must not keep exporting stale per-job figures."""
    JOBS.clear()
    METRICS_MISSING.clear()


def count_api_error(verb: str, code: str) -> None:
    """Kube's and the elector's `on_error`: a failed API call attempt."""
    API_ERRORS.labels(verb=verb, code=code).inc()
