"""Conformal intervals from backtest residuals: the quantile, calibration, honesty across cutoffs, scores, and the
path from a backtest to the forecasts table."""

from __future__ import annotations

import json
import math

import numpy as np
import pyarrow as pa
import pytest

from seqcast.app.cli import main as cli
from seqcast.evaluation.interval import coverage, msis
from seqcast.flows.forecast import forecast
from seqcast.forecasting.intervals import (
    MIN_SERIES_RESIDUALS,
    backtest_bounds,
    bounds,
    calibrate,
    check_levels,
    conformal_quantile,
)
from seqcast.reporting.plots import forecast_figure
from seqcast.reporting.report import forecast_bands
from tests.conftest import results_db, table_versions
from tests.series_files import daily_series, write

COLUMNS = ("--id-column", "store", "--time-column", "day", "--value-column", "sales")  # tests.series_files' names


def test_the_conformal_quantile_is_the_ceil_n_plus_1_level_th_smallest():
    scores = np.array([0.5, 0.1, np.nan, 0.4, 0.2, 0.3])  # n = 5 once the NaN (no scale) is left out
    assert conformal_quantile(scores, 50) == 0.3  # ceil(6 * 0.5) = 3rd smallest
    assert conformal_quantile(scores, 80) == 0.5  # ceil(6 * 0.8) = ceil(4.8) = 5th
    assert conformal_quantile(scores, 95) == math.inf  # ceil(6 * 0.95) = 6 > 5: too few scores for 95%
    assert conformal_quantile(np.arange(1.0, 20.0), 95) == 19.0  # ceil(20 * 0.95) = 19 exactly, not 20
    assert conformal_quantile(np.array([]), 80) == math.inf


@pytest.mark.parametrize("levels", [[0], [100], [-5], [80, float("nan")], []])
def test_levels_outside_0_100_are_refused(levels):
    with pytest.raises(ValueError, match="level"):
        check_levels(levels)
    assert check_levels([95, 80, 80.0]) == (80.0, 95.0)


