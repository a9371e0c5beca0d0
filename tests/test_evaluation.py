"""Every score formula of ``seqcast.evaluation`` against an independent computation: utilsforecast's losses on
random long frames, published figures, and the SQL that computed the stored scores in the views before.

Fast: no Prefect, no TensorFlow.
"""

from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd
import pytest
from utilsforecast import losses

from seqcast.data import m3
from seqcast.evaluation import aggregate, baselines, interval, point, scaled
from seqcast.evaluation.backtest import backtest_scores, level_scores, summary
from seqcast.evaluation.holdout import split_scores
from seqcast.evaluation.m3_benchmark import OVERALL, leaderboard

N_SERIES, H, SEASON = 60, 7, 4


def ragged_histories(rng: np.random.Generator, n: int = N_SERIES) -> list[np.ndarray]:
    """Positive seasonal random walks of different lengths."""
    return [100 + np.cumsum(rng.normal(0, 3, length)) + 10 * np.sin(np.arange(length) * 2 * np.pi / SEASON)
            for length in rng.integers(SEASON + 3, 60, n)]


def long_frames(rng: np.random.Generator) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray, np.ndarray,
                                                   list[np.ndarray]]:
    """A test frame (unique_id, ds, y, model, model-lo-80, model-hi-80) and a train frame (unique_id, ds, y) in
    utilsforecast's long format, and the same actuals, forecasts (n_series, h) and histories as arrays."""
    train = ragged_histories(rng)
    y = np.stack([x[-1] + np.cumsum(rng.normal(0, 3, H)) for x in train])
    yhat = y + rng.normal(0, 4, y.shape)
    y[0, 0], yhat[0, 0] = 0.0, 0.0  # a step both zero: sMAPE's 0/0, which both score 0
    y[1, 1] = 0.0  # an actual of zero: MAPE undefined there
    width = rng.uniform(1, 8, y.shape)
    ids = np.repeat([f"s{i:02d}" for i in range(N_SERIES)], H)
    test = pd.DataFrame({"unique_id": ids, "ds": np.tile(np.arange(H), N_SERIES), "y": y.ravel(),
                         "model": yhat.ravel(), "model-lo-80": (yhat - width).ravel(),
                         "model-hi-80": (yhat + width).ravel()})
    train_frame = pd.DataFrame({"unique_id": np.repeat([f"s{i:02d}" for i in range(N_SERIES)], [len(x) for x in train]),
                                "ds": np.concatenate([np.arange(-len(x), 0) for x in train]),
                                "y": np.concatenate(train)})
    return test, train_frame, y, yhat, train


def per_id(frame: pd.DataFrame) -> np.ndarray:
    return frame.sort_values("unique_id")["model"].to_numpy()


@pytest.fixture(scope="module")
def frames():
    return long_frames(np.random.default_rng(29))


# ---- point errors ---------------------------------------------------------------------------------------------------

def test_point_errors_equal_utilsforecast_per_series(frames):
    test, _, y, yhat, _ = frames
    np.testing.assert_allclose(point.mse(y, yhat, axis=1), per_id(losses.mse(test, ["model"])), rtol=1e-12)
    np.testing.assert_allclose(point.mae(y, yhat, axis=1), per_id(losses.mae(test, ["model"])), rtol=1e-12)
    np.testing.assert_allclose(point.rmse(y, yhat, axis=1), per_id(losses.rmse(test, ["model"])), rtol=1e-12)
    # utilsforecast's smape is the same ratio on 0-1: ours is 200 times it
    smape = aggregate.per_series(point.smape_steps(y, yhat))
    np.testing.assert_allclose(smape, 200 * per_id(losses.smape(test, ["model"])), rtol=1e-12)
    assert smape[0] < 200 and point.smape_steps(y, yhat)[0, 0] == 0.0


def test_mape_equals_utilsforecast_times_100_where_defined(frames):
    test, _, y, yhat, _ = frames
    steps = point.mape_steps(y, yhat)
    assert np.isnan(steps[1, 1]) and np.isnan(steps[0, 0])  # actual zero: undefined, as utilsforecast's NaN
    theirs = per_id(losses.mape(test, ["model"]))
    # utilsforecast averages a series' steps skipping the undefined one, as aggregate.mean does
    np.testing.assert_allclose(aggregate.mean(steps, axis=1), 100 * theirs, rtol=1e-12)


