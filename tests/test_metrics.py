"""Metrics against hand computations."""

import math

import numpy as np
import pytest

from seqcast.evaluation.baselines import naive_forecast
from seqcast.evaluation.point import forecast_errors


def by_key(rows):
    return {(r["metric"], r["horizon_step"]): r["value"] for r in rows}


def test_one_step_errors_by_hand():
    rows = by_key(forecast_errors(np.array([[1.0], [2.0], [3.0]]), np.array([[2.0], [2.0], [1.0]])))
    # errors 1, 0, -2
    assert rows == {("mse", None): pytest.approx(5 / 3), ("mae", None): pytest.approx(1.0),
                    ("rmse", None): pytest.approx(math.sqrt(5 / 3))}


def test_per_step_errors_by_hand():
    y_true = np.array([[0.0, 0.0], [0.0, 0.0]])
    y_pred = np.array([[1.0, 3.0], [-1.0, 1.0]])
    rows = by_key(forecast_errors(y_true, y_pred))
    assert rows[("mse", None)] == pytest.approx((1 + 9 + 1 + 1) / 4)
    assert rows[("mse", 1)] == pytest.approx(1.0)
    assert rows[("mse", 2)] == pytest.approx(5.0)
    assert rows[("mae", 2)] == pytest.approx(2.0)
    assert rows[("rmse", 2)] == pytest.approx(math.sqrt(5.0))
    assert len(rows) == 9


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="same shape|one shape"):
        forecast_errors(np.zeros((3, 2)), np.zeros((3, 1)))


def test_naive_forecast_repeats_last_value():
    x = np.arange(12, dtype=np.float32).reshape(2, 6, 1)
    assert np.array_equal(naive_forecast(x, 3), [[5, 5, 5], [11, 11, 11]])
