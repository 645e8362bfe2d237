"""Calibrated stop policies, for users who do not want to guess patience.

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
# 1 point) and a p99 regret no worse than Keras patience=10's (aggressive: patience=5's). Each
# is a plateau or a forecast that looks `lookahead` times the run so far ahead, whichever fires
# first: neither needs the run's planned length. Out of sample (each task scored by the values
# chosen without it), balanced saves 54.6% at a mean regret of 0.55 points (p99 13.7),
# conservative 44.0% at 0.30, aggressive 61.8% at 0.99; the clairvoyant limit is 67.3%.
PRESETS: dict[str, dict[str, Any]] = {
    "conservative": {"patience": 40, "smoothing": 0.7, "min_delta": {"progress": 0.03}, "patience_growth": 1.0,
                     "forecast": {"lookahead": 1.5, "min_gain": {"progress": 0.01}, "confidence": 0.7,
                                  "min_evaluations": 12}},
    "balanced": {"patience": 8, "smoothing": 0.6, "min_delta": {"progress": 0.03}, "patience_growth": 1.0,
                 "forecast": {"lookahead": 3.0, "min_gain": {"progress": 0.05}, "confidence": 0.7,
                              "min_evaluations": 12}},
    "aggressive": {"patience": 8, "smoothing": 0.6, "min_delta": {"progress": 0.03}, "patience_growth": 1.0,
                   "forecast": {"lookahead": 1.5, "min_gain": {"progress": 0.05}, "confidence": 0.7,
                                "min_evaluations": 12}},
    # A patient plateau (patienceGrowth 1.5) or the forecast, whichever fires first (the user
    # states the horizon): what the same cross-validation picks from the forecast candidates
    # (benchmarks/candidates.py) with balanced's constraint. Out of sample 55.4% saved at 0.57
    # points (p99 9.6); in sample 55.5% at 0.50 (p99 7.9). Perfect foresight of val_loss alone
    # saves 57.8% at 0.46.
    "forecast": {"patience": 8, "smoothing": 0.6, "min_delta": {"progress": 0.03}, "patience_growth": 1.5,
                 "forecast": {"min_gain": {"progress": 0.02}, "confidence": 0.5, "min_evaluations": 12}},
}


FORECAST_ENDS = frozenset({"horizon", "lookahead"})  # where a forecast looks: exactly one is set


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
        given = preset["forecast"]
        if FORECAST_ENDS & explicit["forecast"].keys():  # one end only: the user's replaces the preset's
            given = {k: v for k, v in given.items() if k not in FORECAST_ENDS}
        merged["forecast"] = {**given, **explicit["forecast"]}
    return MetricRule.model_validate(merged)