def test_forecast_error_rows_are_the_point_errors_of_the_whole_horizon_and_each_step(frames):
    _, _, y, yhat, _ = frames
    rows = {(r["metric"], r["horizon_step"]): r["value"] for r in point.forecast_errors(y, yhat)}
    assert rows[("mse", None)] == pytest.approx(np.mean((y - yhat) ** 2), rel=1e-12)
    assert rows[("rmse", 3)] == pytest.approx(np.sqrt(np.mean((y[:, 2] - yhat[:, 2]) ** 2)), rel=1e-12)
    assert len(rows) == 3 * (H + 1)


# ---- scale-free errors -----------------------------------------------------------------------------------------------

def test_mase_equals_utilsforecast_with_its_train_frame_and_seasonality(frames):
    test, train_frame, y, yhat, train = frames
    ours = aggregate.per_series(scaled.mase_steps(y, yhat, scaled.mase_scale(train, SEASON)))
    theirs = per_id(losses.mase(test, ["model"], SEASON, train_frame))
    np.testing.assert_allclose(ours, theirs, rtol=1e-12)


def test_ragged_seasonal_naive_scales_equal_a_series_by_series_loop():
    rng = np.random.default_rng(3)
    histories = ragged_histories(rng, 200) + [np.array([5.0, 5.0, 5.0, 5.0, 5.0, 5.0]), np.array([1.0, 2.0])]
    periods = rng.choice([1, 4, 12], len(histories))
    expected = [np.mean(np.abs(x[p:] - x[:-p])) if len(x) > p else np.nan for x, p in zip(histories, periods)]
    expected = [e if e > 0 else np.nan for e in expected]  # a flat history: no scale
    np.testing.assert_allclose(scaled.seasonal_naive_scales(histories, periods), expected, rtol=1e-12)
    assert np.isnan(scaled.seasonal_naive_scales(histories[-2:], 2)).all()  # flat; no longer than the lag


def test_mase_scale_names_the_series_without_one():
    with pytest.raises(ValueError, match=r"series \[1\] have no more than 4 training values"):
        scaled.mase_scale([np.arange(10.0), np.arange(4.0)], 4)
    with pytest.raises(ValueError, match=r"series \[0\] have a zero MASE scale"):
        scaled.mase_scale([np.ones(10), np.arange(10.0)], 1)


def test_owa_reproduces_the_published_m4_table():
    """Makridakis, Spiliotis & Assimakopoulos (2018), The M4 Competition: Results, findings, conclusion and way
    forward, IJF 34(4), Table 4: sMAPE, MASE and OWA over all 100,000 series; Naive2 13.564 and 1.912."""
    published = {"Smyl": (11.374, 1.536, 0.821), "Montero-Manso et al.": (11.720, 1.551, 0.838),
                 "Theta": (12.309, 1.696, 0.897), "Comb": (12.555, 1.663, 0.898), "SES": (13.087, 1.885, 0.975)}
    smape, mase, expected = (np.array(column) for column in zip(*published.values()))
    # the inputs are rounded to three decimals, which moves OWA by up to about 3e-4
    np.testing.assert_allclose(scaled.owa(smape, mase, 13.564, 1.912), expected, atol=8e-4)
    assert scaled.owa(13.564, 1.912, 13.564, 1.912) == 1.0
    assert np.isnan(scaled.owa(1.0, 1.0, 0.0, 1.0))  # a Naive2 that is exact has no ratio: NULL when stored


