"""The TrainingJob API (plateau.dev/v1alpha1): the single source of truth.

These pydantic models validate manifests for the local runner and `plateau replay`, and
generate the CRD (`plateau crd`), so field descriptions here become `kubectl explain` text.
Rules a structural schema cannot express are CEL rules (`x-kubernetes-validations`) attached
to the models, mirrored by pydantic validators so both paths reject the same specs.
"""

from __future__ import annotations

from enum import Enum
from typing import TYPE_CHECKING, Annotated, Any, Literal, Optional

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

from plateau.api import fieldsets, kubenames, podschema
from plateau.api.durations import DURATION_PATTERN, ParsedDuration, parse_duration
from plateau.api.stdout_pattern import STEP_GROUP, compile_pattern

GROUP = "plateau.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "TrainingJob"
PLURAL = "trainingjobs"
SINGULAR = "trainingjob"
SHORT_NAMES = ["tj"]
CATEGORIES = ["plateau"]

CEL = "x-kubernetes-validations"
_object_setattr = object.__setattr__


def cel_string(text: str) -> str:
    """A CEL string literal."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def cel(rule: str, message: str, field_path: str | None = None) -> dict[str, str]:
    entry = {"rule": rule, "message": message}
    if field_path:
        entry["fieldPath"] = field_path
    return entry


class Model(BaseModel):
    """Base: camelCase on the wire, unknown fields rejected (the CRD prunes them instead).
    Instances with the same fields set share one set of their names (plateau.api.fieldsets)."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        use_enum_values=True,
    )

    if not TYPE_CHECKING:  # pydantic's own signatures for the type checker

        def model_post_init(self, context: Any, /) -> None:
            _object_setattr(self, "__pydantic_fields_set__", fieldsets.shared(self.__pydantic_fields_set__))

        def model_copy(self, *, update: Any = None, deep: bool = False) -> Any:
            fields = self.__pydantic_fields_set__
            copied = super().model_copy(update=update, deep=deep)
            _object_setattr(copied, "__pydantic_fields_set__", fields if not update or fields.issuperset(update)
                            else fieldsets.shared(copied.__pydantic_fields_set__))
            return copied

        def __setattr__(self, name: str, value: Any) -> None:
            _object_setattr(self, "__pydantic_fields_set__", set(self.__pydantic_fields_set__))  # its own, to change
            super().__setattr__(name, value)


class Spec(Model):
    """Base of what users write: JSON types as strict as the CRD's (the API server rejects "5"
    for an integer and "false" for a boolean; an integer is a fine number), and no inf or NaN,
    which JSON cannot carry (kubectl fails on YAML's .inf). Enum fields take their string values."""

    model_config = ConfigDict(strict=True, allow_inf_nan=False)


INT64 = (-(2**63), 2**63 - 1)


def _integral(value: Any) -> Any:
    """An integral float (5.0) is an integer, as the API server reads JSON; beyond int64 an
    integer is not (the server reads it as a float, and its integer check refuses that)."""
    if isinstance(value, float) and value.is_integer() and INT64[0] <= value <= INT64[1]:
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool) and not INT64[0] <= value <= INT64[1]:
        return float(value)
    return value


# An integer as the CRD's `type: integer` takes it.
Integer = Annotated[int, BeforeValidator(_integral)]
OptionalInteger = Annotated[Optional[int], BeforeValidator(_integral)]  # bounds then reach the CRD


def lax(**kwargs: Any) -> Any:
    """A Field whose enum takes its string value in a Spec's strict mode."""
    return Field(strict=False, **kwargs)


def _check_duration(value: Any) -> Any:
    if isinstance(value, str):  # anything else is a type error, reported by the strict check
        parse_duration(value)
    return value


# A Go-style duration; the pattern goes into the CRD, the validator names negative values,
# and the value is a ParsedDuration: the text on the wire, its seconds for the engine.
if TYPE_CHECKING:
    Duration = ParsedDuration
else:
    Duration = Annotated[
        str,
        Field(pattern=DURATION_PATTERN, max_length=64),
        BeforeValidator(_check_duration),
        AfterValidator(ParsedDuration),
    ]


def at_least(minimum: str, reason: str = "") -> list[Any]:
    """Metadata for a Duration of at least `minimum`: a CEL rule, so that `kubectl apply`
    rejects a shorter one, and the same check for the models."""
    message = f"must be at least {minimum}"

    def check(value: ParsedDuration) -> ParsedDuration:
        if value.seconds < parse_duration(minimum):
            raise ValueError(f"{message}: {reason}" if reason else message)
        return value

    return [Field(json_schema_extra={CEL: [cel(f"duration(self) >= duration('{minimum}')", message)]}),
            AfterValidator(check)]


MAX_PATTERN = 1024


def _check_pattern(pattern: str) -> str:
    """What the sidecar requires of the pattern (its own compile_pattern, with its regex
    engine), or it exits 2 at pod start."""
    if len(pattern) > MAX_PATTERN:
        return pattern  # the field's max_length says so, without compiling it first
    try:
        compile_pattern(pattern)
    except (ValueError, RecursionError, OverflowError) as exc:
        raise ValueError(str(exc)) from None
    return pattern


def _check_query(template: str) -> str:
    # Imported here: the sidecar validates stop specs with these models, and never needs the
    # PromQL parser (2.5 MB in each trainer pod).
    from plateau.api.confine import check_template

    return check_template(template)


# --- enums ------------------------------------------------------------------------------------


class Mode(str, Enum):
    MIN = "min"
    MAX = "max"


