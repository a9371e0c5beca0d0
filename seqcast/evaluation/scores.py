"""Scale-free forecast scores of the M competitions: sMAPE, MASE, Naive2 and OWA.

Definitions follow the M4 competition's statistical benchmark code (``Benchmarks and Evaluation.R`` in the
Mcompetitions/M4-methods repository):

* sMAPE, on the 0-200 scale: ``200 * |y - yhat| / (|y| + |yhat|)`` per step, averaged over the steps of a
  series, then over series.
* MASE: ``|y - yhat|`` per step divided by the series' in-sample MAE of the seasonal naive forecast (lag
  ``period``; lag 1 when period is 1) on its training part, averaged over steps, then over series.
* Naive2: the last value of the seasonally adjusted training part, times the seasonal indices of the
  forecast steps; the series is adjusted (classical multiplicative decomposition) only when the 90%
  autocorrelation test finds it seasonal.
* OWA: the mean of sMAPE / sMAPE of Naive2 and MASE / MASE of Naive2, each an average over the whole subset.

Every M3 and M4 series of a subset shares one horizon, so the mean over series of per-series means equals the
mean over all (series, step) errors; ``Scores`` keeps the per-step arrays so either can be stored.

Arrays: ``y`` and ``yhat`` are (n_series, h); ``train`` is a list of n_series 1-D training parts.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

SEASONALITY_Z = 1.645  # the two-sided 90% normal critical value: the M4 code's tcrit


def _pair(y: np.ndarray, yhat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y, dtype=np.float64)
    yhat = np.asarray(yhat, dtype=np.float64)
    if y.shape != yhat.shape or y.ndim != 2:
        raise ValueError(f"expected two (n_series, h) arrays of one shape, got {y.shape} and {yhat.shape}")
    return y, yhat


# ---- sMAPE and MASE ---------------------------------------------------------------------------------------------

def smape_steps(y: np.ndarray, yhat: np.ndarray) -> np.ndarray:
    """sMAPE of every step on the 0-200 scale, shape (n_series, h).

    A step where actual and forecast are both zero is an exact forecast and scores 0 (the formula gives 0/0).
    """
    y, yhat = _pair(y, yhat)
    denominator = np.abs(y) + np.abs(yhat)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.abs(y - yhat) / denominator
    return 200.0 * np.where(denominator == 0, 0.0, ratio)


def mase_scale(train: Sequence[np.ndarray], period: int) -> np.ndarray:
    """Each series' in-sample MAE of the seasonal naive forecast on its training part, shape (n_series,).

    The lag is ``period`` (1 for non-seasonal data). Raises ValueError naming the series whose training part
    is no longer than the lag, or whose scale is zero (a training part that repeats itself exactly has no
    naive error to scale by).
    """
    lag = max(int(period), 1)
    scales = np.empty(len(train))
    short, flat = [], []
    for i, x in enumerate(train):
        x = np.asarray(x, dtype=np.float64)
        if len(x) <= lag:
            short.append(i)
            continue
        scales[i] = np.mean(np.abs(x[lag:] - x[:-lag]))
        if scales[i] == 0:
            flat.append(i)
    if short:
        raise ValueError(f"series {short[:10]} have no more than {lag} training values: no MASE scale at lag {lag}")
    if flat:
        raise ValueError(f"series {flat[:10]} have a zero MASE scale (seasonal naive fits their training part)")
    return scales


def mase_steps(y: np.ndarray, yhat: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Absolute error of every step over its series' ``mase_scale``, shape (n_series, h)."""
    y, yhat = _pair(y, yhat)
    scale = np.asarray(scale, dtype=np.float64)
    if scale.shape != (len(y),):
        raise ValueError(f"expected one scale per series, shape ({len(y)},), got {scale.shape}")
    return np.abs(y - yhat) / scale[:, None]


@dataclass(frozen=True)
class Scores:
    """sMAPE and MASE of one forecast of a subset, per (series, step); every view derives from these two."""

    smape_steps: np.ndarray  # (n_series, h)
    mase_steps: np.ndarray  # (n_series, h)

    @property
    def smape_per_series(self) -> np.ndarray:
        """(n_series,)"""
        return self.smape_steps.mean(axis=1)

    @property
    def mase_per_series(self) -> np.ndarray:
        """(n_series,)"""
        return self.mase_steps.mean(axis=1)

    @property
    def smape_per_step(self) -> np.ndarray:
        """(h,): the mean over series of each horizon step."""
        return self.smape_steps.mean(axis=0)

    @property
    def mase_per_step(self) -> np.ndarray:
        """(h,)"""
        return self.mase_steps.mean(axis=0)

    @property
    def smape(self) -> float:
        """The subset's sMAPE: mean over series of the per-series sMAPE."""
        return float(self.smape_per_series.mean())

    @property
    def mase(self) -> float:
        """The subset's MASE: mean over series of the per-series MASE."""
        return float(self.mase_per_series.mean())