def test_naive2_on_m3_yearly_and_other_reproduces_the_published_smape_and_utilsforecast():
    """M3's published Naive2 sMAPE, averaged over horizons (Makridakis & Hibon 2000): yearly 17.88 (h 1-6), other
    6.30 (h 1-8); both are non-seasonal (period 1), where Naive2 is the last value."""
    for subset, published in (("yearly", 17.88), ("other", 6.30)):
        data = m3.load_subset(subset)
        forecast = baselines.naive2(data.train, data.period, data.h)
        scores = aggregate.score(data.test, forecast, data.train, data.period)
        assert scores.smape == pytest.approx(published, abs=0.005)
        ids = np.repeat(np.arange(len(data)), data.h)
        test = pd.DataFrame({"unique_id": ids, "ds": np.tile(np.arange(data.h), len(data)),
                             "y": np.asarray(data.test, dtype=np.float64).ravel(), "model": forecast.ravel()})
        train = pd.DataFrame({"unique_id": np.repeat(np.arange(len(data)), [len(x) for x in data.train]),
                              "ds": np.concatenate([np.arange(len(x)) for x in data.train]),
                              "y": np.concatenate(data.train)})
        assert scores.mase == pytest.approx(losses.mase(test, ["model"], data.period, train)["model"].mean(),
                                            rel=1e-12)
        assert scores.smape == pytest.approx(200 * losses.smape(test, ["model"])["model"].mean(), rel=1e-12)


# ---- interval scores -------------------------------------------------------------------------------------------------

def test_coverage_and_msis_equal_utilsforecast_coverage_and_winkler_score_over_the_mase_scale(frames):
    test, train_frame, y, yhat, train = frames
    lo, hi = test["model-lo-80"].to_numpy().reshape(y.shape), test["model-hi-80"].to_numpy().reshape(y.shape)
    scales = scaled.mase_scale(train, SEASON)
    per_series_coverage = [interval.coverage(y[i], lo[i], hi[i]) for i in range(N_SERIES)]
    np.testing.assert_allclose(per_series_coverage, 100 * per_id(losses.coverage(test, ["model"], 80)), rtol=1e-12)
    # MSIS is the Winkler score over the MASE scale; utilsforecast's scale is its MAE over its MASE
    scale = per_id(losses.mae(test, ["model"])) / per_id(losses.mase(test, ["model"], SEASON, train_frame))
    msis = [interval.msis(y[i], lo[i], hi[i], np.full(H, scales[i]), 80) for i in range(N_SERIES)]
    np.testing.assert_allclose(msis, per_id(losses.winkler_score(test, ["model"], 80)) / scale, rtol=1e-10)
    # over all rows, as stored: every series has H rows, so the mean of the per-series figures
    assert interval.coverage(y.ravel(), lo.ravel(), hi.ravel()) == pytest.approx(np.mean(per_series_coverage))
    assert interval.msis(y, lo, hi, np.repeat(scales[:, None], H, axis=1), 80) == pytest.approx(np.mean(msis))


def test_interval_scores_leave_out_rows_without_an_interval_or_a_scale():
    actual, lo, hi = np.array([1.0, 5.0, 9.0]), np.array([0.0, np.nan, 10.0]), np.array([2.0, 6.0, 12.0])
    assert interval.coverage(actual, lo, hi) == 50.0  # the second row has no interval
    # alpha 0.2: row 3 lies 1 below its interval, (2 + 2 / 0.2 * 1) / 4 = 3; row 1 has no scale
    assert interval.msis(actual, lo, hi, np.array([np.nan, 1.0, 4.0]), 80) == pytest.approx(3.0)
    assert np.isnan(interval.coverage(actual, np.full(3, np.nan), hi))


# ---- aggregation and the stored scores against the SQL that computed them in the views ------------------------------

def backtest_rows(rng: np.random.Generator) -> tuple[list[dict], list[dict]]:
    """Scored backtest forecast rows and their interval rows (levels 50, 80, 95) over three cutoffs, the oldest
    without intervals, one series without a scale."""
    rows, intervals = [], []
    for cutoff in range(3):
        for s in range(12):
            scale = None if s == 5 else float(rng.uniform(0.5, 3))
            for step in range(1, 5):
                actual, forecast, naive2 = (float(v) for v in rng.normal(50, 5, 3))
                row = {"cutoff": cutoff, "series_id": f"s{s}", "step": step, "actual": actual, "forecast": forecast,
                       "naive2": naive2, "scale": scale,
                       "smape": float(point.smape_steps(np.array(actual), np.array(forecast))),
                       "naive2_smape": float(point.smape_steps(np.array(actual), np.array(naive2))),
                       "scaled_error": None if scale is None else abs(actual - forecast) / scale,
                       "naive2_scaled_error": None if scale is None else abs(actual - naive2) / scale}
                for level in (50.0, 80.0, 95.0):
                    half = None if cutoff == 2 or scale is None else float(rng.uniform(0, 10)) * level / 50
                    lo, hi = (None, None) if half is None else (forecast - half, forecast + half)
                    intervals.append({"cutoff": cutoff, "series_id": f"s{s}", "step": step, "level": level,
                                      "lo": lo, "hi": hi})
                    if level != 50.0:
                        row[f"lo_{level:g}"], row[f"hi_{level:g}"] = lo, hi
                rows.append(row)
    return rows, intervals