class Combine(str, Enum):
    ANY = "any"
    ALL = "all"


class Preset(str, Enum):
    CONSERVATIVE = "conservative"
    BALANCED = "balanced"
    AGGRESSIVE = "aggressive"
    FORECAST = "forecast"  # a plateau or the forecast to the run's planned length: needs metric.forecast.horizon


class CohortRuleKind(str, Enum):
    MEDIAN = "median"
    PERCENTILE = "percentile"


class MetricsSource(str, Enum):
    FILE = "file"
    PUSH = "push"
    STDOUT = "stdout"


class Phase(str, Enum):
    PENDING = "Pending"
    RUNNING = "Running"
    STOPPING = "Stopping"
    STOPPED = "Stopped"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"


class Reason(str, Enum):
    """Why a job stopped (or would stop). Machine-readable; shown in `kubectl get tj`."""

    PLATEAU = "Plateau"
    CONVERGED = "Converged"  # the forecast rule: little gain left within the horizon
    TARGET_REACHED = "TargetReached"
    DIVERGED = "Diverged"
    NOT_FINITE = "NotFinite"
    DEADLINE_EXCEEDED = "DeadlineExceeded"
    BUDGET_EXHAUSTED = "BudgetExhausted"
    GPU_IDLE = "GpuIdle"
    COHORT_UNDERPERFORMING = "CohortUnderperforming"
    MANUAL = "Manual"
    COMPLETED = "Completed"
    WORKLOAD_FAILED = "WorkloadFailed"
    WORKLOAD_DELETED = "WorkloadDeleted"
    SIDECAR_UNSUPPORTED = "SidecarUnsupported"
    INVALID_SPEC = "InvalidSpec"


# --- the workload -----------------------------------------------------------------------------

# A CronJob has no /scale, and its spec.suspend only pauses the schedule: the Jobs it made run on.
# (Nor is its status a Job's: status.active lists those Jobs.)
BATCH_JOB_ONLY = "of the batch kinds only Job can be stopped (a CronJob cannot: name one of its Jobs)"
# Kubeflow's training jobs (and their plurals): each has spec.runPolicy.suspend, and labels its pods
# training.kubeflow.org/job-name. The group's other kinds (Notebook, Katib's Experiment) are no such jobs.
KUBEFLOW_KINDS = {"PyTorchJob": "pytorchjobs", "TFJob": "tfjobs", "MPIJob": "mpijobs", "XGBoostJob": "xgboostjobs",
                  "PaddleJob": "paddlejobs", "JAXJob": "jaxjobs"}
KUBEFLOW_JOBS_ONLY = f"of the kubeflow.org kinds only the training jobs can be stopped: {', '.join(KUBEFLOW_KINDS)}"


class WorkloadRef(Spec):
    """A workload the user already runs, which Plateau watches and stops."""

    api_version: str = Field(
        min_length=1,
        max_length=253,
        description="API version of the workload, e.g. batch/v1, apps/v1 or kubeflow.org/v1.",
    )
    kind: str = Field(
        min_length=1,
        max_length=63,
        description=(
            "Kind of the workload: Job and JobSet are suspended through spec.suspend, Kubeflow "
            "training jobs (PyTorchJob, TFJob, MPIJob, XGBoostJob, PaddleJob, JAXJob) through "
            "spec.runPolicy.suspend, anything else with a /scale subresource (Deployment, "
            "StatefulSet, custom resources) is scaled to 0. Not a CronJob: it has no /scale, and "
            "its suspend only pauses its schedule."
        ),
    )
    name: str = Field(
        min_length=1,
        max_length=253,
        description="Name of the workload, in the TrainingJob's namespace.",
    )

    @model_validator(mode="after")
    def _stoppable(self) -> "WorkloadRef":
        if self.api_version.startswith("batch/") and self.kind != "Job":
            raise ValueError(BATCH_JOB_ONLY)
        if self.api_version.startswith("kubeflow.org/") and self.kind not in KUBEFLOW_KINDS:
            raise ValueError(KUBEFLOW_JOBS_ONLY)
        return self

    model_config = ConfigDict(json_schema_extra={CEL: [
        cel("!self.apiVersion.startsWith('batch/') || self.kind == 'Job'", BATCH_JOB_ONLY),
        cel(f"!self.apiVersion.startsWith('kubeflow.org/') || self.kind in {list(KUBEFLOW_KINDS)}", KUBEFLOW_JOBS_ONLY)]})


class PodTemplate(BaseModel):
    """A core/v1 PodTemplateSpec, checked as the API server checks it against the schema the CRD
    embeds (plateau.api.podschema): an unknown field such as `comand` is an error, not dropped."""

    model_config = ConfigDict(extra="allow")

    @model_validator(mode="before")
    @classmethod
    def _as_the_api_server_checks(cls, data: Any) -> Any:
        errors = podschema.template_errors(data)
        if errors:
            raise ValueError("; ".join(errors))
        return data

    metadata: dict[str, Any] = Field(
        default_factory=dict, description="Labels and annotations for the trainer pods."
    )
    spec: dict[str, Any] = Field(
        description=(
            "A core/v1 PodSpec. The first container is the trainer; Plateau adds the sidecar, "
            "a shared emptyDir and the stop-request volume."
        )
    )


# --- metrics ----------------------------------------------------------------------------------


