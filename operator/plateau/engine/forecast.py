"""Where a learning curve is heading: a cheap ensemble of learning-curve families. Pure.

The seed's stopping criterion is "the improvement still to come is below ε"; patience only
looks back. This module looks ahead, in the spirit of learning-curve extrapolation (Domhan et
al. 2015) but cheap enough to run at every evaluation of 10,000 jobs:

- Each family is y = a + b·g(t) with the shape g fixed from a small grid (power laws t^-c,
  exponentials e^-ct, and the logarithm -log t, which never levels off and so keeps the ensemble
  from promising convergence too early). With g fixed the fit is a 2-parameter weighted least
  squares with a closed form, so the whole ensemble is a handful of numpy sums.
- Fits are robust: a fixed number of Huber IRLS passes, so one spike moves no member far.
- Members are weighted by fit quality (Akaike weights on the robust residual sum of squares).
- The uncertainty is the ensemble's mixture variance: each member's parameter variance plus the
  spread of the members' predictions.

Bounded: callers pass at most MAX_POINTS points (`sketch` keeps such a summary of a curve in O(1)
space) and the iterations are fixed. Total: anything non-finite, too few points, a horizon already
reached gives None (unknown), never an exception and never a reason to stop.
"""

from __future__ import annotations

from statistics import NormalDist
from typing import NamedTuple, Optional, Sequence

# The most points a fit uses, and the sketch's size: early points thinned, recent ones dense.
MAX_POINTS = 48
DENSE_TAIL = 16  # the sketch's most recent points, all kept
MIN_POINTS = 5  # fewer finite points: no forecast


class Forecast(NamedTuple):
    """The fitted curve at the horizon and the gain from the last point to it (in the metric's
    own direction: a positive gain is an improvement), each with a standard deviation."""

    level: float
    level_sd: float
    gain: float
    gain_sd: float


def fit(xs: Sequence[float], ys: Sequence[float], horizon: float, origin: float = 0.0,
        lower_is_better: bool = True) -> Optional[Forecast]:
    """Forecast the curve (xs, ys) at x = horizon (plateau.engine.curvefit has the ensemble);
    None when there is nothing to say."""
    # Imported here: numpy costs every sidecar 15 MB and 90 ms at start; only a spec with a
    # forecast ever fits.
    from plateau.engine.curvefit import fit_ensemble

    return fit_ensemble(xs, ys, horizon, origin, lower_is_better)


def sketch(points: tuple[float, ...], index: int, x: float, y: float) -> tuple[float, ...]:
    """Add the `index`-th point (x, y) to a flat (i0, x0, y0, i1, x1, y1, ...) summary of a curve
    in at most MAX_POINTS points: the last DENSE_TAIL points, and before them every stride-th
    point, the stride doubling as the curve grows, so the summary spans the whole curve evenly."""
    out = points + (float(index), x, y)
    if len(out) <= 3 * MAX_POINTS:
        return out
    stride = 2
    while index / stride > MAX_POINTS - DENSE_TAIL:
        stride *= 2
    tail = index - DENSE_TAIL
    return tuple(v for k in range(0, len(out), 3) if out[k] > tail or out[k] % stride == 0
                 for v in out[k:k + 3])


def normal_quantile(confidence: float) -> float:
    """z such that P(Z <= z) = confidence for a standard normal."""
    return NormalDist().inv_cdf(confidence)