def test_intervals_cover_fresh_draws_at_their_level_per_step_and_per_series():
    rng = np.random.default_rng(0)
    horizon, n_series, n_cutoffs = 3, 40, 50  # 50 scores per series and step: each series gets its own quantile
    ids = np.array([f"s{i:02d}" for i in range(n_series)])
    scales = rng.uniform(0.5, 20, n_series)  # the series' magnitudes differ; scaled errors do not
    # in scale units, errors grow with the step, and half the series are three times as noisy as the rest
    sigma = np.where(np.arange(n_series) < n_series // 2, 1.0, 3.0)[:, None] * np.array([1.0, 1.5, 2.0])

    def draw(n_draws):  # (n_draws, n_series, horizon) errors in original units
        return rng.normal(0, 1, (n_draws, n_series, horizon)) * sigma * scales[:, None]

    errors = draw(n_cutoffs)
    calibration = calibrate(np.broadcast_to(ids[None, :, None], errors.shape).ravel(),
                            np.broadcast_to(np.arange(1, horizon + 1), errors.shape).ravel(),
                            (np.abs(errors) / scales[:, None]).ravel(), horizon)
    assert set(calibration.own) == set(ids) and calibration.n_scores.tolist() == [n_series * n_cutoffs] * horizon

    forecasts = rng.normal(100, 10, (n_series, horizon))
    fresh = forecasts + draw(400)  # (400, n_series, horizon) actual values
    found = bounds(calibration, list(ids), forecasts, scales)
    for level in (80, 95):
        lo, hi = found[level]
        inside = (fresh >= lo) & (fresh <= hi)
        for noisy in (sigma[:, 0] == 1.0, sigma[:, 0] == 3.0):  # each half near its level: per-series quantiles
            assert 100 * inside[:, noisy].mean() == pytest.approx(level, abs=3)
        for s in range(horizon):  # and each step: per-step quantiles
            assert 100 * inside[:, :, s].mean() == pytest.approx(level, abs=3)
        assert np.all(hi - lo > 0) and np.allclose((lo + hi) / 2, forecasts)

    # with too few scores per series the pooled quantile serves every series: too wide for the calm half
    few = calibrate(np.broadcast_to(ids[None, :, None], errors.shape)[:5].ravel(),
                    np.broadcast_to(np.arange(1, horizon + 1), errors.shape)[:5].ravel(),
                    (np.abs(errors) / scales[:, None])[:5].ravel(), horizon)
    assert few.own == {} and 5 < MIN_SERIES_RESIDUALS
    lo, hi = bounds(few, list(ids), forecasts, scales)[80]
    assert ((fresh >= lo) & (fresh <= hi))[:, sigma[:, 0] == 1.0].mean() > 0.9


def test_msis_and_coverage_of_a_known_case():
    actual = np.array([10.0, 10.0, 10.0, 10.0])
    lo, hi = np.array([8.0, 11.0, 5.0, np.nan]), np.array([12.0, 13.0, 9.0, np.nan])  # the last: no interval
    scales = np.array([2.0, 2.0, 1.0, 1.0])
    # alpha = 0.2, 2 / alpha = 10: inside, width 4 / 2 = 2; below by 1: (2 + 10) / 2 = 6; above by 1: (4 + 10) / 1
    assert msis(actual, lo, hi, scales, 80) == pytest.approx((2 + 6 + 14) / 3)
    assert coverage(actual, lo, hi) == pytest.approx(100 / 3)


def backtest_case(seed: int = 1):
    """Four cutoffs of 30 series and 2 steps: rows in cutoff, series, step order."""
    rng = np.random.default_rng(seed)
    cutoffs, ids, steps = (a.ravel() for a in np.meshgrid(np.arange(4), np.arange(30).astype(str), [1, 2],
                                                          indexing="ij"))
    scales = rng.uniform(1, 3, len(ids))
    forecasts = rng.normal(50, 5, len(ids))
    actual = forecasts + rng.normal(0, 1, len(ids)) * scales
    return cutoffs, ids, steps, forecasts, scales, actual


def test_each_cutoff_is_calibrated_on_the_cutoffs_before_it_only():
    cutoffs, ids, steps, forecasts, scales, actual = backtest_case()
    found = backtest_bounds(cutoffs, ids, steps, forecasts, scales, np.abs(actual - forecasts) / scales, 2)
    for lo, hi in found.values():
        assert np.isnan(lo[cutoffs == 3]).all() and np.isnan(hi[cutoffs == 3]).all()  # the oldest: nothing before
        assert np.isfinite(lo[cutoffs < 3]).all() and np.isfinite(hi[cutoffs < 3]).all()

    # cutoff 0's intervals: forecast -/+ the quantile of cutoffs 1..3's scaled errors at the step, times its scale
    scores = np.abs(actual - forecasts) / scales
    for step in (1, 2):
        q = conformal_quantile(scores[(cutoffs > 0) & (steps == step)], 80)
        at = (cutoffs == 0) & (steps == step)
        np.testing.assert_allclose(found[80.0][1][at], forecasts[at] + q * scales[at])

    # changing cutoff 0's (the test split's) actual values changes no interval; changing cutoff 2's changes
    # cutoffs 0 and 1, never cutoff 2's own
    for changed_cutoff, unchanged in ((0, (0, 1, 2, 3)), (2, (2, 3))):
        other = actual.copy()
        other[cutoffs == changed_cutoff] += np.random.default_rng(9).normal(0, 5, (cutoffs == changed_cutoff).sum())
        again = backtest_bounds(cutoffs, ids, steps, forecasts, scales, np.abs(other - forecasts) / scales, 2)
        for level in found:
            for k in unchanged:
                np.testing.assert_array_equal(again[level][0][cutoffs == k], found[level][0][cutoffs == k])
        if changed_cutoff == 2:
            assert not np.array_equal(again[95.0][0][cutoffs == 0], found[95.0][0][cutoffs == 0])


def test_an_older_forecasts_table_reads_the_new_columns_as_null_and_gains_them(tmp_path):
    from deltalake import write_deltalake

    from seqcast.storage.results import Results
    from seqcast.storage.schemas import SCHEMAS

    results = Results(tmp_path)
    names = ["run_id", "model_run_id", "dataset_id", "series_id", "timestamp", "step", "value"]
    before_intervals = pa.schema([SCHEMAS["forecasts"].field(name) for name in names])
    write_deltalake(results.tables.uri("forecasts"), pa.Table.from_pylist(
        [{"run_id": "r1", "model_run_id": "m1", "dataset_id": "ds", "series_id": "s", "step": 1, "value": 2.0}],
        before_intervals))
    assert results.query("SELECT value, lo_80, hi_95, interval_run_id FROM forecasts")[1] == [(2.0, None, None, None)]
    results.record("r2", {"forecasts": [{"run_id": "r2", "series_id": "s", "step": 1, "value": 3.0, "lo_80": 1.0}]})
    assert results.query("SELECT run_id, lo_80 FROM forecasts ORDER BY 1")[1] == [("r1", None), ("r2", 1.0)]


# ---- the whole path ---------------------------------------------------------------------------------------------

def rows(home, sql: str, params=None):
    with results_db(home) as con:
        return con.execute(sql, params or []).fetchall()


def test_the_forecast_plot_shades_each_level_between_its_bounds():
    rng = np.random.default_rng(3)
    x, forecast = rng.normal(size=(2, 10)), rng.normal(size=(2, 4))
    bands = {80.0: (forecast - 1, forecast + 1), 95.0: (forecast - 2, forecast + 2)}
    fig = forecast_figure(x, forecast, "t", bands=bands, names=["a", "b"], share_y=False)
    future = np.arange(10, 14)
    for i, ax in enumerate(fig.axes):
        shaded = {c.get_gid(): c for c in ax.collections}
        assert list(shaded) == ["band-95", "band-80"]  # the widest first, so the narrower one shows on top of it
        for level, (lo, hi) in bands.items():
            corners = shaded[f"band-{level:g}"].get_paths()[0].vertices
            for bound in (lo[i], hi[i]):  # the polygon runs along the lower bound and back along the upper
                assert all(np.isclose(corners, [t, y]).all(axis=1).any() for t, y in zip(future, bound))
            assert corners[:, 1].min() == pytest.approx(lo[i].min())
            assert corners[:, 1].max() == pytest.approx(hi[i].max())
        assert ax.get_title() == "ab"[i]
    assert not forecast_figure(x, forecast, "t").axes[0].collections  # no intervals, no bands


def test_forecast_rows_give_the_plot_its_bounds():
    rows = [{"series_id": sid, "step": step, "value": 10.0 * k + step, "lo_80": 10.0 * k + step - 1 if k else None,
             "hi_80": 10.0 * k + step + 1 if k else None, "lo_95": None, "hi_95": None}
            for k, sid in enumerate(["s0", "s1"]) for step in (1, 2)]
    values, bands = forecast_bands(rows, ["s1", "s0"], 2)
    assert values.tolist() == [[11, 12], [1, 2]]
    assert bands[80.0][0][0].tolist() == [10, 11] and np.isnan(bands[80.0][0][1]).all()
    assert np.isnan(bands[95.0][0]).all()
    assert forecast_bands(rows[:2], ["s0"], 2)[1] is None  # no forecast with an interval: nothing to shade


def ingested(capsys, *argv: str) -> str:
    assert cli(["ingest", *argv]) == 0
    return next(line.split("--dataset-id ")[1] for line in capsys.readouterr().out.splitlines()
                if "--dataset-id" in line).strip()


@pytest.mark.usefixtures("prefect_harness")
def test_backtest_intervals_are_stored_scored_and_reach_predict(home, tmp_path, capsys):
    path = write(daily_series(n_series=20, days=70, seed=2), tmp_path / "daily.csv")
    dataset_id = ingested(capsys, str(path), *COLUMNS, "--n-steps", "14", "--horizon", "7", "--split",
                          "last-horizon")
    naive = forecast(variant="naive", dataset_id=dataset_id)

    # levels are checked before any work
    before = table_versions(home)
    for bad in ("0", "100"):
        assert cli(["backtest", "--dataset-id", dataset_id, "--variant", "stats_naive", "--level", bad]) == 2
        assert "levels: interval levels are percentages strictly between 0 and 100" in capsys.readouterr().err
    assert table_versions(home) == before

    # without a backtest, predict says how to get intervals and leaves them NULL
    assert cli(["predict", "--run-id", naive["run_id"]]) == 0
    assert f"seqcast backtest --dataset-id {dataset_id} --variant naive" in capsys.readouterr().err
    assert rows(home, "SELECT count(*), count(lo_80) FROM forecasts") == [(20 * 7, 0)]

    assert cli(["backtest", "--dataset-id", dataset_id, "--variant", "stats_naive", "--variant", "naive",
                "--windows", "4", "--level", "50", "--level", "80", "--level", "95"]) == 0
    assert "coverage_80" in capsys.readouterr().out
    runs = dict(rows(home, "SELECT variant, run_id FROM backtests"))
    assert json.loads(rows(home, "SELECT levels FROM backtests WHERE variant = 'naive'")[0][0]) == [50, 80, 95]

    # the oldest cutoff has no interval, every other forecast has both default levels around it
    counts = rows(home, "SELECT cutoff, count(*), count(lo_80), count(hi_95), count(*) FILTER (WHERE lo_95 < lo_80 "
                        "AND lo_80 < forecast AND forecast < hi_80 AND hi_80 < hi_95) FROM backtest_forecasts "
                        "WHERE run_id = ? GROUP BY cutoff ORDER BY cutoff", [runs["stats_naive"]])
    assert counts == [(0, 140, 140, 140, 140), (1, 140, 140, 140, 140), (2, 140, 140, 140, 140), (3, 140, 0, 0, 0)]
    assert rows(home, "SELECT level, count(lo) FROM backtest_intervals WHERE run_id = ? GROUP BY level ORDER BY "
                      "level", [runs["stats_naive"]]) == [(50.0, 420), (80.0, 420), (95.0, 420)]

    # backtest_scores' coverage and MSIS are the core's on the stored rows, and backtest_interval_scores agrees
    stored = rows(home, "SELECT cutoff, actual, lo_80, hi_80, lo_95, hi_95, scale FROM backtest_forecasts "
                        "WHERE run_id = ?", [runs["stats_naive"]])
    cutoff, actual, lo_80, hi_80, lo_95, hi_95, scale = (np.array(c, dtype=np.float64) for c in zip(*stored))
    scores = {c: row for c, *row in rows(home, "SELECT cutoff, coverage_80, msis_80, coverage_95, msis_95 FROM "
                                               "backtest_scores WHERE run_id = ?", [runs["stats_naive"]])}
    assert scores[3] == [None, None, None, None]
    for k in (0, 1, 2, None):
        at = np.isin(cutoff, [0, 1, 2] if k is None else [k])
        expected = [coverage(actual[at], lo_80[at], hi_80[at]), msis(actual[at], lo_80[at], hi_80[at], scale[at], 80),
                    coverage(actual[at], lo_95[at], hi_95[at]), msis(actual[at], lo_95[at], hi_95[at], scale[at], 95)]
        assert scores[k] == pytest.approx(expected)
    by_level = {level: (c, m) for level, c, m in rows(
        home, "SELECT level, coverage, msis FROM backtest_interval_scores WHERE run_id = ? AND cutoff IS NULL",
        [runs["stats_naive"]])}
    assert by_level[80.0] == pytest.approx(tuple(scores[None][:2]))
    assert by_level[95.0] == pytest.approx(tuple(scores[None][2:]))
    assert by_level[50.0][0] < by_level[80.0][0] <= by_level[95.0][0]

    # predict with the naive run now has intervals, calibrated on the naive backtest's cutoffs
    assert cli(["predict", "--run-id", naive["run_id"]]) == 0
    assert "no intervals" not in capsys.readouterr().err
    ((n, inside, source),) = rows(home, "SELECT count(*), count(*) FILTER (WHERE lo_95 < lo_80 AND lo_80 < value "
                                        "AND value < hi_80 AND hi_80 < hi_95), any_value(interval_run_id) FROM "
                                        "forecasts WHERE interval_run_id IS NOT NULL")
    assert (n, inside, source) == (140, 140, runs["naive"])

    # the UI shows them: the predict run's table artifact holds the stored bounds, its report the backtest's coverage
    # and the plot; the backtest's table artifact the coverage and MSIS of every cutoff
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    ((predict_run,),) = rows(home, "SELECT DISTINCT run_id FROM forecasts WHERE interval_run_id IS NOT NULL")
    backtest_flow_run = rows(home, "SELECT flow_run_id FROM backtests WHERE run_id = ?", [runs["naive"]])[0][0]
    with get_client(sync_client=True) as client:
        published = {a.key: a for a in client.read_artifacts(artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[predict_run, backtest_flow_run])))}
    table = json.loads(published["predict-naive-forecasts"].data)
    stored = {(r[0], r[1]): r[2:] for r in rows(home, "SELECT series_id, step, lo_95, lo_80, value, hi_80, hi_95 "
                                                      "FROM forecasts WHERE run_id = ?", [predict_run])}
    assert len(table) == 140 and {(r["series_id"], r["step"]): (r["lo_95"], r["lo_80"], r["value"], r["hi_80"],
                                                                r["hi_95"]) for r in table} == pytest.approx(stored)
    report = published["predict-naive-report"].data
    (overall,) = rows(home, "SELECT coverage_80, coverage_95 FROM backtest_scores WHERE run_id = ? AND cutoff IS NULL",
                      [runs["naive"]])
    assert runs["naive"] in report and "data:image/png;base64," in report
    assert f"| 80% | {overall[0]:.1f} |" in report and f"| 95% | {overall[1]:.1f} |" in report
    per_cutoff = {r["cutoff"]: r for r in json.loads(published["forecast-naive-backtest"].data)}
    for cutoff, coverage_80, msis_95 in rows(home, "SELECT coalesce(cutoff::VARCHAR, 'all'), coverage_80, msis_95 "
                                                   "FROM backtest_scores WHERE run_id = ?", [runs["naive"]]):
        key = cutoff if cutoff == "all" else int(cutoff)
        assert (per_cutoff[key].get("coverage_80"), per_cutoff[key].get("msis_95")) == \
            pytest.approx((coverage_80, msis_95))


def test_autoets_intervals_are_statsforecasts_own_at_each_level():
    from statsforecast.models import AutoETS

    from seqcast.models.stats import ets_intervals

    rng = np.random.default_rng(4)
    train = [50 + 5 * np.sin(np.arange(n) * np.pi / 6) + rng.normal(0, 1, n) for n in (40, 52)]
    mean, bands = ets_intervals(train, 12, 6, [80, 95])
    assert mean.shape == (2, 6) and set(bands) == {80.0, 95.0}
    own = AutoETS(season_length=12).forecast(y=train[1], h=6, level=[95])
    assert np.allclose(mean[1], own["mean"]) and np.allclose(bands[95.0][0][1], own["lo-95"])
    assert np.allclose(bands[95.0][1][1], own["hi-95"])
    assert (bands[95.0][0] < bands[80.0][0]).all() and (bands[80.0][0] < mean).all()
    assert (mean < bands[80.0][1]).all() and (bands[80.0][1] < bands[95.0][1]).all()