class MetricsSpec(Spec):
    """How the trainer's metrics reach the sidecar, and from there Prometheus."""

    source: MetricsSource = lax(
        default=MetricsSource.FILE,
        description=(
            "file: the trainer appends JSON lines to `path` on a shared volume. push: the "
            "trainer POSTs JSON to the sidecar on localhost:`pushPort`. stdout: the sidecar "
            "follows `logFile`, which the trainer's command already writes, and matches "
            "`pattern` against each line."
        ),
    )
    path: str = Field(
        default="/plateau/metrics.jsonl",
        min_length=1,
        max_length=1024,
        description="JSONL file the trainer writes, on the shared volume mounted at /plateau.",
    )
    push_port: Integer = Field(
        default=9465, ge=1024, le=65535, description="Port of the sidecar's localhost push endpoint."
    )
    log_file: Optional[str] = Field(
        default=None,
        max_length=1024,
        description="For source stdout: the log file the trainer's command writes (e.g. via tee).",
    )
    pattern: Optional[Annotated[str, AfterValidator(_check_pattern)]] = Field(
        default=None,
        max_length=MAX_PATTERN,
        description=(
            "For source stdout: a regular expression with a named group `step` and one named "
            "group per metric, e.g. 'step=(?P<step>\\d+) val_loss=(?P<val_loss>\\S+)'."
        ),
    )
    names: list[Annotated[str, Field(min_length=1, max_length=128)]] = Field(
        default_factory=list,
        max_length=64,
        description="Metric names to export; empty exports every numeric field the trainer reports.",
    )
    scrape_interval: Annotated[Duration, *at_least("1s")] = Field(
        default="15s",
        validate_default=True,  # the default, too, becomes a ParsedDuration
        description=(
            "How often Prometheus scrapes the sidecar. The child Job's pods carry it in the "
            "plateau.dev/scrape-interval annotation (with plateau.dev/scrape-timeout), which the "
            "chart's PodMonitor applies; another scrape config must relabel them into "
            "__scrape_interval__ and __scrape_timeout__ to honour it. At least 1s."
        ),
    )
    queries: dict[str, Annotated[str, Field(min_length=1, max_length=4096), AfterValidator(_check_query)]] = Field(
        default_factory=dict,
        max_length=16,
        description=(
            "For workloads whose metrics come from your own exporter: metric name -> PromQL "
            "expression returning one series with the metric's latest value. `$namespace` "
            "and `$name` (only inside quoted strings) are replaced by the escaped namespace "
            "and TrainingJob name. The operator adds namespace=\"<this namespace>\" to every "
            "selector, so a query reads only this namespace's series (the chart's "
            "customQueries value can turn queries off, or this confinement)."
        ),
    )

    @model_validator(mode="after")
    def _stdout_needs_pattern(self) -> "MetricsSpec":
        if self.source == MetricsSource.STDOUT.value and not (self.pattern and self.log_file):
            raise ValueError("metrics.source stdout needs both metrics.logFile and metrics.pattern")
        return self

    model_config = ConfigDict(
        json_schema_extra={
            CEL: [
                cel(
                    "self.source != 'stdout' || (has(self.pattern) && has(self.logFile))",
                    "source stdout needs both logFile and pattern",
                ),
                # The rest (a pattern that compiles, a metric group) is Python's regex syntax,
                # which CEL cannot parse: the models check it, and the operator then reports the
                # spec as InvalidSpec instead of starting a sidecar that would exit.
                cel(
                    f"!has(self.pattern) || self.pattern.contains('(?P<{STEP_GROUP}>')",
                    f"pattern needs a named group (?P<{STEP_GROUP}>...) for the step",
                    ".pattern",
                ),
            ]
        }
    )


# --- stop rules -------------------------------------------------------------------------------


class MinDelta(Spec):
    """How much the metric must improve to count as an improvement. Both parts may be set."""

    absolute: float = Field(default=0.0, ge=0, description="Improvement in the metric's own units.")
    relative: float = Field(
        default=0.0,
        ge=0,
        le=1,
        description="Improvement as a fraction of the best value's magnitude (0.01 = 1%).",
    )
    progress: float = Field(
        default=0.0,
        ge=0,
        le=1,
        description=(
            "Improvement as a fraction of the progress made so far: how far the (smoothed) "
            "metric has moved from its first value to the reference (0.03 = 3%). Scale-free: "
            "a run that has come far must keep moving by a share of that to count as improving, "
            "while a run still near its start counts any step."
        ),
    )


class MinGain(Spec):
    """The least improvement still to come that is worth the rest of the run. Parts may be
    combined: the largest counts."""

    absolute: float = Field(default=0.0, ge=0, description="In the metric's own units.")
    relative: float = Field(default=0.0, ge=0, le=1,
                            description="A fraction of the metric's current value's magnitude (0.01 = 1%).")
    progress: float = Field(
        default=0.0, ge=0, le=1,
        description="A fraction of the progress made so far, from the first value to the current one (0.02 = 2%).")

    @model_validator(mode="after")
    def _some_part(self) -> "MinGain":
        if not (self.absolute > 0 or self.relative > 0 or self.progress > 0):
            raise ValueError("minGain needs a part above 0: absolute, relative or progress")
        return self

    model_config = ConfigDict(json_schema_extra={CEL: [cel(
        "(has(self.absolute) && self.absolute > 0.0) || (has(self.relative) && self.relative > 0.0)"
        " || (has(self.progress) && self.progress > 0.0)",
        "minGain needs a part above 0: absolute, relative or progress")]})


DEFAULT_MIN_GAIN_PROGRESS = 0.02


class ForecastUnit(str, Enum):
    STEPS = "steps"
    EVALUATIONS = "evaluations"


