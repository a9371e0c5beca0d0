"""The baselines scores are relative to: the naive forecast (the last value) and the M4 competition's Naive2.

Naive2 follows the M4 competition's statistical benchmark code (``Benchmarks and Evaluation.R`` in the
Mcompetitions/M4-methods repository): the last value of the seasonally adjusted training part, times the seasonal
indices of the forecast steps; the series is adjusted (classical multiplicative decomposition) only when the 90%
autocorrelation test finds it seasonal. OWA (``seqcast.evaluation.scaled.owa``) is relative to it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

SEASONALITY_Z = 1.645  # the two-sided 90% normal critical value: the M4 code's tcrit


def naive_forecast(x: np.ndarray, horizon: int) -> np.ndarray:
    """Repeat the last input value: (n, steps, 1) -> (n, horizon)."""
    return np.repeat(x[:, -1, :1], horizon, axis=1)


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
    """Naive2 forecasts of every training part, shape (n_series, h), as :func:`naive2_one` gives them: the parts of
    one length at a time, as the rows of one array."""
    n = len(train)
    if n == 0:
        return np.empty((0, h))
    lengths = np.fromiter(map(len, train), dtype=np.int64, count=n)
    values = np.concatenate([np.asarray(x, dtype=np.float64) for x in train])
    starts = np.cumsum(lengths) - lengths
    forecasts = np.empty((n, h))
    for length in np.unique(lengths):
        rows = np.flatnonzero(lengths == length)
        forecasts[rows] = naive2_rows(values[starts[rows, None] + np.arange(length)], period, h)
    return forecasts


def naive2_rows(x: np.ndarray, period: int, h: int) -> np.ndarray:
    """:func:`naive2_one` of every row of ``x`` (n_series, n), all of one length: (n_series, h)."""
    m, n = x.shape
    if n == 0:
        raise ValueError("an empty training part has no last value: no Naive2 forecast")
    forecasts = np.repeat(x[:, -1:], h, axis=1)
    seasonal = seasonal_rows(x, period)
    if seasonal.any():
        xs = x[seasonal]
        indices = seasonal_indices_rows(xs, period)
        forecasts[seasonal] = (xs[:, -1] / indices[:, -1])[:, None] * indices[:, n - period:][:, np.arange(h) % period]
    return forecasts


def seasonal_rows(x: np.ndarray, period: int) -> np.ndarray:
    """:func:`seasonality_test` of every row of ``x`` (n_series, n): (n_series,) bool."""
    m, n = x.shape
    if period <= 1 or n < 3 * period or period > min(math.floor(10 * math.log10(n)), n - 1):
        return np.zeros(m, dtype=bool)
    centred = x - x.mean(axis=1, keepdims=True)
    denominator = np.einsum("ij,ij->i", centred, centred)
    constant = denominator == 0  # autocorrelation undefined: never seasonal
    safe = np.where(constant, 1.0, denominator)
    r = np.stack([np.einsum("ij,ij->i", centred[:, k:], centred[:, :n - k]) for k in range(1, period + 1)],
                 axis=1) / safe[:, None]  # (n_series, period): lags 1..period
    limit = SEASONALITY_Z * np.sqrt((1 + 2 * np.sum(r[:, :period - 1] ** 2, axis=1)) / n)
    return ~constant & (np.abs(r[:, period - 1]) > limit)


def seasonal_indices_rows(x: np.ndarray, period: int) -> np.ndarray:
    """:func:`seasonal_indices` of every row of ``x`` (n_series, n), each with two full periods: (n_series, n)."""
    m, n = x.shape
    weights = np.r_[0.5, np.ones(period - 1), 0.5] / period if period % 2 == 0 else np.ones(period) / period
    half = len(weights) // 2
    trend = np.full((m, n), np.nan)
    trend[:, half: n - half] = np.lib.stride_tricks.sliding_window_view(x, len(weights), axis=1) @ weights
    ratio = x / trend
    padded = np.concatenate([ratio, np.full((m, -n % period), np.nan)], axis=1).reshape(m, -1, period)
    figure = np.nanmean(padded, axis=1)  # (n_series, period)
    figure = figure / figure.mean(axis=1, keepdims=True)
    return figure[:, np.arange(n) % period]
