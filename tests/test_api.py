"""seqcast as a library: data frames in Nixtla's long format in, the ecosystem's layouts out, every call a flow run."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import seqcast
from seqcast.app.cli import main as cli
from seqcast.data import m3

pytestmark = pytest.mark.usefixtures("prefect_harness")


@pytest.fixture(scope="module")
def monthly() -> pd.DataFrame:
    """40 M3 monthly series in the long format of Nixtla's libraries (``unique_id, ds, y``)."""
    frame = m3.load_long("monthly")
    chosen = sorted(frame["series_id"].unique())[:40]
    frame = frame[frame["series_id"].isin(chosen)]
    return frame.rename(columns={"series_id": "unique_id", "timestamp": "ds", "value": "y"}).reset_index(drop=True)


def recorded(sql: str, params: list) -> pd.DataFrame:
    from seqcast.storage.home import current_store

    return current_store().results.frame(sql, params)


def test_cross_validation_feeds_utilsforecast_evaluate_with_the_scores_seqcast_recorded(home, monthly):
    from utilsforecast.evaluation import evaluate
    from utilsforecast.losses import smape

    cv = seqcast.cross_validation(monthly, ["stats_theta", "stats_naive2"], h=6, n_windows=3, level=[80])
    assert list(cv.columns[:4]) == ["unique_id", "ds", "cutoff", "y"]
    assert {"stats_theta", "stats_naive2", "stats_theta-lo-80", "stats_theta-hi-80"} <= set(cv.columns)
    assert len(cv) == 40 * 6 * 3 and (cv.groupby("unique_id")["cutoff"].nunique() == 3).all()
    # every forecast step lies after its cutoff, within h months of it
    months = (cv["ds"].dt.year - cv["cutoff"].dt.year) * 12 + cv["ds"].dt.month - cv["cutoff"].dt.month
    assert months.between(1, 6).all()
    # the values are the series' own at those timestamps
    joined = cv.merge(monthly, on=["unique_id", "ds"], suffixes=("", "_input"))
    assert len(joined) == len(cv) and np.allclose(joined["y"], joined["y_input"])

    scores = evaluate(cv.drop(columns=[c for c in cv.columns if "-lo-" in c or "-hi-" in c]), metrics=[smape],
                      models=["stats_theta", "stats_naive2"])
    # M3's series end in different months, so cutoffs are per series: 0 is each one's latest, as seqcast numbers them
    scores["index"] = scores.groupby("unique_id")["cutoff"].rank(method="dense", ascending=False).astype(int) - 1
    by_cutoff = scores.groupby("index")[["stats_theta", "stats_naive2"]].mean()
    stored = recorded("SELECT variant, cutoff, smape FROM backtest_scores WHERE cutoff IS NOT NULL", [])
    for variant in ("stats_theta", "stats_naive2"):
        mine = stored[stored["variant"] == variant].sort_values("cutoff")["smape"].to_numpy()
        theirs = by_cutoff.sort_index()[variant].to_numpy()
        np.testing.assert_allclose(mine, 200 * theirs, rtol=1e-9)  # seqcast's sMAPE is on 0-200, theirs on 0-1
    # the earliest cutoff has no earlier one to calibrate on; the later ones have intervals around the forecast
    earliest = cv["cutoff"] == cv.groupby("unique_id")["cutoff"].transform("min")
    assert cv.loc[earliest, "stats_theta-lo-80"].isna().all()
    later = cv[~earliest]
    assert (later["stats_theta-lo-80"] <= later["stats_theta"]).all()
    assert (later["stats_theta"] <= later["stats_theta-hi-80"]).all()


def test_forecast_of_a_polars_frame_equals_the_pandas_result(home, monthly):
    polars = pytest.importorskip("polars")
    few = monthly[monthly["unique_id"].isin(sorted(monthly["unique_id"].unique())[:12])]
    from_pandas = seqcast.forecast(few, "stats_theta", h=6)
    from_polars = seqcast.forecast(polars.from_pandas(few), "stats_theta", h=6)
    assert list(from_pandas.columns) == ["unique_id", "ds", "stats_theta"]
    assert len(from_pandas) == 12 * 6
    pd.testing.assert_frame_equal(from_pandas, from_polars)
    # the forecasts start the month after each series' last value
    last = few.groupby("unique_id")["ds"].max().rename("last")
    first = from_pandas.groupby("unique_id")["ds"].min().to_frame().join(last)
    assert (first["ds"] == first["last"] + pd.offsets.MonthBegin(1)).all()


def test_stats_theta_agrees_with_statsforecast_theta_on_m3_monthly(home, monthly):
    from statsforecast import StatsForecast
    from statsforecast.models import Theta

    ours = seqcast.forecast(monthly, "stats_theta", h=18)
    theirs = StatsForecast(models=[Theta(season_length=12)], freq="MS").forecast(df=monthly, h=18)
    both = ours.merge(theirs, on=["unique_id", "ds"], how="outer")
    assert len(both) == 40 * 18
    np.testing.assert_allclose(both["stats_theta"], both["Theta"], rtol=1e-6)