FORECAST_END = "forecast needs exactly one of horizon (the run's planned length) and lookahead"


class ForecastRule(Spec):
    """Stop (reason Converged) when the improvement forecast from the curve so far to the end of
    the planned run (or `lookahead` times the run so far) is below minGain with the given
    confidence. The curve is extrapolated by an ensemble of learning-curve families (power law,
    exponential, logarithmic) fitted robustly."""

    horizon: OptionalInteger = Field(
        default=None, ge=1, le=2**53,
        description="The run's planned length, in `unit`: where the forecast looks. Set this or `lookahead`.")
    lookahead: Optional[float] = Field(
        default=None, ge=1.05, le=100,
        description=("How far ahead the forecast looks when the run's planned length is unknown: this "
                     "many times the run so far, in `unit` (1.5: the gain if the run went on for half "
                     "as long again). Set this or `horizon`."))
    unit: ForecastUnit = lax(default=ForecastUnit.STEPS,
                             description=("What `horizon` and `lookahead` count: the trainer's steps, or "
                                          "evaluations (reports)."))
    min_gain: MinGain = Field(
        default_factory=lambda: MinGain(progress=DEFAULT_MIN_GAIN_PROGRESS),
        description=("The gain still to come below which the run stops. Default: 2% of the progress "
                     "made so far (or the preset's)."))
    confidence: float = Field(
        default=0.9, ge=0.5, le=0.999,
        description=("How sure the forecast must be that the gain is below minGain: the upper "
                     "bound of the gain at this one-sided confidence is compared."))
    min_evaluations: Integer = Field(
        default=8, ge=5, le=100000,
        description="Evaluations (since the last learning-rate drop) before the forecast may fire.")
    confirms_plateau: bool = Field(
        default=False,
        description=("true: the forecast stops nothing by itself; a plateau (patience) stops the run only "
                     "when the forecast also says less than minGain is to come. Needs patience."))

    @model_validator(mode="after")
    def _one_end(self) -> "ForecastRule":
        if (self.horizon is None) == (self.lookahead is None):
            raise ValueError(FORECAST_END)
        return self

    model_config = ConfigDict(json_schema_extra={CEL: [cel("has(self.horizon) != has(self.lookahead)", FORECAST_END)]})


class Schedule(Spec):
    """The learning-rate schedule, so that a plateau before a drop is not taken as the end: patience
    and the forecast hold before a known drop, and start again from it."""

    milestones: Optional[list[Annotated[int, Field(ge=1, le=2**53), BeforeValidator(_integral)]]] = Field(
        default=None, min_length=1, max_length=64, json_schema_extra={"x-kubernetes-list-type": "set"},
        description="Steps at which the learning rate drops (a step schedule), in increasing order.")
    period: OptionalInteger = Field(
        default=None, ge=1, le=2**53,
        description="The learning rate drops or restarts every `period` steps (periodic decay, warm restarts).")
    learning_rate: Optional[str] = Field(
        default=None, min_length=1, max_length=128,
        description=("The metric the trainer reports its learning rate as (e.g. lr): a halving or a "
                     "restart counts as a drop, and drops at a steady interval predict the next. "
                     "The rate in force at an evaluation is the last one reported before it (or "
                     "earlier in the same record)."))
    hold: OptionalInteger = Field(
        default=None, ge=1, le=2**53,
        description=("Hold only this many steps before a drop; unset: hold whenever a drop is still to "
                     "come (within the forecast's horizon)."))

    @model_validator(mode="after")
    def _known(self) -> "Schedule":
        if self.milestones is None and self.period is None and self.learning_rate is None:
            raise ValueError("schedule needs milestones, period or learningRate")
        if self.milestones is not None and any(b <= a for a, b in zip(self.milestones, self.milestones[1:])):
            raise ValueError("schedule.milestones must be strictly increasing")
        return self

    model_config = ConfigDict(json_schema_extra={CEL: [
        cel("has(self.milestones) || has(self.period) || has(self.learningRate)",
            "schedule needs milestones, period or learningRate"),
        # Sorted here, and unique as a list of type set: strictly increasing.
        cel("!has(self.milestones) || self.milestones.isSorted()",
            "schedule.milestones must be strictly increasing", ".milestones"),
    ]})


