"""What a TrainingJob runs or watches, and how its metrics leave it: the pod template of a trainer
Plateau starts (`PodTemplate`), a workload the user already runs (`WorkloadRef`, with the kinds
that can be stopped) and the trainer's metrics (`MetricsSpec`)."""

from __future__ import annotations

from enum import Enum
from typing import Annotated, Any, Optional

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from plateau.api import podschema
from plateau.api.base import CEL, Duration, Integer, Spec, at_least, cel, lax
from plateau.api.stdout_pattern import STEP_GROUP, compile_pattern


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


class MetricsSource(str, Enum):
    FILE = "file"
    PUSH = "push"
    STDOUT = "stdout"


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
    # No comma: the sidecar takes the list as one comma-separated variable.
    names: list[Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[^,]+$")]] = Field(
        default_factory=list,
        max_length=64,
        description=("Metric names to export; empty exports every numeric field the trainer reports. "
                     "The sidecar also takes the metric and learning rate its stop spec reads."),
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
