"""The contract between trainer, sidecar and operator: environment, paths and metric names.

The operator injects these variables into the trainer and sidecar containers; `plateau run`
sets the same ones for local processes. Nothing here does I/O. The trainer-side client
(client/plateau_client) keeps its own copy of what it reads, and a test pins the two equal.
"""

from __future__ import annotations

# --- environment, set by the operator / local runner -------------------------------------
ENV_TRAININGJOB = "PLATEAU_TRAININGJOB"  # TrainingJob name, exported as a label
ENV_NAMESPACE = "PLATEAU_NAMESPACE"
ENV_METRICS_FILE = "PLATEAU_METRICS_FILE"  # JSONL file the trainer appends to
ENV_PUSH_URL = "PLATEAU_PUSH_URL"  # trainer-side: where plateau_client.report() POSTs
ENV_PUSH_ADDR = "PLATEAU_PUSH_ADDR"  # sidecar-side: host:port the push endpoint binds
ENV_METRICS_ADDR = "PLATEAU_METRICS_ADDR"  # sidecar-side: host:port for /metrics
ENV_STDOUT_FILE = "PLATEAU_STDOUT_FILE"  # a log file the trainer's command already writes
ENV_STDOUT_PATTERN = "PLATEAU_STDOUT_PATTERN"  # regex with named groups: step and metrics
ENV_METRIC_NAMES = "PLATEAU_METRIC_NAMES"  # comma-separated allow-list; empty = all
ENV_STOP_FILE = "PLATEAU_STOP_FILE"  # downward-API file carrying the stop request
ENV_SPEC_FILE = "PLATEAU_SPEC_FILE"  # sidecar-side: downward-API file carrying the metric stop spec
ENV_PUSH_JOURNAL = "PLATEAU_PUSH_JOURNAL"  # sidecar-side: accepted pushes, taken in again after a restart

# --- defaults -------------------------------------------------------------------------------
DEFAULT_SHARED_DIR = "/plateau"
DEFAULT_METRICS_FILE = "/plateau/metrics.jsonl"
DEFAULT_STOP_DIR = "/etc/plateau"
DEFAULT_STOP_FILE = "/etc/plateau/stop"
DEFAULT_SPEC_FILE = "/etc/plateau/spec"
DEFAULT_PUSH_JOURNAL = "/plateau/push-journal.jsonl"  # on the pod's shared emptyDir
DEFAULT_METRICS_PORT = 9464
DEFAULT_PUSH_PORT = 9465
DEFAULT_METRICS_ADDR = f"0.0.0.0:{DEFAULT_METRICS_PORT}"
DEFAULT_PUSH_ADDR = f"127.0.0.1:{DEFAULT_PUSH_PORT}"

# --- HTTP paths the sidecar serves ------------------------------------------------------------
METRICS_PATH = "/metrics"
PUSH_PATH = "/push"  # where plateau_client.report() POSTs: PLATEAU_PUSH_URL ends with it
HEALTH_PATH = "/healthz"
# A push's origin, so that a resend is not taken twice (plateau_sidecar.ledger): the client's
# name, random per process, and the sequence number of the push's first record.
PUSH_REPORTER_HEADER = "Plateau-Reporter"
PUSH_SEQUENCE_HEADER = "Plateau-Sequence"

# The pod annotation the operator sets to request a stop; a downward-API volume exposes it
# to the trainer as DEFAULT_STOP_FILE. Its value is the stop reason.
STOP_ANNOTATION = "plateau.dev/stop"

# Steps are whole numbers in [0, MAX_STEP): every one of them is exact as the float that
# Prometheus stores, and the sidecar rejects others (bad_step) rather than export a wrong one.
MAX_STEP = 2**53
# The pod annotation holding the metric stop spec the sidecar folds the monitored metric under
# (canonical JSON of `plateau.engine.history.metric_stop_spec`); exposed as DEFAULT_SPEC_FILE.
SPEC_ANNOTATION = "plateau.dev/metric-spec"

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

# The monitored metric's track: the engine's state after every report, in order (see
# plateau.engine.history). The last value and step are SERIES_VALUE and SERIES_STEP.
SERIES_TRACK_SPEC = "plateau_track_spec"  # 48-bit key of the spec the track was folded under
SERIES_TRACK_RESUMES = "plateau_track_resumes_total"  # reports whose step went back
SERIES_TRACK_KEPT = "plateau_track_kept"  # 0 once too many evaluations to purge on a resume
TRACK_FIELDS = ("evaluations", "best", "best_step", "reference", "smoothed", "first", "since_improvement", "non_finite",
                # the forecast rule's fit (plateau.engine.forecast), absent without one; its sketch stays here
                "regime_evaluations", "forecast_level", "forecast_level_sd", "forecast_gain", "forecast_gain_sd",
                # learning-rate drops seen (schedule), so the operator holds patience as the fold did
                "drop_step", "drop_gap")
# The track at the first report at which the metric's rules said stop; absent until then.
STOPPED_FIELDS = ("last", "last_step", *TRACK_FIELDS)
TRACK_SERIES = {f"plateau_track_{f}": f for f in TRACK_FIELDS}
STOPPED_SERIES = {f"plateau_track_stopped_{f}": f for f in STOPPED_FIELDS}
