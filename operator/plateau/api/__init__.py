"""The TrainingJob API: the pydantic models that generate the CRD, the chart's copy and the
reference, and what reads a user's files. Imports nothing else from plateau; everyone else
imports the models from here (`from plateau import api`)."""

from plateau.api.models import (
    API_VERSION,
    CATEGORIES,
    CEL,
    GROUP,
    KIND,
    NAME_RULES,
    PLURAL,
    SHORT_NAMES,
    SINGULAR,
    VERSION,
    CohortRule,
    CohortRuleKind,
    Combine,
    Condition,
    GpuIdleRule,
    LabelSelector,
    LabelSelectorRequirement,
    MetricRule,
    MetricsSource,
    MetricsSpec,
    MetricSummary,
    MinDelta,
    Mode,
    Model,
    ObjectMeta,
    Phase,
    PodTemplate,
    Preset,
    Reason,
    StopSpec,
    TrainingJob,
    TrainingJobSpec,
    TrainingJobStatus,
    WorkloadRef,
    WouldStop,
)

__all__ = [
    "API_VERSION", "CATEGORIES", "CEL", "GROUP", "KIND", "NAME_RULES", "PLURAL", "SHORT_NAMES", "SINGULAR",
    "VERSION", "CohortRule", "CohortRuleKind", "Combine", "Condition", "GpuIdleRule", "LabelSelector",
    "LabelSelectorRequirement", "MetricRule", "MetricsSource", "MetricsSpec", "MetricSummary", "MinDelta", "Mode",
    "Model", "ObjectMeta", "Phase", "PodTemplate", "Preset", "Reason", "StopSpec", "TrainingJob",
    "TrainingJobSpec", "TrainingJobStatus", "WorkloadRef", "WouldStop",
]
