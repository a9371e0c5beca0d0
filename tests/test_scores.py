"""Scale-free scores, Naive2, the statistical baselines and the M3 loader, against hand computations and
published M3 figures."""

import math

import numpy as np
import pandas as pd
import pytest

from seqcast.data import m3

# ---- sMAPE and MASE by hand ---------------------------------------------------------------------------------------
from seqcast.evaluation import aggregate, baselines, point, scaled

# ---- sMAPE and MASE by hand ---------------------------------------------------------------------------------------
from seqcast.models import stats

# ---- sMAPE and MASE by hand ---------------------------------------------------------------------------------------


def test_smape_by_hand():
    y = np.array([[100.0, 200.0], [50.0, 50.0]])
    yhat = np.array([[110.0, 180.0], [50.0, 25.0]])
    # series 0: 200*10/210 and 200*20/380; series 1: 0 and 200*25/75
    expected_steps = np.array([[2000 / 210, 4000 / 380], [0.0, 5000 / 75]])
    result = aggregate.score(y, yhat, [np.array([1.0, 2.0]), np.array([1.0, 3.0])], period=1)
    np.testing.assert_allclose(result.smape_steps, expected_steps)
    np.testing.assert_allclose(result.smape_per_series, [(2000 / 210 + 4000 / 380) / 2, 5000 / 150])
    np.testing.assert_allclose(result.smape_per_step, [2000 / 420, (4000 / 380 + 5000 / 75) / 2])
    assert result.smape == pytest.approx(((2000 / 210 + 4000 / 380) / 2 + 5000 / 150) / 2)


def test_smape_of_zero_actual_and_forecast_is_zero():
    assert point.smape_steps(np.array([[0.0, 1.0]]), np.array([[0.0, -1.0]])).tolist() == [[0.0, 200.0]]


def test_mase_by_hand():
    # series 0, period 1: in-sample naive errors 2, 1, 3 -> scale 2; forecast errors 1, 2 -> MASE (0.5 + 1) / 2
    # series 1: the same scale 2 from 10, 12, 13, 10; forecast errors 4, 0 -> MASE (2 + 0) / 2
    train = [np.array([1.0, 3.0, 2.0, 5.0]), np.array([10.0, 12.0, 13.0, 10.0])]
    y = np.array([[6.0, 6.0], [20.0, 20.0]])
    yhat = np.array([[5.0, 8.0], [16.0, 20.0]])
    result = aggregate.score(y, yhat, train, period=1)
    np.testing.assert_allclose(scaled.mase_scale(train, 1), [2.0, 2.0])
    np.testing.assert_allclose(result.mase_steps, [[0.5, 1.0], [2.0, 0.0]])
    np.testing.assert_allclose(result.mase_per_series, [0.75, 1.0])
    np.testing.assert_allclose(result.mase_per_step, [1.25, 0.5])
    assert result.mase == pytest.approx(0.875)


def test_mase_scale_uses_the_seasonal_lag():
    # lag 2: |3-1|, |5-2|, |4-3|, |6-5| -> 7/4
    assert scaled.mase_scale([np.array([1.0, 2.0, 3.0, 5.0, 4.0, 6.0])], 2).tolist() == [1.75]


def test_mase_scale_refuses_short_and_flat_training_parts():
    with pytest.raises(ValueError, match="no more than 4 training values"):
        scaled.mase_scale([np.arange(10.0), np.arange(4.0)], 4)
    with pytest.raises(ValueError, match="zero MASE scale"):
        scaled.mase_scale([np.ones(5)], 1)


def test_shapes_must_match():
    with pytest.raises(ValueError, match="one shape"):
        point.smape_steps(np.zeros((2, 3)), np.zeros((2, 2)))


# ---- seasonality test, decomposition, Naive2 ------------------------------------------------------------------------

def seasonal_series(n: int, period: int = 12, level: float = 100.0) -> np.ndarray:
    """A positive series that repeats exactly every ``period`` steps."""
    return level + 30.0 * np.sin(2 * np.pi * np.arange(n) / period) + 10.0 * np.cos(4 * np.pi * np.arange(n) / period)


def test_acf_by_hand():
    # x - mean = -1, 0, 1: lag 1 sums (-1*0 + 0*1) = 0, lag 2 sums -1*1 = -1, over 2
    np.testing.assert_allclose(baselines.acf(np.array([1.0, 2.0, 3.0]), 2), [0.0, -0.5])


def test_seasonality_test_finds_a_seasonal_series_and_not_white_noise():
    rng = np.random.default_rng(0)
    assert baselines.seasonality_test(seasonal_series(72) + rng.normal(0, 1, 72), 12)
    assert not baselines.seasonality_test(100 + rng.normal(0, 1, 72), 12)


def test_seasonality_test_needs_three_periods_and_a_period_above_one():
    # a one-month spike: little autocorrelation below lag 12, so three periods suffice
    spikes = 100.0 + 50.0 * (np.arange(48) % 12 == 0)
    assert not baselines.seasonality_test(spikes[:35], 12)  # 35 < 3 * 12
    assert baselines.seasonality_test(spikes[:36], 12)
    assert not baselines.seasonality_test(spikes[:36], 1)
    assert not baselines.seasonality_test(np.full(48, 5.0), 12)  # constant: no autocorrelation


def test_seasonal_indices_of_an_exactly_periodic_series():
    # the centred moving average of an exactly periodic series is its mean, so each index is value / mean
    x = seasonal_series(40)
    indices = baselines.seasonal_indices(x, 12)
    np.testing.assert_allclose(indices, x / x[:12].mean())


