"""Scale-free errors of the M competitions: the MASE scale, scaled errors (MASE) and OWA.

Definitions follow the M4 competition's statistical benchmark code (``Benchmarks and Evaluation.R`` in the
Mcompetitions/M4-methods repository):

* MASE scale: a series' in-sample MAE of the seasonal naive forecast (lag ``period``; lag 1 when period is 1) on
  the history known before the forecast.
* MASE: ``|y - yhat|`` of every step over its series' scale, averaged over steps, then over series
  (``seqcast.evaluation.aggregate``).
* OWA: the mean of sMAPE / sMAPE of Naive2 and MASE / MASE of Naive2, each an average over the whole subset. Naive2
  is in ``seqcast.evaluation.baselines``.

Histories are ragged (one 1-D array per series, lengths differ); they are scored in one concatenated array with
each series' boundaries, as statsforecast holds its series, not series by series.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def seasonal_naive_scales(histories: Sequence[np.ndarray], periods: int | Sequence[int] | np.ndarray) -> np.ndarray:
    """Each series' in-sample MAE of the seasonal naive forecast, shape (n_series,): the mean of
    ``|x[t] - x[t - lag]|`` over its history, lag = its period (1 for period 1 or less).

    ``periods``: one for all series or one per series. NaN where a series has none: a history no longer than its
    lag, or a zero scale (a history the seasonal naive fits exactly has no naive error to scale by).
    """
    n = len(histories)
    lags = np.maximum(np.broadcast_to(np.asarray(periods, dtype=np.int64), (n,)), 1)
    lengths = np.fromiter((len(x) for x in histories), dtype=np.int64, count=n)
    if n == 0:
        return np.empty(0)
    values = np.concatenate([np.asarray(x, dtype=np.float64).ravel() for x in histories])
    starts = np.r_[0, np.cumsum(lengths)[:-1]]
    series = np.repeat(np.arange(n), lengths)
    position = np.arange(len(values)) - starts[series]  # each value's place in its own series
    lag = lags[series]
    has_lag = position >= lag
    at = np.flatnonzero(has_lag)
    steps = np.abs(values[at] - values[at - lag[at]])
    sums = np.bincount(series[at], weights=steps, minlength=n)
    counts = lengths - lags
    with np.errstate(invalid="ignore", divide="ignore"):
        scales = sums / counts
    return np.where((counts > 0) & (scales > 0), scales, np.nan)


def mase_scale(train: Sequence[np.ndarray], period: int) -> np.ndarray:
    """:func:`seasonal_naive_scales` of every training part at one period, shape (n_series,), where every series
    must have one.

    Raises ValueError naming the series whose training part is no longer than the lag, or whose scale is zero.
    """
    lag = max(int(period), 1)
    scales = seasonal_naive_scales(train, lag)
    lengths = np.fromiter((len(x) for x in train), dtype=np.int64, count=len(train))
    short = np.flatnonzero(lengths <= lag).tolist()
    if short:
        raise ValueError(f"series {short[:10]} have no more than {lag} training values: no MASE scale at lag {lag}")
    flat = np.flatnonzero(np.isnan(scales)).tolist()
    if flat:
        raise ValueError(f"series {flat[:10]} have a zero MASE scale (seasonal naive fits their training part)")
    return scales


def scaled_errors(y: np.ndarray, yhat: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """``|y - yhat| / scale`` of every element (MASE before its means); ``scale`` broadcasts against ``y``, e.g.
    (n_series, 1) against (n_series, h), or (m,) against flat rows. NaN where the scale is missing, zero or not
    finite."""
    y = np.asarray(y, dtype=np.float64)
    yhat = np.asarray(yhat, dtype=np.float64)
    scale = np.asarray(scale, dtype=np.float64)
    usable = np.where(np.isfinite(scale) & (scale > 0), scale, np.nan)
    return np.abs(y - yhat) / usable


def mase_steps(y: np.ndarray, yhat: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Scaled error of every step of (n_series, h) forecasts with one scale per series (n_series,)."""
    y = np.asarray(y, dtype=np.float64)
    scale = np.asarray(scale, dtype=np.float64)
    if y.ndim != 2 or scale.shape != (len(y),):
        raise ValueError(f"expected (n_series, h) actuals and one scale per series, got {y.shape} and {scale.shape}")
    return scaled_errors(y, yhat, scale[:, None])


def owa(smape: np.ndarray | float, mase: np.ndarray | float, naive2_smape: np.ndarray | float,
        naive2_mase: np.ndarray | float) -> np.ndarray | float:
    """Overall weighted average: ``(smape / naive2_smape + mase / naive2_mase) / 2``, each argument a subset's mean
    (or an array of them, element by element). NaN where a Naive2 mean is zero or missing."""
    smape, mase, naive2_smape, naive2_mase = (np.asarray(a, dtype=np.float64)
                                              for a in (smape, mase, naive2_smape, naive2_mase))
    with np.errstate(invalid="ignore", divide="ignore"):
        found = 0.5 * (smape / np.where(naive2_smape == 0, np.nan, naive2_smape)
                       + mase / np.where(naive2_mase == 0, np.nan, naive2_mase))
    return float(found) if found.ndim == 0 else found