# the backtest_scores and backtest_interval_scores views before their scores were stored, verbatim
OLD_BACKTEST_SCORES = """
SELECT f.cutoff, avg(f.smape) AS smape, avg(f.scaled_error) AS mase,
       0.5 * (avg(f.smape) / nullif(avg(f.naive2_smape), 0)
              + avg(f.scaled_error) / nullif(avg(f.naive2_scaled_error), 0)) AS owa,
       count(DISTINCT f.series_id) AS n_series,
       100 * avg(CASE WHEN f.lo_80 IS NOT NULL THEN (f.actual BETWEEN f.lo_80 AND f.hi_80)::INTEGER END)
           AS coverage_80,
       avg((f.hi_80 - f.lo_80 + 2 / 0.2 * greatest(f.lo_80 - f.actual, 0)
            + 2 / 0.2 * greatest(f.actual - f.hi_80, 0)) / f.scale) AS msis_80,
       100 * avg(CASE WHEN f.lo_95 IS NOT NULL THEN (f.actual BETWEEN f.lo_95 AND f.hi_95)::INTEGER END)
           AS coverage_95,
       avg((f.hi_95 - f.lo_95 + 2 / 0.05 * greatest(f.lo_95 - f.actual, 0)
            + 2 / 0.05 * greatest(f.actual - f.hi_95, 0)) / f.scale) AS msis_95
FROM f GROUP BY GROUPING SETS ((f.cutoff), ())
"""
OLD_BACKTEST_INTERVAL_SCORES = """
SELECT i.cutoff, i.level, 100 * avg((f.actual BETWEEN i.lo AND i.hi)::INTEGER) AS coverage,
       avg((i.hi - i.lo + 2 / (1 - i.level / 100) * greatest(i.lo - f.actual, 0)
            + 2 / (1 - i.level / 100) * greatest(f.actual - i.hi, 0)) / f.scale) AS msis,
       count(*) AS n_forecasts
FROM i JOIN f USING (cutoff, series_id, step)
WHERE i.lo IS NOT NULL AND i.hi IS NOT NULL
GROUP BY GROUPING SETS ((i.cutoff, i.level), (i.level))
"""
OLD_SPLIT_SCORES = """
SELECT split, avg(smape) FILTER (WHERE predictor = 'model') AS smape,
       avg(mase) FILTER (WHERE predictor = 'model') AS mase,
       avg(smape) FILTER (WHERE predictor = 'naive2') AS naive2_smape,
       avg(mase) FILTER (WHERE predictor = 'naive2') AS naive2_mase,
       0.5 * (avg(smape) FILTER (WHERE predictor = 'model') / nullif(avg(smape) FILTER (WHERE predictor = 'naive2'), 0)
              + avg(mase) FILTER (WHERE predictor = 'model') / nullif(avg(mase) FILTER (WHERE predictor = 'naive2'), 0))
           AS owa,
       count(*) FILTER (WHERE predictor = 'model') AS n_series
FROM s GROUP BY split
"""


def old_sql(sql: str, **frames: pd.DataFrame) -> list[dict]:
    con = duckdb.connect()
    for name, frame in frames.items():
        con.register(name, frame)
    return con.execute(sql).df().replace({np.nan: None}).to_dict("records")


def keyed(rows: list[dict], *keys: str) -> dict:
    return {tuple(None if pd.isna(row[k]) else row[k] for k in keys): row for row in rows}


def assert_rows_equal(ours: dict, theirs: dict, columns: tuple[str, ...]) -> None:
    assert ours.keys() == theirs.keys()
    for key, row in ours.items():
        for column in columns:
            expected = theirs[key][column]
            assert (row[column] is None) == (expected is None), (key, column)
            if expected is not None:
                assert row[column] == pytest.approx(expected, rel=1e-12), (key, column)