class MetricRule(Spec):
    """Rules on one training metric. Evaluations are counted as reports from the trainer."""

    name: str = Field(min_length=1, max_length=128, description="The metric, e.g. val_loss.")
    mode: Mode = lax(
        default=Mode.MIN, description="min: lower is better (losses). max: higher is better."
    )
    patience: OptionalInteger = Field(
        default=None,
        ge=1,
        le=100000,
        description=(
            "Stop (reason Plateau) after this many evaluations without an improvement of at "
            "least minDelta. Counted in evaluations, not steps or time."
        ),
    )
    patience_growth: Optional[float] = Field(
        default=None,
        ge=0,
        le=2,
        description=(
            "Patience that grows with the run: the effective patience is the larger of "
            "`patience` and patienceGrowth x the evaluations seen at the last improvement, so a "
            "run that improved for long gets proportionally longer to improve again."
        ),
    )
    min_delta: Optional[MinDelta] = Field(
        default=None, description="Smallest change that counts as an improvement."
    )
    smoothing: Optional[float] = Field(
        default=None,
        ge=0,
        lt=1,
        description=(
            "Exponential smoothing of the metric before the plateau test (0 = none, 0.6 = "
            "heavy), so one noisy evaluation neither resets nor triggers patience."
        ),
    )
    warmup: OptionalInteger = Field(
        default=None,
        ge=0,
        le=1000000,
        description="No metric rule fires before this many evaluations have been seen.",
    )
    target: Optional[float] = Field(
        default=None,
        description="Stop with success (reason TargetReached) once the metric reaches this value.",
    )
    divergence: Optional[float] = Field(
        default=None,
        description=(
            "Stop (reason Diverged) once the metric is worse than this value: above it in mode "
            "min, below it in mode max."
        ),
    )
    check_finite: bool = Field(
        default=True, description="Stop (reason NotFinite) when the metric is NaN or infinite."
    )
    forecast: Optional[ForecastRule] = Field(
        default=None, description=("Stop when little improvement is forecast before the run's planned end "
                                   "(or `lookahead` times the run so far)."))
    schedule: Optional[Schedule] = Field(
        default=None, description="The learning-rate schedule: no plateau stop right before a drop.")

    @model_validator(mode="after")
    def _confirmed_plateau(self) -> "MetricRule":
        if self.forecast is not None and self.forecast.confirms_plateau and self.patience is None:
            raise ValueError("forecast.confirmsPlateau needs patience: it confirms a plateau")
        return self

    @model_validator(mode="after")
    def _target_consistent_with_mode(self) -> "MetricRule":
        if self.target is not None and self.divergence is not None:
            better = self.target < self.divergence if self.mode == "min" else self.target > self.divergence
            if not better:
                side = "below" if self.mode == "min" else "above"
                raise ValueError(f"in mode {Mode(self.mode).value} the target must lie {side} the divergence threshold")
        return self

    model_config = ConfigDict(
        json_schema_extra={
            CEL: [
                cel(
                    "!has(self.target) || !has(self.divergence) || "
                    "((!has(self.mode) || self.mode == 'min') ? self.target < self.divergence "
                    ": self.target > self.divergence)",
                    "target must be better than divergence for the mode: below it in mode min, above it in mode max",
                    ".target",
                ),
                cel(
                    "!has(self.forecast) || !has(self.forecast.confirmsPlateau) || !self.forecast.confirmsPlateau"
                    " || has(self.patience)",
                    "forecast.confirmsPlateau needs patience: it confirms a plateau",
                    ".forecast",
                ),
            ]
        }
    )


class GpuIdleRule(Spec):
    """Stop when every GPU of the job stays below a utilisation for a while."""

    below: float = Field(
        gt=0,
        le=1,
        description="Utilisation as a fraction (0.05 = 5%); values under about 0.01 are noise.",
    )
    for_: Annotated[Duration, *at_least("1m", "dcgm-exporter samples every 30s")] = Field(
        alias="for",
        description=(
            "How long utilisation must stay below `below`. dcgm-exporter samples every 30s, "
            "so at least 1m."
        ),
    )


def _label_key(key: str) -> str:
    errors = kubenames.qualified_name_errors(key)
    if errors:
        raise ValueError(f"{key!r} is not a valid label key: {'; '.join(errors)}")
    return key


def _label_keys(labels: dict[str, str]) -> dict[str, str]:
    for key in labels:
        _label_key(key)
    return labels


def _label_key_rule(key: str) -> str:
    return (f"{key}.matches({cel_string(kubenames.QUALIFIED_NAME_CEL)}) && "
            f"{key}.matches({cel_string(kubenames.QUALIFIED_NAME_LENGTHS_CEL)})")


_LABEL_KEY_MESSAGE = ("label keys are an optional DNS subdomain prefix of at most 253 characters and '/', and a "
                      "name of at most 63 alphanumerics, '-', '_' or '.' that starts and ends alphanumeric")
# A label value as Kubernetes takes it: at most 63 characters, alphanumeric at both ends.
LabelValue = Annotated[str, Field(max_length=kubenames.LABEL_MAX, pattern=kubenames.LABEL_VALUE_PATTERN)]


class LabelSelectorRequirement(Spec):
    key: Annotated[str, AfterValidator(_label_key)] = Field(
        min_length=1,
        max_length=317,
        description="The label key.",
        json_schema_extra={CEL: [cel(_label_key_rule("self"), _LABEL_KEY_MESSAGE)]},
    )
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"] = Field(
        description="In, NotIn, Exists or DoesNotExist."
    )
    values: list[LabelValue] = Field(
        default_factory=list, max_length=256, description="Values for In and NotIn; empty for Exists/DoesNotExist."
    )

    @model_validator(mode="after")
    def _values_fit_the_operator(self) -> "LabelSelectorRequirement":
        if self.operator in ("In", "NotIn") and not self.values:
            raise ValueError(f"values must be non-empty when operator is {self.operator}")
        if self.operator in ("Exists", "DoesNotExist") and self.values:
            raise ValueError(f"values must be empty when operator is {self.operator}")
        return self

    model_config = ConfigDict(
        json_schema_extra={
            CEL: [
                cel(
                    "self.operator in ['In', 'NotIn'] ? (has(self.values) && size(self.values) > 0) "
                    ": (!has(self.values) || size(self.values) == 0)",
                    "values must be non-empty when operator is In or NotIn, and empty when it is Exists or DoesNotExist",
                    ".values",
                )
            ]
        }
    )


