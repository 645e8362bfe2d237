"""Calibrated plateau policies, for users who do not want to guess patience.

The values are what `python -m benchmarks.calibrate --folds tasks` chooses on all committed
curves (benchmarks/data/curves*.csv.gz); docs/stop-rules.md has the tables. Fields the user
sets in `stop.metric` override the preset's.
"""

from __future__ import annotations

from typing import Any, Optional

from plateau.api import MetricRule, StopSpec
from plateau.engine.memo import per_spec_object

# Chosen by benchmarks.calibrate over 1,260 real runs of 20 tasks (constant-rate, step, cosine
# and warm-restart schedules, fine-tuning, noisy step-level metrics, over-fitting, 300-400
# epochs): the most epochs saved with a mean regret within the preset's bound (0.25, 0.5 and
# 1 point) and a p99 regret no worse than Keras patience=10's (aggressive: patience=5's). Out
# of sample (each task scored by the values chosen without it), balanced saves 51.1% at a mean
# regret of 0.62 points (p99 14.6), conservative 42.5% at 0.31, aggressive 59.5% at 1.36; the
# clairvoyant limit is 67.3%.
PRESETS: dict[str, dict[str, Any]] = {
    "conservative": {"patience": 20, "smoothing": 0.3, "min_delta": {"progress": 0.03}, "patience_growth": 1.0},
    "balanced": {"patience": 8, "smoothing": 0.5, "min_delta": {"progress": 0.05}, "patience_growth": 1.0},
    "aggressive": {"patience": 8, "smoothing": 0.7, "min_delta": {"progress": 0.03}, "patience_growth": 0.3},
    # A short plateau that the forecast confirms (the user states the horizon): what the same
    # cross-validation picks from the forecast candidates (benchmarks/plateau_policies.py) with
    # balanced's constraint. Out of sample 51.3% saved at 0.47 points (p99 10.8); in sample 52.4%
    # at 0.49 (p99 9.2).
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
