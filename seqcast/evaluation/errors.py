"""Forecast errors, computed in numpy so every figure can be checked by hand."""

from __future__ import annotations

import numpy as np


def forecast_errors(y_true: np.ndarray, y_pred: np.ndarray) -> list[dict]:
    """Return MSE, MAE and RMSE rows over the whole horizon (horizon_step None) and per step.

    ``y_true`` and ``y_pred`` have shape (n_series, horizon). Per-step rows are only added when horizon > 1.
    """
    y_true = np.asarray(y_true, dtype=np.float64)
    y_pred = np.asarray(y_pred, dtype=np.float64)
    if y_true.shape != y_pred.shape or y_true.ndim != 2:
        raise ValueError(f"expected two (n_series, horizon) arrays of one shape, got {y_true.shape} and {y_pred.shape}")
    error = y_pred - y_true
    rows = _rows(error, None)
    if error.shape[1] > 1:
        for step in range(error.shape[1]):
            rows += _rows(error[:, step], step + 1)
    return rows


def _rows(error: np.ndarray, horizon_step: int | None) -> list[dict]:
    mse = float(np.mean(error**2))
    return [
        {"metric": "mse", "horizon_step": horizon_step, "value": mse},
        {"metric": "mae", "horizon_step": horizon_step, "value": float(np.mean(np.abs(error)))},
        {"metric": "rmse", "horizon_step": horizon_step, "value": float(np.sqrt(mse))},
    ]


def naive_forecast(x: np.ndarray, horizon: int) -> np.ndarray:
    """Repeat the last input value: (n, steps, 1) -> (n, horizon)."""
    return np.repeat(x[:, -1, :1], horizon, axis=1)
