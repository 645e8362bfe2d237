"""The contract between trainer, sidecar and operator: environment, paths and metric names.

The operator injects these variables into the trainer and sidecar containers; `plateau run`
sets the same ones for local processes. Nothing here does I/O.
"""

from __future__ import annotations

# --- environment, set by the operator / local runner -------------------------------------
ENV_TRAININGJOB = "PLATEAU_TRAININGJOB"  # TrainingJob name, exported as a label
ENV_NAMESPACE = "PLATEAU_NAMESPACE"
ENV_METRICS_FILE = "PLATEAU_METRICS_FILE"  # JSONL file the trainer appends to
ENV_PUSH_URL = "PLATEAU_PUSH_URL"  # trainer-side: where client.report() POSTs
ENV_PUSH_ADDR = "PLATEAU_PUSH_ADDR"  # sidecar-side: host:port the push endpoint binds
ENV_METRICS_ADDR = "PLATEAU_METRICS_ADDR"  # sidecar-side: host:port for /metrics
ENV_STDOUT_FILE = "PLATEAU_STDOUT_FILE"  # a log file the trainer's command already writes
ENV_STDOUT_PATTERN = "PLATEAU_STDOUT_PATTERN"  # regex with named groups: step and metrics
ENV_METRIC_NAMES = "PLATEAU_METRIC_NAMES"  # comma-separated allow-list; empty = all
ENV_STOP_FILE = "PLATEAU_STOP_FILE"  # downward-API file carrying the stop request

# --- defaults -------------------------------------------------------------------------------
DEFAULT_SHARED_DIR = "/plateau"
DEFAULT_METRICS_FILE = "/plateau/metrics.jsonl"
DEFAULT_STOP_DIR = "/etc/plateau"
DEFAULT_STOP_FILE = "/etc/plateau/stop"
DEFAULT_METRICS_PORT = 9464
DEFAULT_PUSH_PORT = 9465
DEFAULT_METRICS_ADDR = f"0.0.0.0:{DEFAULT_METRICS_PORT}"
DEFAULT_PUSH_ADDR = f"127.0.0.1:{DEFAULT_PUSH_PORT}"

# The pod annotation the operator sets to request a stop; a downward-API volume exposes it
# to the trainer as DEFAULT_STOP_FILE. Its value is the stop reason.
STOP_ANNOTATION = "plateau.dev/stop"

# --- exported series (Prometheus naming: base units, _total for counters) -------------------
LABEL_METRIC = "metric"
LABEL_TRAININGJOB = "trainingjob"  # never "job": Prometheus renames that to exported_job

SERIES_VALUE = "plateau_metric_value"  # last reported value
SERIES_STEP = "plateau_metric_step"  # step of the last report
SERIES_REPORTS = "plateau_metric_reports_total"  # count of reports (evaluations)
SERIES_NONFINITE = "plateau_metric_nonfinite_total"  # count of NaN/inf values
SERIES_MIN = "plateau_metric_min"  # running min of finite values
SERIES_MIN_STEP = "plateau_metric_min_step"
SERIES_MIN_REPORT = "plateau_metric_min_report"  # report number (1-based) of the running min
SERIES_MAX = "plateau_metric_max"
SERIES_MAX_STEP = "plateau_metric_max_step"
SERIES_MAX_REPORT = "plateau_metric_max_report"
SERIES_BAD_INPUT = "plateau_sidecar_bad_input_total"  # label: kind
