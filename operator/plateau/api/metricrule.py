"""The rules on one training metric (`MetricRule`): patience over a minimum improvement
(`MinDelta`), a target, a divergence threshold, a forecast of the gain still to come
(`ForecastRule`, `MinGain`) and the learning-rate schedule that holds them (`Schedule`)."""

from __future__ import annotations

from enum import Enum
from typing import Annotated, Optional

from pydantic import BeforeValidator, ConfigDict, Field, model_validator

from plateau.api.base import CEL, Integer, OptionalInteger, Spec, cel, integral, lax

# Keys of a reported record that are not metrics (the sidecar reads them as its step and
# time): a rule cannot watch one, nor take one as its learning rate.
RECORD_KEYS = ("step", "time", "ts")
_RECORD_KEYS_CEL = "[" + ", ".join(f"'{key}'" for key in RECORD_KEYS) + "]"
_RECORD_KEY_MESSAGE = "must not be step, time or ts: those keys of a record are its step and time"


def _not_a_record_key(name: str, field: str) -> None:
    if name in RECORD_KEYS:
        raise ValueError(f"{field} {_RECORD_KEY_MESSAGE}")


class Mode(str, Enum):
    MIN = "min"
    MAX = "max"


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

    milestones: Optional[list[Annotated[int, Field(ge=1, le=2**53), BeforeValidator(integral)]]] = Field(
        default=None, min_length=1, max_length=64, json_schema_extra={"x-kubernetes-list-type": "set"},
        description="Steps at which the learning rate drops (a step schedule), in increasing order.")
    period: OptionalInteger = Field(
        default=None, ge=1, le=2**53,
        description="The learning rate drops or restarts every `period` steps (periodic decay, warm restarts).")
    learning_rate: Optional[str] = Field(
        default=None, min_length=1, max_length=128,
        description=("The metric the trainer reports its learning rate as (e.g. lr): a halving or a "
                     "restart counts as a drop, and drops at a steady interval predict the next. "
                     "The rate in force at an evaluation is the last one reported up to it, its "
                     "own record included (in any key order)."))
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
        if self.learning_rate is not None:
            _not_a_record_key(self.learning_rate, "schedule.learningRate")
        return self

    model_config = ConfigDict(json_schema_extra={CEL: [
        cel("has(self.milestones) || has(self.period) || has(self.learningRate)",
            "schedule needs milestones, period or learningRate"),
        # Sorted here, and unique as a list of type set: strictly increasing.
        cel("!has(self.milestones) || self.milestones.isSorted()",
            "schedule.milestones must be strictly increasing", ".milestones"),
        cel(f"!has(self.learningRate) || !(self.learningRate in {_RECORD_KEYS_CEL})",
            f"schedule.learningRate {_RECORD_KEY_MESSAGE}",
            ".learningRate"),
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
    def _name_is_a_metric(self) -> "MetricRule":
        _not_a_record_key(self.name, "name")
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
                cel(f"!(self.name in {_RECORD_KEYS_CEL})",
                    f"name {_RECORD_KEY_MESSAGE}", ".name"),
                cel(
                    "!has(self.forecast) || !has(self.forecast.confirmsPlateau) || !self.forecast.confirmsPlateau"
                    " || has(self.patience)",
                    "forecast.confirmsPlateau needs patience: it confirms a plateau",
                    ".forecast",
                ),
            ]
        }
    )
