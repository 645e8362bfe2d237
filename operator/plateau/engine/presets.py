"""Calibrated plateau policies, for users who do not want to guess patience.

The figures come from `python benchmarks/stopping_quality.py` on the committed curves
(benchmarks/data/curves.csv.gz); docs/stop-rules.md has the tables. Fields the user sets in
`stop.metric` override the preset's.
"""

from __future__ import annotations

from typing import Any, Optional

from plateau.api import MetricRule, StopSpec
from plateau.engine.memo import per_spec_object

# Calibrated on benchmarks/data/curves.csv.gz (600 real runs, 6 tasks); docs/stop-rules.md
# has the tables. balanced: 55.1% saved at a mean regret of 0.46 points (<= 0.5) with a p99
# regret below Keras patience=10; conservative: about half that regret; aggressive: about 1 point.
PRESETS: dict[str, dict[str, Any]] = {
    "conservative": {"patience": 15, "smoothing": 0.5, "warmup": 5},
    "balanced": {"patience": 12, "smoothing": 0.6, "min_delta": {"progress": 0.03}},
    "aggressive": {"patience": 6, "min_delta": {"relative": 0.002}, "warmup": 5},
    # A short plateau that the forecast confirms (the user states the horizon): what leave-one-
    # task-out cross-validation picks from the forecast candidates (benchmarks/plateau_policies.py)
    # on all 990 benchmark runs. In sample 52.3% saved at 0.49 points (p99 12.2); out of sample,
    # each task scored by the setting chosen without it, 43.5% at 0.45 (p99 11.5).
    "forecast": {"patience": 8, "smoothing": 0.6, "min_delta": {"progress": 0.03},
                 "forecast": {"min_gain": {"progress": 0.05}, "confidence": 0.7, "confirms_plateau": True}},
}


@per_spec_object  # the engine asks on every decision, and validation is the costly part
def resolve_metric_rule(stop: StopSpec) -> Optional[MetricRule]:
    """The metric rule with the preset's values filled in where the user left a field unset."""
    rule = stop.metric
    if rule is None or stop.preset is None:
        return rule
    explicit = rule.model_dump(exclude_unset=True)
    preset = PRESETS[stop.preset]
    merged = {**preset, **explicit}
    if "forecast" in preset and "forecast" in explicit:  # the user's horizon, the preset's gain
        merged["forecast"] = {**preset["forecast"], **explicit["forecast"]}
    return MetricRule.model_validate(merged)