def test_naive2_continues_an_exactly_periodic_series():
    x = seasonal_series(50)  # not a whole number of periods: the indices must keep their phase
    forecast = baselines.naive2([x[:41]], 12, 9)
    np.testing.assert_allclose(forecast, [x[41:]])


def test_naive2_equals_naive_on_a_non_seasonal_series():
    rng = np.random.default_rng(1)
    x = 50 + np.cumsum(rng.normal(0, 1, 60))
    assert not baselines.seasonality_test(x, 12)
    np.testing.assert_array_equal(baselines.naive2([x], 12, 18), stats.naive([x], 12, 18))
    np.testing.assert_array_equal(baselines.naive2([x], 1, 6), np.full((1, 6), x[-1]))


def test_owa_of_naive2_itself_is_exactly_one():
    data = m3.load_subset("quarterly")
    naive2 = aggregate.score(data.test, baselines.naive2(data.train, data.period, data.h), data.train, data.period)
    assert naive2.owa(naive2) == 1.0


def test_owa_by_hand():
    def flat(smape, mase):
        return aggregate.Scores(np.full((1, 2), smape), np.full((1, 2), mase))

    assert flat(10.0, 1.5).owa(flat(20.0, 1.0)) == pytest.approx((0.5 + 1.5) / 2)


# ---- baselines ------------------------------------------------------------------------------------------------------

def test_naive_and_seasonal_naive_by_hand():
    train = [np.array([1.0, 2.0, 3.0, 4.0, 5.0]), np.array([9.0, 8.0, 7.0, 6.0])]
    assert stats.forecast_stats("naive", train, 2, 3).tolist() == [[5.0, 5.0, 5.0], [6.0, 6.0, 6.0]]
    assert stats.forecast_stats("seasonal_naive", train, 2, 3).tolist() == [[4.0, 5.0, 4.0], [7.0, 6.0, 7.0]]
    assert stats.forecast_stats("seasonal_naive", train, 1, 2).tolist() == [[5.0, 5.0], [6.0, 6.0]]


def test_unknown_method_lists_the_valid_ones():
    with pytest.raises(ValueError, match="naive, seasonal_naive, naive2, theta, ets"):
        stats.forecast_stats("arima", [np.ones(5)], 1, 2)


# ---- M3 ------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("subset, n_series, h, period, freq", [
    ("yearly", 645, 6, 1, "YS-JAN"), ("quarterly", 756, 8, 4, "QS-OCT"),
    ("monthly", 1428, 18, 12, "MS"), ("other", 174, 8, 1, "D"),
])
def test_m3_subsets(subset, n_series, h, period, freq):
    data = m3.load_subset(subset)
    assert (len(data), data.h, data.period, data.test.shape) == (n_series, h, period, (n_series, h))
    meta = data.metadata()
    assert meta["n_total"].tolist() == [len(x) + h for x in data.train]
    frame = m3.long_frame(data)
    assert list(frame.columns) == ["series_id", "timestamp", "value"]
    assert len(frame) == meta["n_total"].sum()
    first = frame[frame["series_id"] == data.series_ids[0]]
    assert first["timestamp"].iloc[0] == pd.Timestamp("1970-01-01")
    assert pd.infer_freq(pd.DatetimeIndex(first["timestamp"])) == freq
    # the last-horizon split of the whole series gives back the competition's holdout as its test part
    train, valid, test = m3.split_last_horizon(first["value"].to_numpy(), h)
    np.testing.assert_array_equal(test, data.test[0])
    np.testing.assert_array_equal(np.r_[train, valid], data.train[0])


def test_m3_long_frame_passes_ingest_validation():
    from seqcast.data.ingest import IngestParams, validate_series

    frame = m3.load_long("other")
    params = IngestParams(source="m3-other.parquet", n_steps=8, horizon=8)
    found = validate_series(frame.assign(row=np.arange(1, len(frame) + 1)), params, min_length=16)
    assert len(found) == 174 and {s.freq for s in found} == {"D"}


def test_last_horizon_split_needs_a_training_part():
    assert m3.last_horizon_bounds(10, 3) == [(0, 4), (4, 7), (7, 10)]
    with pytest.raises(ValueError, match="no training part"):
        m3.last_horizon_bounds(6, 3)


def test_unknown_subset():
    with pytest.raises(ValueError, match="yearly, quarterly, monthly, other"):
        m3.load_subset("weekly")


def test_m3_monthly_reproduces_published_theta_and_naive():
    """statsforecast's Theta on M3 monthly: sMAPE 13.83 (published M3 Theta: 13.85), MASE 0.861; naive 18.18."""
    data = m3.load_subset("monthly")
    theta = aggregate.score(data.test, stats.forecast_stats("theta", data.train, data.period, data.h), data.train,
                         data.period)
    assert theta.smape == pytest.approx(13.83, abs=0.05)
    assert theta.mase == pytest.approx(0.861, abs=0.002)
    naive = aggregate.score(data.test, stats.forecast_stats("naive", data.train, data.period, data.h), data.train,
                         data.period)
    assert naive.smape == pytest.approx(18.18, abs=0.01)
    assert math.isfinite(naive.mase)


def test_core_modules_import_no_orchestration_or_storage():
    import subprocess
    import sys
    from pathlib import Path

    code = ("import sys; import seqcast.data.m3, seqcast.evaluation.aggregate, seqcast.models.stats; "
            "print(sorted(m for m in ('prefect', 'storage', 'tasks', 'flows') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parent.parent).stdout
    assert out.strip() == "[]"
