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

import math
from statistics import NormalDist
from typing import NamedTuple, Optional, Sequence

import numpy as np

# The most points a fit uses, and the sketch's size: early points thinned, recent ones dense.
MAX_POINTS = 48
DENSE_TAIL = 16  # the sketch's most recent points, all kept
MIN_POINTS = 5  # fewer finite points: no forecast
HUBER_K = 1.345  # the usual 95%-efficiency Huber constant
IRLS_PASSES = 3
# Akaike weights over at most this many effective points: with more, the best member would take
# all the weight on tiny RSS differences, and the spread between members would vanish.
WEIGHT_POINTS = 4.0
# Fits closer than this (a share of the curve's range, per point) are equally good: on a smooth
# curve the best grid member would otherwise take all the weight, and the spread would vanish.
RESOLUTION = 3e-3
# Residuals of a learning curve are autocorrelated (smoothing, data order): the i.i.d. parameter
# variance is too small by about this factor.
VARIANCE_INFLATION = 4.0

_POWERS = np.array([0.1, 0.2, 0.35, 0.5, 0.7, 1.0, 1.5, 2.0, 3.0])
_RATES = np.array([0.5, 1.0, 2.0, 3.5, 6.0, 10.0])  # per unit of the observed span


class Forecast(NamedTuple):
    """The fitted curve at the horizon and the gain from the last point to it (in the metric's
    own direction: a positive gain is an improvement), each with a standard deviation."""

    level: float
    level_sd: float
    gain: float
    gain_sd: float


def _shapes(u: np.ndarray) -> np.ndarray:
    """g(u) of every member at the positions u > 0 (rows: members)."""
    return np.vstack([u[None, :] ** -_POWERS[:, None],
                      np.exp(-_RATES[:, None] * u[None, :]),
                      -np.log(u)[None, :]])


def fit(xs: Sequence[float], ys: Sequence[float], horizon: float, origin: float = 0.0,
        lower_is_better: bool = True) -> Optional[Forecast]:
    """Forecast the curve (xs, ys) at x = horizon; x counts from `origin` (the step the current
    regime began: 0, or the last learning-rate drop; points at or before it are not used). None when there is nothing to say."""
    x = np.asarray(xs, dtype=float)[-MAX_POINTS:]
    y = np.asarray(ys, dtype=float)[-MAX_POINTS:]
    if x.shape != y.shape or not math.isfinite(horizon) or not math.isfinite(origin):
        return None
    keep = np.isfinite(x) & np.isfinite(y) & (x > origin)  # t = x - origin > 0: t^-c is defined
    x, y = x[keep], y[keep]
    if len(x) < MIN_POINTS:
        return None
    last = float(x.max())
    if horizon <= last or last <= float(x.min()):
        return None  # the horizon is reached, or all points share one step
    sign = 1.0 if lower_is_better else -1.0
    centre = float(np.median(y))
    scale = float(np.max(np.abs(y - centre)))
    if scale == 0.0:  # a constant series: nothing more to come
        return Forecast(float(y[-1]), 0.0, 0.0, 0.0)
    z = sign * (y - centre) / scale  # lower is better, order 1
    span = last - origin
    u = (x - origin) / span  # in (0, 1], 1 at the last point
    g = _shapes(u)
    ends = _shapes(np.array([1.0, (horizon - origin) / span]))
    recency = 0.5 + 0.5 * u  # recent points count more: the extrapolation starts there
    weights = np.broadcast_to(recency, g.shape).copy()
    for _ in range(IRLS_PASSES + 1):
        a, b, det, sw, sg, sgg = _weighted_line(g, z, weights)
        resid = z[None, :] - a[:, None] - b[:, None] * g
        mad = np.median(np.abs(resid), axis=1) * 1.4826
        s = np.maximum(mad, 1e-9)
        huber = np.minimum(1.0, HUBER_K * s[:, None] / np.maximum(np.abs(resid), 1e-300))
        weights = recency[None, :] * huber
    n = len(z)
    rss = np.sum(weights * resid**2, axis=1) / np.mean(weights, axis=1)
    sigma2 = VARIANCE_INFLATION * rss / max(n - 2, 1)
    eff = min(float(n), WEIGHT_POINTS)
    log_rss = np.log(rss + n * RESOLUTION**2)
    pi = np.exp(-0.5 * eff * (log_rss - log_rss.min()))
    pi /= pi.sum()
    now, at = ends[:, 0], ends[:, 1]
    level = a + b * at
    gain = b * (now - at)
    # Var of x^T (a, b) for x = (1, g): the inverse of the weighted normal matrix (scaled so that
    # the weights average 1, as sigma2 assumes).
    norm = sw / n
    level_var = sigma2 * (sgg - 2 * at * sg + at**2 * sw) / det * norm
    gain_var = sigma2 * (now - at) ** 2 * sw / det * norm
    level_mean, gain_mean = float(pi @ level), float(pi @ gain)
    level_sd = math.sqrt(max(float(pi @ (level_var + (level - level_mean) ** 2)), 0.0))
    gain_sd = math.sqrt(max(float(pi @ (gain_var + (gain - gain_mean) ** 2)), 0.0))
    out = Forecast(centre + sign * scale * level_mean, scale * level_sd, scale * gain_mean, scale * gain_sd)
    return out if all(math.isfinite(v) for v in out) else None


def _weighted_line(g: np.ndarray, z: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, ...]:
    """Weighted least squares of z = a + b·g per member, in closed form."""
    sw = w.sum(axis=1)
    sg = (w * g).sum(axis=1)
    sz = (w * z).sum(axis=1)
    sgg = (w * g * g).sum(axis=1)
    sgz = (w * g * z).sum(axis=1)
    det = np.maximum(sw * sgg - sg * sg, 1e-300)
    b = (sw * sgz - sg * sz) / det
    a = (sz - b * sg) / sw
    return a, b, det, sw, sg, sgg


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
