"""When to stop (`StopSpec`): the rules beside the metric's (a time limit, a GPU-hour budget,
idle GPUs, a cohort of peers chosen by a label selector), how they combine, the calibrated
presets, and the grace period a stopping trainer gets."""

from __future__ import annotations

from enum import Enum
from typing import Annotated, Literal, Optional

from pydantic import AfterValidator, ConfigDict, Field, model_validator

from plateau.api import kubenames
from plateau.api.base import CEL, Duration, Integer, Spec, at_least, cel, cel_string, lax
from plateau.api.metricrule import MetricRule


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
