"""Point errors of forecasts in the series' own units or in percent: MSE, MAE, RMSE, sMAPE and MAPE.

Each formula is defined here once, over numpy arrays of one shape: ``*_steps`` functions return the error of every
element, the others the mean over ``axis`` (all elements by default). The per-series, per-step and subset means of
the scale-free scores are in ``seqcast.evaluation.aggregate``.

Scales: ``smape_steps`` is on 0-200 (the M competitions' sMAPE; utilsforecast's ``smape`` is the same ratio on 0-1,
without the factor 200), ``mape_steps`` on 0-100 (utilsforecast's ``mape`` is on 0-1).
"""

from __future__ import annotations

import numpy as np


def _pair(y: np.ndarray, yhat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y, dtype=np.float64)
    yhat = np.asarray(yhat, dtype=np.float64)
    if y.shape != yhat.shape:
        raise ValueError(f"expected actuals and forecasts of one shape, got {y.shape} and {yhat.shape}")
    return y, yhat


def mse(y: np.ndarray, yhat: np.ndarray, axis: int | None = None) -> np.ndarray | float:
    """Mean squared error over ``axis``."""
    y, yhat = _pair(y, yhat)
    return np.mean((yhat - y) ** 2, axis=axis)


def mae(y: np.ndarray, yhat: np.ndarray, axis: int | None = None) -> np.ndarray | float:
    """Mean absolute error over ``axis``."""
    y, yhat = _pair(y, yhat)
    return np.mean(np.abs(yhat - y), axis=axis)


def rmse(y: np.ndarray, yhat: np.ndarray, axis: int | None = None) -> np.ndarray | float:
    """Root mean squared error over ``axis``."""
    return np.sqrt(mse(y, yhat, axis))


def smape_steps(y: np.ndarray, yhat: np.ndarray) -> np.ndarray:
    """sMAPE of every element on the 0-200 scale: ``200 * |y - yhat| / (|y| + |yhat|)``, the shape of ``y``.

    An element where actual and forecast are both zero is an exact forecast and scores 0 (the formula gives 0/0).
    """
    y, yhat = _pair(y, yhat)
    denominator = np.abs(y) + np.abs(yhat)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.abs(y - yhat) / denominator
    return 200.0 * np.where(denominator == 0, 0.0, ratio)


def mape_steps(y: np.ndarray, yhat: np.ndarray) -> np.ndarray:
    """Absolute percentage error of every element on the 0-100 scale: ``100 * |y - yhat| / |y|``; NaN where the
    actual is zero, where the percentage is undefined."""
    y, yhat = _pair(y, yhat)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(y == 0, np.nan, 100.0 * np.abs(y - yhat) / np.abs(y))


def forecast_errors(y_true: np.ndarray, y_pred: np.ndarray) -> list[dict]:
    """Return MSE, MAE and RMSE rows over the whole horizon (horizon_step None) and per step.

    ``y_true`` and ``y_pred`` have shape (n_series, horizon). Per-step rows are only added when horizon > 1.
    """
    y_true, y_pred = _pair(y_true, y_pred)
    if y_true.ndim != 2:
        raise ValueError(f"expected two (n_series, horizon) arrays of one shape, got {y_true.shape} and {y_pred.shape}")
    rows = _rows(None, [mse(y_true, y_pred)], [mae(y_true, y_pred)], [rmse(y_true, y_pred)])
    if y_true.shape[1] > 1:
        rows += _rows(range(1, y_true.shape[1] + 1), mse(y_true, y_pred, 0), mae(y_true, y_pred, 0),
                      rmse(y_true, y_pred, 0))
    return rows


def _rows(steps, mses, maes, rmses) -> list[dict]:
    return [{"metric": metric, "horizon_step": step, "value": float(value)}
            for step, *values in zip(steps or [None], mses, maes, rmses)
            for metric, value in zip(("mse", "mae", "rmse"), values)]