class LabelSelector(Spec):
    """A standard Kubernetes label selector."""

    # Map keys have no schema, and CEL over a key of unbounded length is over the server's cost
    # budget: the models check matchLabels' keys, and the operator reports InvalidSpec.
    match_labels: Annotated[dict[str, LabelValue], AfterValidator(_label_keys)] = Field(
        default_factory=dict, max_length=64, description="Equality requirements."
    )
    # Bounded, so the key's CEL rule stays within the server's cost budget.
    match_expressions: list[LabelSelectorRequirement] = Field(
        default_factory=list, max_length=64, description="Set-based requirements."
    )


class CohortRule(Spec):
    """Stop a run that does worse than its peers at the same step (e.g. one sweep's trials)."""

    selector: LabelSelector = Field(
        description="TrainingJobs in the same namespace whose metric forms the cohort.",
        json_schema_extra={
            CEL: [
                cel(
                    "(has(self.matchLabels) && size(self.matchLabels) > 0) || "
                    "(has(self.matchExpressions) && size(self.matchExpressions) > 0)",
                    "selector must not be empty: it would select every TrainingJob",
                )
            ]
        },
    )
    rule: CohortRuleKind = lax(
        default=CohortRuleKind.MEDIAN,
        description=(
            "median: stop if the run's best value so far is worse than the median of its peers' "
            "best values at the same step. percentile: the same against `percentile`."
        ),
    )
    percentile: float = Field(
        default=50.0,
        gt=0,
        lt=100,
        description="For rule percentile: keep runs within the best `percentile` percent.",
    )
    min_jobs: Integer = Field(
        default=5, ge=1, le=10000, description="Peers that must have reached the step before the rule acts."
    )
    start_step: Integer = Field(default=0, ge=0, description="The rule is not evaluated before this step.")

    @model_validator(mode="after")
    def _selector_not_empty(self) -> "CohortRule":
        if not self.selector.match_labels and not self.selector.match_expressions:
            raise ValueError("cohort.selector must not be empty: it would select every TrainingJob")
        return self


class StopSpec(Spec):
    """When to stop. Every rule is optional, but at least one must be set."""

    combine: Combine = lax(
        default=Combine.ANY,
        description=(
            "any: stop when any rule fires. all: stop only when every configured rule fires. "
            "Safety stops (NotFinite, Diverged) always stop, whatever this says."
        ),
    )
    max_duration: Optional[Duration] = Field(
        default=None,
        description=(
            "Time limit (reason DeadlineExceeded). Counts running time only: it accumulates "
            "across suspend and resume, and time spent suspended does not count."
        ),
    )
    max_gpu_hours: Optional[float] = Field(
        default=None,
        gt=0,
        description="GPU-hour budget across all of the job's GPUs (reason BudgetExhausted).",
    )
    metric: Optional[MetricRule] = Field(default=None, description="Rules on a training metric.")
    gpu_idle: Optional[GpuIdleRule] = Field(default=None, description="Stop on idle GPUs.")
    cohort: Optional[CohortRule] = Field(
        default=None, description="Stop runs that underperform their cohort (uses `metric`)."
    )
    preset: Optional[Preset] = lax(
        default=None,
        description=(
            "A calibrated policy for `metric`, for users who do not want to guess: a plateau "
            "(patience, minDelta, smoothing) or a forecast of the gain still to come, whichever "
            "fires first. conservative, balanced and aggressive forecast `lookahead` times the run "
            "so far; `forecast` looks to metric.forecast.horizon, which it needs. Fields set in "
            "`metric` override the preset's. See the benchmark figures in docs/stop-rules.md."
        ),
    )
    dry_run: Optional[bool] = Field(
        default=None,
        description=(
            "Decide and report in status.wouldStop and an Event, but never act. Unset: the "
            "operator's default (Helm value dryRun, false unless the platform team set it)."
        ),
    )
    grace_period: Duration = Field(
        default="60s",
        validate_default=True,  # the default, too, becomes a ParsedDuration
        description=(
            "How long the trainer has to checkpoint and exit after the stop request before the "
            "workload is suspended or scaled to zero."
        ),
    )

    @model_validator(mode="after")
    def _consistent(self) -> "StopSpec":
        if not any((self.max_duration, self.max_gpu_hours, self.metric, self.gpu_idle, self.cohort)):
            raise ValueError(
                "stop has no rule: set at least one of maxDuration, maxGpuHours, metric, gpuIdle, cohort"
            )
        if (self.cohort or self.preset) and not self.metric:
            raise ValueError("stop.cohort and stop.preset need stop.metric to name the metric")
        # The preset is calibrated for a known planned length: a lookahead does not do.
        if (self.preset == Preset.FORECAST and self.metric is not None
                and (self.metric.forecast is None or self.metric.forecast.horizon is None)):
            raise ValueError("preset forecast needs metric.forecast.horizon: the run's planned length")
        return self

    model_config = ConfigDict(
        json_schema_extra={
            CEL: [
                cel(
                    "has(self.maxDuration) || has(self.maxGpuHours) || has(self.metric) || "
                    "has(self.gpuIdle) || has(self.cohort)",
                    "stop has no rule: set at least one of maxDuration, maxGpuHours, metric, gpuIdle, cohort",
                ),
                cel(
                    "!(has(self.cohort) || has(self.preset)) || has(self.metric)",
                    "cohort and preset need metric to name the metric",
                ),
                cel(
                    "!has(self.preset) || self.preset != 'forecast' || "
                    "(has(self.metric) && has(self.metric.forecast) && has(self.metric.forecast.horizon))",
                    "preset forecast needs metric.forecast.horizon: the run's planned length",
                ),
            ]
        }
    )