def test_stored_backtest_scores_equal_what_the_views_computed():
    rows, intervals = backtest_rows(np.random.default_rng(8))
    frame = pd.DataFrame(rows)
    columns = ("smape", "mase", "owa", "n_series", "coverage_80", "msis_80", "coverage_95", "msis_95")
    ours, theirs = keyed(summary(rows, intervals), "cutoff"), keyed(old_sql(OLD_BACKTEST_SCORES, f=frame), "cutoff")
    assert_rows_equal(ours, theirs, columns)
    assert ours[(2,)]["coverage_80"] is None and ours[(None,)]["coverage_95"] is not None
    assert summary(rows, intervals)[0]["coverage_50"] is not None  # a chosen level beside the defaults

    ours = keyed(level_scores(rows, intervals), "cutoff", "level")
    theirs = keyed(old_sql(OLD_BACKTEST_INTERVAL_SCORES, f=frame, i=pd.DataFrame(intervals)), "cutoff", "level")
    assert_rows_equal(ours, theirs, ("coverage", "msis", "n_forecasts"))
    assert {key[1] for key in ours} == {50.0, 80.0, 95.0} and (2, 80.0) not in ours
    # both from one frame of the forecasts and one of the intervals, as the backtest flow scores them
    assert backtest_scores(rows, intervals) == (summary(rows, intervals), level_scores(rows, intervals))
    assert backtest_scores([], []) == ([], [])


def test_stored_split_scores_equal_what_the_view_computed():
    rng = np.random.default_rng(5)
    series_rows = [{"predictor": predictor, "split": split, "series_id": f"s{i}",
                    "smape": float(rng.uniform(0, 40)), "mase": None if i == 3 else float(rng.uniform(0.2, 3))}
                   for split in ("valid", "test") for predictor in ("model", "naive2") for i in range(25)]
    columns = ("smape", "mase", "naive2_smape", "naive2_mase", "owa", "n_series")
    assert_rows_equal(keyed(split_scores(series_rows), "split"),
                      keyed(old_sql(OLD_SPLIT_SCORES, s=pd.DataFrame(series_rows)), "split"), columns)


def test_the_overall_leaderboard_row_is_owa_of_the_means_over_every_scored_series():
    rng = np.random.default_rng(11)
    runs = [{"subset": subset, "variant": "v", "run_id": f"r-{subset}", "state": "Completed", "wall_s": 1.0}
            for subset in ("yearly", "monthly")]
    series = [{"run_id": run["run_id"], "predictor": predictor, "series_id": f"{run['subset']}-{i}",
               "smape": float(rng.uniform(0, 30)), "mase": None if i == 0 else float(rng.uniform(0.5, 2))}
              for run in runs for predictor in ("model", "naive2")
              for i in range(10 if run["subset"] == "yearly" else 30)]
    (overall,) = [row for row in leaderboard(runs, [], series) if row["subset"] == OVERALL]
    frame = pd.DataFrame(series).dropna()
    means = frame.groupby("predictor")[["smape", "mase"]].mean()
    assert overall["n_series"] == 38  # every series once, whichever subset; those without a scale left out
    assert overall["smape"] == pytest.approx(means.loc["model", "smape"], rel=1e-12)
    ratios = means.loc["model"] / means.loc["naive2"]
    assert overall["owa"] == pytest.approx(0.5 * (ratios["smape"] + ratios["mase"]), rel=1e-12)


def test_means_leave_out_missing_scores_as_sql_avg_does():
    steps = np.array([[1.0, np.nan], [3.0, 5.0]])
    np.testing.assert_array_equal(aggregate.per_step(steps), [2.0, 5.0])
    np.testing.assert_array_equal(aggregate.per_series(steps), [np.nan, 4.0])  # a series missing a step: none
    assert np.isnan(aggregate.mean(np.array([np.nan])))
    assert aggregate.subset_scores(np.array([10.0]), np.array([np.nan]), np.array([20.0]), np.array([np.nan])) == {
        "smape": 10.0, "mase": None, "naive2_smape": 20.0, "naive2_mase": None, "owa": None}
