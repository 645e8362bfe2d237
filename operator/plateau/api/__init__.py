"""The TrainingJob API: the pydantic models that generate the CRD, the chart's copy and the
reference, and what reads a user's files. Imports nothing else from plateau; everyone else
imports the models from here (`from plateau import api`)."""

from plateau.api.base import CEL, Model
from plateau.api.metricrule import RECORD_KEYS, ForecastRule, ForecastUnit, MetricRule, MinDelta, MinGain, Mode, Schedule
from plateau.api.models import (
    API_VERSION,
    CATEGORIES,
    GROUP,
    KIND,
    NAME_RULES,
    PLURAL,
    SHORT_NAMES,
    SINGULAR,
    VERSION,
    ObjectMeta,
    TrainingJob,
    TrainingJobSpec,
)
from plateau.api.status import Condition, MetricSummary, Phase, Reason, TrainingJobStatus, WouldStop
from plateau.api.stopspec import (
    CohortRule,
    CohortRuleKind,
    Combine,
    GpuIdleRule,
    LabelSelector,
    LabelSelectorRequirement,
    Preset,
    StopSpec,
)
from plateau.api.workload import KUBEFLOW_KINDS, MetricsSource, MetricsSpec, PodTemplate, WorkloadRef

__all__ = [
    "API_VERSION", "CATEGORIES", "CEL", "GROUP", "KIND", "KUBEFLOW_KINDS", "NAME_RULES", "PLURAL", "SHORT_NAMES",
    "SINGULAR", "VERSION", "CohortRule", "CohortRuleKind", "Combine", "Condition", "ForecastRule", "ForecastUnit",
    "GpuIdleRule", "LabelSelector", "LabelSelectorRequirement", "MetricRule", "MetricsSource", "RECORD_KEYS", "MetricsSpec",
    "MetricSummary", "MinDelta", "MinGain", "Mode", "Model", "ObjectMeta", "Phase", "PodTemplate", "Preset",
    "Reason", "Schedule", "StopSpec", "TrainingJob", "TrainingJobSpec", "TrainingJobStatus", "WorkloadRef",
    "WouldStop",
]