class TrainingJobSpec(Spec):
    """A training workload and the rules that stop it."""

    template: Optional[PodTemplate] = Field(
        default=None,
        description="Pod template of the trainer; Plateau creates a batch/v1 Job from it.",
    )
    replicas: Integer = Field(
        default=1,
        ge=0,
        le=10000,
        description=(
            "Trainer pods (Job parallelism and completions; Indexed when more than one). "
            "`kubectl scale tj NAME --replicas=0` stops the job (reason Manual); raising it "
            "again resumes."
        ),
    )
    workload_ref: Optional[WorkloadRef] = Field(
        default=None, description="Attach the stop spec to a workload you already run instead."
    )
    metrics: MetricsSpec = Field(
        default_factory=MetricsSpec, description="How training metrics are collected."
    )
    stop: StopSpec = Field(description="When to stop.")

    @model_validator(mode="after")
    def _exactly_one_workload(self) -> "TrainingJobSpec":
        if (self.template is None) == (self.workload_ref is None):
            raise ValueError("set exactly one of spec.template and spec.workloadRef")
        return self

    model_config = ConfigDict(
        json_schema_extra={
            CEL: [
                cel(
                    "has(self.template) != has(self.workloadRef)",
                    "set exactly one of template and workloadRef",
                )
            ]
        }
    )


# --- status -----------------------------------------------------------------------------------


class Condition(Model):
    """A standard Kubernetes condition (metav1.Condition)."""

    type: str = Field(description="Ready, MetricsAvailable, GpuMetricsAvailable, SpecValid, ...")
    status: Literal["True", "False", "Unknown"] = Field(description="True, False or Unknown.")
    reason: str = Field(description="CamelCase reason for the last transition.")
    message: str = Field(default="", description="Human-readable details.")
    last_transition_time: str = Field(description="When status last changed (RFC 3339).")
    observed_generation: Optional[int] = Field(
        default=None, description="The spec generation the condition was computed for."
    )


class MetricSummary(Model):
    """The monitored metric, and the engine's patience bookkeeping (kept across restarts)."""

    name: str = Field(description="The metric's name.")
    last: Optional[float] = Field(default=None, description="The last reported value.")
    last_step: Optional[int] = Field(default=None, description="Step of the last report.")
    best: Optional[float] = Field(default=None, description="The best finite value so far.")
    best_step: Optional[int] = Field(default=None, description="Step of the best value.")
    reference: Optional[float] = Field(
        default=None,
        description="The (smoothed) value improvements are measured against for patience.",
    )
    smoothed: Optional[float] = Field(default=None, description="The smoothed metric, if smoothing is on.")
    first: Optional[float] = Field(
        default=None, description="The first finite value: where minDelta.progress measures progress from."
    )
    since_improvement: int = Field(
        default=0, description="Evaluations since the last improvement: the patience counter."
    )
    non_finite: int = Field(default=0, description="NaN or infinite values seen.")
    regime_evaluations: Optional[int] = Field(
        default=None, description="Finite values since the last learning-rate drop (with a forecast rule).")
    forecast_level: Optional[float] = Field(default=None, description="The forecast value at the horizon.")
    forecast_level_sd: Optional[float] = Field(default=None, description="Its standard deviation.")
    forecast_gain: Optional[float] = Field(
        default=None, description="The forecast improvement from now to the horizon (positive: better).")
    forecast_gain_sd: Optional[float] = Field(default=None, description="Its standard deviation.")
    drop_step: Optional[int] = Field(default=None, description="Step of the last learning-rate drop seen.")
    drop_gap: Optional[int] = Field(default=None, description="Steps between the last two learning-rate drops.")
    resumes: int = Field(
        default=0, description="Reports whose step went back (resumes from a checkpoint); their purged evaluations left the track."
    )
    sidecar_reports: int = Field(
        default=0, description="The sidecar's report counter at the last read, to find news."
    )
    spec_key: Optional[int] = Field(
        default=None, description="Key of the metric stop spec the sidecar folded the track under."
    )
    best_history: list[Annotated[list[float], Field(min_length=2, max_length=2)]] = Field(
        default_factory=list,
        max_length=64,
        description="[step, best] at the steps where the best value improved (thinned), for cohort rules.",
    )


class WouldStop(Model):
    """What a dry run would have done."""

    step: Optional[int] = Field(default=None, description="Step at which it would have stopped.")
    time: str = Field(description="When (RFC 3339).")
    reason: Reason = Field(description="Why.")
    message: str = Field(default="", description="The evidence.")
    gpu_hours_saved: Optional[float] = Field(
        default=None,
        description="GPU-hours the stop would have saved, where a budget or deadline bounds the run.",
    )


