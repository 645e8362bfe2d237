"""The TrainingJob API (plateau.dev/v1alpha1): the single source of truth. This module holds the
TrainingJob itself (its group, version and names, its metadata and spec, and the rules its name
must follow); its parts live beside it (base, workload, metricrule, stopspec, status). These
pydantic models validate manifests for the local runner and `plateau replay`, and generate the
CRD (`plateau crd`), so field descriptions here become `kubectl explain` text."""

from __future__ import annotations

from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from plateau.api import kubenames
from plateau.api.base import CEL, Integer, Model, Spec, cel
from plateau.api.status import TrainingJobStatus
from plateau.api.stopspec import StopSpec
from plateau.api.workload import MetricsSpec, PodTemplate, WorkloadRef

GROUP = "plateau.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "TrainingJob"
PLURAL = "trainingjobs"
SINGULAR = "trainingjob"
SHORT_NAMES = ["tj"]
CATEGORIES = ["plateau"]


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

    def exported_metrics(self) -> list[str]:
        """metrics.names, and the names the metric rule reads (its metric and learning rate)
        where that list leaves them out; empty (every numeric field) stays empty."""
        names = list(self.metrics.names)
        rule = self.stop.metric
        if names and rule is not None:
            for name in (rule.name, rule.schedule.learning_rate if rule.schedule is not None else None):
                if name is not None and name not in names:
                    names.append(name)
        return names

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
