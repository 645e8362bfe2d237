"""Best-so-far histories for cohort rules. Pure.

Each job keeps, in status, the steps at which its best value improved (capped by thinning).
A peer's best at step s is the last entry at or before s, if the peer has reached s.
Thinning drops improvements, so a thinned peer looks no better than it was: a cohort stop
can come later, never earlier.
"""

from __future__ import annotations

import bisect
from typing import Optional

from plateau.api import MetricSummary

MAX_POINTS = 64


def record_best(history: list[list[float]], step: Optional[int], best: Optional[float],
                last_step: Optional[int] = None) -> list[list[float]]:
    """The history with (step, best) appended if best moved. Points at or after `last_step`
    (the track's last evaluation) came from evaluations a resume purged: they go. Points are
    never modified, so histories share them: the history itself comes back when nothing moved."""
    if last_step is not None and history and history[-1][0] >= last_step:
        history = [point for point in history if point[0] < last_step]
    if step is None or best is None or (history and history[-1][1] == best):
        return history
    out = [*history, [float(step), best]]
    if len(out) > MAX_POINTS:
        out = out[:1] + out[1:-1][1::2] + out[-1:]  # keep the first and the latest, halve the rest
    return out


def best_at(summary: Optional[MetricSummary], step: int) -> Optional[float]:
    if summary is None or summary.last_step is None or summary.last_step < step or not summary.best_history:
        return None
    steps = [p[0] for p in summary.best_history]
    i = bisect.bisect_right(steps, step) - 1
    return summary.best_history[i][1] if i >= 0 else None


def selector_matches(selector: dict, labels: dict[str, str]) -> bool:
    """A metav1.LabelSelector (camelCase dict) against labels."""
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for req in selector.get("matchExpressions") or []:
        key, op, values = req.get("key"), req.get("operator"), req.get("values") or []
        present = key in labels
        if op == "In" and (not present or labels[key] not in values):
            return False
        if op == "NotIn" and present and labels[key] in values:
            return False
        if op == "Exists" and not present:
            return False
        if op == "DoesNotExist" and present:
            return False
    return True