class TrainingJobStatus(Model):
    """Observed state, written by the operator (or `plateau run`)."""

    phase: Phase = Field(default=Phase.PENDING, description="Pending, Running, Stopping, Stopped, Succeeded or Failed.")
    reason: Optional[Reason] = Field(default=None, description="Why the job stopped or ended.")
    message: Optional[str] = Field(default=None, description="The evidence behind the reason.")
    start_time: Optional[str] = Field(default=None, description="When the workload started running.")
    stop_time: Optional[str] = Field(default=None, description="When the job stopped or ended.")
    stop_requested_time: Optional[str] = Field(
        default=None, description="When the stop request reached the pods (start of gracePeriod)."
    )
    observed_generation: Optional[int] = Field(
        default=None, description="The spec generation this status reflects."
    )
    last_evaluation_time: Optional[str] = Field(
        default=None, description="When the operator last evaluated the job (accounts running time)."
    )
    conditions: list[Condition] = Field(default_factory=list, description="Standard conditions.")
    metric: Optional[MetricSummary] = Field(default=None, description="The monitored metric.")
    evaluations: int = Field(default=0, description="Evaluations (metric reports) seen.")
    running_seconds: float = Field(
        default=0.0, description="Accumulated running time; what maxDuration is measured against."
    )
    gpu_hours: float = Field(default=0.0, description="GPU-hours used so far.")
    gpu_hours_saved: Optional[float] = Field(
        default=None, description="GPU-hours the stop saved against the budget or deadline."
    )
    replicas: int = Field(default=0, description="Trainer pods currently requested (the scale subresource).")
    replicas_before_stop: Optional[int] = Field(
        default=None, description="A workloadRef stopped through /scale: the replicas it had, restored on resume."
    )
    selector: Optional[str] = Field(default=None, description="Label selector of the trainer pods.")
    workload: Optional[str] = Field(default=None, description="kind/name of the child workload.")
    would_stop: Optional[WouldStop] = Field(default=None, description="For a dry run: what a stop would have been.")


class ObjectMeta(BaseModel):
    """The metadata the API server checks on every object: a DNS-1123 subdomain name, a DNS-1123
    label namespace, qualified label and annotation keys, label values, annotations' total size."""

    model_config = ConfigDict(extra="allow", strict=True)
    name: str = Field(default="local", min_length=1, max_length=253)
    namespace: Optional[str] = None
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _name(cls, name: str) -> str:
        return _valid(name, kubenames.dns_subdomain_errors(name))

    @field_validator("namespace")
    @classmethod
    def _namespace(cls, namespace: Optional[str]) -> Optional[str]:
        return namespace if namespace is None else _valid(namespace, kubenames.dns_label_errors(namespace))

    @field_validator("labels")
    @classmethod
    def _labels(cls, labels: dict[str, str]) -> dict[str, str]:
        errors = kubenames.labels_errors(labels)
        if errors:
            raise ValueError("; ".join(errors[:5]))
        return labels

    @field_validator("annotations")
    @classmethod
    def _annotations(cls, annotations: dict[str, str]) -> dict[str, str]:
        errors = [f"{key!r}: {e}" for key in annotations for e in kubenames.qualified_name_errors(key)]
        size = sum(len(k.encode()) + len(v.encode()) for k, v in annotations.items())
        if size > kubenames.ANNOTATIONS_MAX_BYTES:
            errors.append(f"must have at most {kubenames.ANNOTATIONS_MAX_BYTES} bytes, has {size}")
        if errors:
            raise ValueError("; ".join(errors[:5]))
        return annotations


def _valid(value: str, errors: list[str]) -> str:
    if errors:
        raise ValueError(f"{value[:80]!r}: {'; '.join(errors)}")
    return value


def index_suffix(replicas: int) -> int:
    """Characters an Indexed Job adds to its name for a pod's hostname: "-<last index>"."""
    return 0 if replicas <= 1 else 1 + len(str(replicas - 1))


# A TrainingJob with a template gets a child Job of the same name, and the server takes it only
# if that name is a label value (its pods' job-name label: at most 63 characters) and, when it is
# Indexed (replicas > 1), "<name>-<index>" is each pod's hostname (a DNS-1123 label: no dots).
# The server checks these at apply; the models check the same.
_REPLICAS = "(has(self.spec.replicas) ? self.spec.replicas : 1)"
NAME_RULES = [
    cel(
        "!has(self.spec.template) || self.metadata.name.size() <= 63 - ("
        f"{_REPLICAS} <= 1 ? 0 : {_REPLICAS} <= 10 ? 2 : {_REPLICAS} <= 100 ? 3 : {_REPLICAS} <= 1000 ? 4 : 5)",
        "metadata.name must be at most 63 characters with spec.template (the child Job's name is its pods'"
        " job-name label), less the '-<index>' of pod hostnames when spec.replicas is more than 1",
    ),
    cel(
        f"!has(self.spec.template) || {_REPLICAS} <= 1 || !self.metadata.name.contains('.')",
        "metadata.name must not contain '.' with spec.template and spec.replicas above 1: the pods'"
        " hostnames are <name>-<index>",
    ),
]


class TrainingJob(Model):
    """A training run and the rules that stop it early."""

    api_version: Literal["plateau.dev/v1alpha1"] = Field(alias="apiVersion")
    kind: Literal["TrainingJob"]
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: TrainingJobSpec
    status: Optional[TrainingJobStatus] = None

    @field_validator("status", mode="before")
    @classmethod
    def _status_is_not_applied(cls, status: Any) -> None:
        """The API server drops a manifest's status, whatever it holds (the status subresource
        owns it), and so does validation: the operator writes it."""
        return None

    @model_validator(mode="after")
    def _children_can_be_named(self) -> "TrainingJob":
        """NAME_RULES, as the API server applies them."""
        if self.spec.template is None:
            return self
        name, replicas = self.metadata.name, self.spec.replicas
        limit = kubenames.LABEL_MAX - index_suffix(replicas)
        if len(name) > limit:
            raise ValueError(f"metadata.name must be at most {limit} characters with spec.template and "
                             f"spec.replicas {replicas} (the child Job's name is its pods' job-name label"
                             f"{', and <name>-<index> their hostnames' if replicas > 1 else ''}), has {len(name)}")
        if replicas > 1 and "." in name:
            raise ValueError("metadata.name must not contain '.' with spec.template and spec.replicas above 1:"
                             " the pods' hostnames are <name>-<index>")
        return self