def score(y: np.ndarray, yhat: np.ndarray, train: Sequence[np.ndarray], period: int) -> Scores:
    """sMAPE and MASE of forecasts ``yhat`` (n_series, h) of actuals ``y`` (n_series, h)."""
    if len(train) != len(y):
        raise ValueError(f"{len(train)} training parts for {len(y)} forecast rows")
    return Scores(smape_steps(y, yhat), mase_steps(y, yhat, mase_scale(train, period)))


def owa(scores: Scores, naive2: Scores) -> float:
    """Overall weighted average: mean of sMAPE / sMAPE_Naive2 and MASE / MASE_Naive2, on subset totals."""
    return 0.5 * (scores.smape / naive2.smape + scores.mase / naive2.mase)


# ---- seasonality test and classical decomposition ---------------------------------------------------------------

def acf(x: np.ndarray, max_lag: int) -> np.ndarray:
    """Sample autocorrelation at lags 1..max_lag, shape (max_lag,), as R's ``acf``: demeaned, divided by n.

    All NaN for a constant series, whose autocorrelation is undefined.
    """
    x = np.asarray(x, dtype=np.float64)
    centred = x - x.mean()
    denominator = float(centred @ centred)
    if denominator == 0:
        return np.full(max_lag, np.nan)
    return np.array([centred[k:] @ centred[: len(x) - k] / denominator for k in range(1, max_lag + 1)])


def seasonality_test(x: np.ndarray, period: int) -> bool:
    """Whether ``x`` is seasonal at ``period``: the M4 benchmarks' 90% autocorrelation test.

    Seasonal when ``|acf[period]| > 1.645 * sqrt((1 + 2 * sum(acf[1..period-1]^2)) / n)``. Never seasonal for
    period 1, for fewer than three full periods of data, for a constant series, or when ``period`` exceeds R's
    default ``acf`` lag range ``min(floor(10 * log10(n)), n - 1)``, where R's ACF has no value at that lag.
    """
    x = np.asarray(x, dtype=np.float64)
    n = len(x)
    if period <= 1 or n < 3 * period:
        return False
    if period > min(math.floor(10 * math.log10(n)), n - 1):
        return False
    r = acf(x, period)
    if np.isnan(r).any():
        return False
    limit = SEASONALITY_Z * math.sqrt((1 + 2 * float(np.sum(r[: period - 1] ** 2))) / n)
    return bool(abs(r[period - 1]) > limit)


def seasonal_indices(x: np.ndarray, period: int) -> np.ndarray:
    """Multiplicative seasonal index of every position of ``x``, shape (len(x),), as R's ``decompose``.

    The trend is the centred moving average over one period (weights 1/2, 1, ..., 1, 1/2 over period + 1 values
    for an even period); each position's index is the mean ratio x / trend over the positions that share its
    place in the cycle, counted from the first value, and the ``period`` indices are normalised to mean 1.
    Needs at least two full periods.
    """
    x = np.asarray(x, dtype=np.float64)
    n = len(x)
    if period < 2 or n < 2 * period:
        raise ValueError(f"a classical decomposition needs period >= 2 and two full periods; got period {period}, "
                         f"{n} values")
    weights = np.r_[0.5, np.ones(period - 1), 0.5] / period if period % 2 == 0 else np.ones(period) / period
    half = len(weights) // 2
    trend = np.full(n, np.nan)
    trend[half: n - half] = np.convolve(x, weights, mode="valid")  # symmetric weights: no flip needed
    ratio = x / trend
    padded = np.r_[ratio, np.full(-n % period, np.nan)].reshape(-1, period)
    figure = np.nanmean(padded, axis=0)
    figure = figure / figure.mean()
    return np.resize(figure, n)


def naive2_one(x: np.ndarray, period: int, h: int) -> np.ndarray:
    """Naive2 forecast of one training part ``x`` (1-D), shape (h,).

    When ``seasonality_test`` finds ``x`` seasonal: the last value of x divided by its seasonal index, times the
    indices of the next h positions (the last ``period`` indices, repeated). Otherwise: the last value of x.
    """
    x = np.asarray(x, dtype=np.float64)
    if seasonality_test(x, period):
        indices = seasonal_indices(x, period)
        return x[-1] / indices[-1] * np.resize(indices[-period:], h)
    return np.full(h, x[-1])


def naive2(train: Sequence[np.ndarray], period: int, h: int) -> np.ndarray:
    """Naive2 forecasts of every training part, shape (n_series, h)."""
    return np.stack([naive2_one(x, period, h) for x in train]) if len(train) else np.empty((0, h))