def test_forecast_with_intervals_calibrates_them_on_a_backtest(home, monthly):
    few = monthly[monthly["unique_id"].isin(sorted(monthly["unique_id"].unique())[:10])]
    fc = seqcast.forecast(few, ["stats_naive2"], h=6, level=[80, 95], n_windows=3)
    assert list(fc.columns) == ["unique_id", "ds", "stats_naive2", "stats_naive2-lo-80", "stats_naive2-hi-80",
                                "stats_naive2-lo-95", "stats_naive2-hi-95"]
    assert fc.notna().all().all()
    assert ((fc["stats_naive2-lo-95"] <= fc["stats_naive2-lo-80"])
            & (fc["stats_naive2-lo-80"] <= fc["stats_naive2"])
            & (fc["stats_naive2"] <= fc["stats_naive2-hi-80"])
            & (fc["stats_naive2-hi-80"] <= fc["stats_naive2-hi-95"])).all()
    # the same rows the predict run recorded
    table = seqcast.sql("SELECT series_id, timestamp, value, lo_80 FROM forecasts ORDER BY series_id, timestamp")
    np.testing.assert_allclose(table["value"], fc["stats_naive2"])
    np.testing.assert_allclose(table["lo_80"], fc["stats_naive2-lo-80"])


def test_the_library_refuses_bad_input_before_any_work(home, monthly):
    with pytest.raises(ValueError, match="level 90 is not stored with forecasts: choose among 80, 95"):
        seqcast.forecast(monthly, "stats_theta", h=6, level=[90])
    with pytest.raises(ValueError, match="expected a pandas or Polars data frame, a pyarrow table or a path, got "
                                         "list"):
        seqcast.forecast([1, 2, 3], "stats_theta", h=6)
    with pytest.raises(ValueError, match="unknown variant 'thetaa'"):
        seqcast.run(["thetaa"])
    with pytest.raises(ValueError, match="--jobs must be at least 1, got 0"):
        seqcast.run(["naive"], jobs=0)
    assert not (home / "datasets").exists()  # nothing was ingested


def test_ingest_reads_a_file_in_nixtlas_long_format_without_options(home, tmp_path, capsys, monthly):
    path = tmp_path / "nixtla.csv"
    monthly[monthly["unique_id"].isin(["N1402", "N1403"])].to_csv(path, index=False)
    assert cli(["ingest", str(path), "--split", "last-horizon", "--horizon", "6"]) == 0
    dataset_id = capsys.readouterr().out.split("--dataset-id ")[-1].strip()
    spec = seqcast.sql(f"SELECT spec FROM datasets WHERE dataset_id = '{dataset_id}'")["spec"][0]
    assert '"columns": {"id": "unique_id", "time": "ds", "value": "y"}' in spec
    assert seqcast.sql(f"SELECT n_series FROM datasets WHERE dataset_id = '{dataset_id}'")["n_series"][0] == 2


def test_backtest_and_predict_export_the_ecosystems_layouts(home, tmp_path, capsys, monthly):
    path = tmp_path / "nixtla.parquet"
    # 12 series and 3 cutoffs: 24 scaled errors per step calibrate a finite 95% interval
    monthly[monthly["unique_id"].isin(sorted(monthly["unique_id"].unique())[:12])].to_parquet(path, index=False)
    assert cli(["ingest", str(path), "--split", "last-horizon", "--horizon", "6"]) == 0
    dataset_id = capsys.readouterr().out.split("--dataset-id ")[-1].strip()
    assert cli(["backtest", "--dataset-id", dataset_id, "--variant", "stats_naive2", "--windows", "3",
                "--export", str(tmp_path / "cv.csv")]) == 0
    cv = pd.read_csv(tmp_path / "cv.csv", parse_dates=["ds", "cutoff"])
    assert list(cv.columns) == ["unique_id", "ds", "cutoff", "y", "stats_naive2", "stats_naive2-lo-80",
                                "stats_naive2-hi-80", "stats_naive2-lo-95", "stats_naive2-hi-95"]
    assert len(cv) == 12 * 6 * 3 and (cv["ds"] > cv["cutoff"]).all()
    assert cli(["predict", "--dataset-id", dataset_id, "--export", str(tmp_path / "fc.parquet")]) == 0
    fc = pd.read_parquet(tmp_path / "fc.parquet")
    assert list(fc.columns) == ["unique_id", "ds", "stats_naive2", "stats_naive2-lo-80", "stats_naive2-hi-80",
                                "stats_naive2-lo-95", "stats_naive2-hi-95"]
    assert len(fc) == 12 * 6 and fc.notna().all().all()
    # a bad export path is refused before any work
    assert cli(["predict", "--dataset-id", dataset_id, "--export", str(tmp_path / "fc.txt")]) == 2
    assert "must be a .parquet or .csv file in an existing folder" in capsys.readouterr().err
