"""Scores of prediction intervals: coverage and MSIS.

* Coverage: the percentage (0-100, comparable with the level) of actual values inside ``[lo, hi]``, bounds included.
* MSIS, the M4 competition's mean scaled interval score at level ``L`` percent, with ``alpha = 1 - L / 100``:
  ``(hi - lo + 2 / alpha * (lo - y) * [y < lo] + 2 / alpha * (y - hi) * [y > hi]) / scale`` averaged over the
  forecasts, ``scale`` being the series' MASE scale (``seqcast.evaluation.scaled``). Unscaled, the numerator is
  utilsforecast's ``winkler_score``.

Both are over the rows that have an interval (finite ``lo`` and ``hi``), MSIS also a scale: NaN when none has.
Arrays are flat rows (m,) of one forecast step each, or any shape the arguments share.
"""

from __future__ import annotations

import math

import numpy as np


def _arrays(*arrays) -> list[np.ndarray]:
    found = [np.asarray(a, dtype=np.float64) for a in arrays]
    if len({a.shape for a in found}) > 1:
        raise ValueError(f"expected arrays of one shape, got {', '.join(str(a.shape) for a in found)}")
    return found


def has_interval(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Whether each row has an interval: both bounds finite."""
    lo, hi = _arrays(lo, hi)
    return np.isfinite(lo) & np.isfinite(hi)


def inside(actual: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Whether each actual lies in ``[lo, hi]`` (False where a row has no interval; see :func:`has_interval`)."""
    actual, lo, hi = _arrays(actual, lo, hi)
    return (actual >= lo) & (actual <= hi)


def coverage(actual: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> float:
    """The percentage (0-100) of actual values inside ``[lo, hi]`` over the rows that have an interval."""
    has = has_interval(lo, hi)
    return float(100 * np.mean(inside(actual, lo, hi)[has])) if has.any() else math.nan


def scaled_interval_scores(actual: np.ndarray, lo: np.ndarray, hi: np.ndarray, scales: np.ndarray,
                           level: float) -> np.ndarray:
    """The scaled interval score of every row at ``level`` percent (MSIS before its mean); NaN where a row has no
    interval or no usable scale (missing, zero or not finite)."""
    actual, lo, hi, scales = _arrays(actual, lo, hi, scales)
    alpha = 1 - float(level) / 100
    usable = has_interval(lo, hi) & np.isfinite(scales) & (scales > 0)
    with np.errstate(invalid="ignore"):
        score = hi - lo + 2 / alpha * (lo - actual) * (actual < lo) + 2 / alpha * (actual - hi) * (actual > hi)
        return np.where(usable, score / np.where(usable, scales, 1.0), np.nan)


def msis(actual: np.ndarray, lo: np.ndarray, hi: np.ndarray, scales: np.ndarray, level: float) -> float:
    """M4's mean scaled interval score at ``level`` percent over the rows that have an interval and a scale."""
    scores = scaled_interval_scores(actual, lo, hi, scales, level)
    usable = np.isfinite(scores)
    return float(np.mean(scores[usable])) if usable.any() else math.nan
