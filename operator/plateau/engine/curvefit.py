"""The forecast's ensemble of learning-curve families, fitted with numpy. Pure.

Each family is y = a + b·g(t) with the shape g fixed from a small grid, so each fit is a
closed-form weighted least squares; plateau.engine.forecast has the method and the bounds.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np

from plateau.engine.forecast import MAX_POINTS, MIN_POINTS, Forecast

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


def _shapes(u: np.ndarray) -> np.ndarray:
    """g(u) of every member at the positions u > 0 (rows: members)."""
    return np.vstack([u[None, :] ** -_POWERS[:, None],
                      np.exp(-_RATES[:, None] * u[None, :]),
                      -np.log(u)[None, :]])


def fit_ensemble(xs: Sequence[float], ys: Sequence[float], horizon: float, origin: float = 0.0,
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
