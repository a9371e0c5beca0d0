"""Ingest: validation with messages naming series and row, leak-free chronological windows, persisted spec."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from pydantic import ValidationError

from seqcast.data.ingest import IngestError, IngestParams, grid_steps
from seqcast.flows.ingest import ingest
from seqcast.storage.datasets import find_dataset, read_split, read_split_column
from seqcast.tasks.ingest import prepare
from tests.conftest import printed_table, results_db
from tests.series_files import COLUMNS, daily_series, write

WINDOW = {"n_steps": 14, "horizon": 7}


def params(path, **over) -> IngestParams:
    return IngestParams(**{"source": str(path), **COLUMNS, **WINDOW, **over})


@pytest.mark.usefixtures("prefect_harness")
def test_ingest_flow_persists_windows_and_records_spec(home, tmp_path):
    frame = daily_series()
    result = ingest(source=str(write(frame, tmp_path / "sales.csv")), name="shop-sales", **COLUMNS, **WINDOW)
    folder = home / "datasets" / result["dataset_id"]
    # the series stored whole, once, in one shard; no window is stored
    assert sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")) == [
        "dataset.json", "series.parquet", "values.parquet", "values.parquet/shard-00000.parquet"]
    assert result["n_series"] == 3 and result["frequency"] == "D"
    manifest = json.loads((folder / "dataset.json").read_text())
    assert manifest["tables"] == ["series", "values"] and manifest["n_shards"] == 1
    series = pq.read_table(folder / "series.parquet").to_pydict()
    assert series["period"] == [7, 7, 7]  # daily: a week
    assert series["length"] == [120] * 3 and series["offset"] == [0, 120, 240] and series["shard"] == [0] * 3
    assert pq.read_table(folder / "values.parquet").num_rows == 3 * 120
    assert manifest["scaling"]["mode"] == "series" and set(manifest["scaling"]["stats"]) == {"s00", "s01", "s02"}
    ref = find_dataset(home / "datasets", result["dataset_id"])
    ids = read_split_column(ref, "train", "series_id")
    train = read_split(ref, "train")
    assert len(train) == len(ids) == result["n_train"] and ids[0] == "s00"
    assert read_split_column(ref, "train", "window_start")[0] == np.datetime64("2024-01-01")
    # windows hold original units: the first training window of s00 is its first 21 values
    assert np.allclose(train[0], frame["sales"][:21], atol=1e-5)

    with results_db(home) as con:
        (row,) = con.execute("SELECT dataset_id, kind, spec, n_series, n_steps, horizon, n_train FROM datasets") \
            .fetchall()
    spec = json.loads(row[2])
    assert row[:2] == (result["dataset_id"], "ingested") and row[3:6] == (3, 14, 7)
    assert row[6] == result["n_train"] == 3 * (84 - 21 + 1)  # 120 days less 18 + 18 (15 % each), windows of 21
    assert spec["source"].endswith("sales.csv") and spec["missing"] == "fail" and spec["frequency"] == "D"
    assert spec["scaling"] == "series" and spec["valid_fraction"] == 0.15 and spec["name"] == "shop-sales"

    # the same content as Parquet, elsewhere, is the same dataset: content-hashed, recorded once
    again = ingest(source=str(write(frame, tmp_path / "copy.parquet")), **COLUMNS, **WINDOW)
    assert again["dataset_id"] == result["dataset_id"]
    with results_db(home) as con:
        assert con.execute("SELECT count(*) FROM datasets").fetchall() == [(1,)]


def test_chronological_split_leaks_nothing(tmp_path):
    frame = daily_series(n_series=3, days=150)
    prepared = prepare(params(write(frame, tmp_path / "sales.csv")))
    series = prepared.series.to_pandas().set_index("series_id")
    days = pd.to_datetime(frame["day"])
    for sid in ("s00", "s01", "s02"):
        parts = {p: pd.DataFrame(prepared.extra[p]) for p in ("train", "valid", "test")}
        parts = {p: part[part["series_id"] == sid] for p, part in parts.items()}
        train_end = series.loc[sid, "train_end"]
        # no validation (or test) timestamp inside any training window; targets never cross a boundary
        assert parts["train"]["window_end"].max() == train_end
        assert parts["valid"]["target_start"].min() == train_end + pd.Timedelta(days=1)
        assert parts["valid"]["window_end"].max() < parts["test"]["target_start"].min()
        # the scaler saw the training part only, and exactly all of it
        train_values = frame.loc[(frame["store"] == sid) & (days <= train_end), "sales"]
        assert len(train_values) == 150 - 2 * 22
        assert prepared.scaler.stats[sid] == pytest.approx((train_values.mean(), train_values.std(ddof=0)))
    glob = prepare(params(write(frame, tmp_path / "sales.csv"), scaling="global")).scaler
    in_train = days <= series["train_end"].iloc[0]
    train_sales = frame.loc[in_train, "sales"]
    assert glob.stats["*"] == pytest.approx((train_sales.mean(), train_sales.std(ddof=0)))


def gappy(tmp_path):
    """s01 lacks 2024-02-10 (a missing step) and has no value on 2024-02-20 (row 171)."""
    frame = daily_series()
    frame.loc[(frame["store"] == "s01") & (frame["day"] == "2024-02-20"), "sales"] = np.nan
    frame = frame[~((frame["store"] == "s01") & (frame["day"] == "2024-02-10"))]
    return frame, write(frame, tmp_path / "gappy.csv")


def test_missing_policies(tmp_path):
    frame, path = gappy(tmp_path)
    with pytest.raises(IngestError, match=r"series 's01': 1 missing step\(s\) on its 'D' grid, the first at "
                                          r"2024-02-10 00:00:00 \(before row 161\)"):
        prepare(params(path))

    dropped = prepare(params(path, missing="drop"))
    train = pd.DataFrame(prepared_columns := dropped.extra["train"])
    assert len(prepared_columns["series_id"]) == len(dropped.splits["train"])
    assert not np.isnan(dropped.splits["train"]).any()
    # a window never spans a gap: every kept window covers exactly 21 consecutive days
    assert ((train["window_end"] - train["window_start"]) == pd.Timedelta(days=20)).all()
    s01 = train[train["series_id"] == "s01"]
    gaps = pd.to_datetime(["2024-02-10", "2024-02-20"])
    assert not any(((s01["window_start"] <= g) & (s01["window_end"] >= g)).any() for g in gaps)
    full = prepare(params(write(daily_series(), tmp_path / "full.csv")))
    assert len(dropped.splits["train"]) < len(full.splits["train"])

    filled = prepare(params(path, missing="interpolate"))
    s01_first = filled.splits["train"][np.array(filled.extra["train"]["series_id"]) == "s01"][0]
    assert len(filled.splits["train"]) == len(full.splits["train"])
    values = frame.set_index(["store", "day"])["sales"]
    expected = (values["s01", "2024-02-09"] + values["s01", "2024-02-11"]) / 2
    window = filled.splits["train"][np.array(filled.extra["train"]["series_id"]) == "s01"][39]  # starts 02-09
    assert window[1] == pytest.approx(expected, rel=1e-6) and s01_first[0] == pytest.approx(values["s01", "2024-01-01"])


def test_one_series_without_id_column(tmp_path):
    frame = daily_series(n_series=1).drop(columns="store")
    prepared = prepare(IngestParams(source=str(write(frame, tmp_path / "one.parquet")), id_column=None,
                                    time_column="day", value_column="sales", **WINDOW))
    assert prepared.spec["n_series"] == 1 and set(prepared.extra["train"]["series_id"]) == {"series"}


def _bad(frame: pd.DataFrame, how: str) -> tuple[pd.DataFrame, dict]:
    frame = frame.copy()
    s01 = frame.index[frame["store"] == "s01"]
    if how == "missing column":
        return frame.drop(columns="sales"), {}
    if how == "misnamed column":
        return frame.rename(columns={"day": "date"}), {}
    if how == "timestamp":
        frame.loc[s01[4], "day"] = "2024-02-31"
    elif how == "mixed frequency":
        frame.loc[s01[10], "day"] = "2024-01-10 12:00"
    elif how == "duplicate":
        frame.loc[s01[6], "day"] = frame.loc[s01[5], "day"]
    elif how == "all nan":
        frame.loc[s01, "sales"] = np.nan
    elif how == "too short":
        frame = frame.drop(s01[20:])
    elif how == "not a number":
        frame["sales"] = frame["sales"].astype(object)
        frame.loc[s01[2], "sales"] = "twelve"
    return frame, {}


@pytest.mark.usefixtures("prefect_harness")
@pytest.mark.parametrize("how, message", [
    ("missing column", r"column\(s\) 'sales' not found; the file has columns 'store', 'day'"),
    ("misnamed column", r"column\(s\) 'day' not found; the file has columns 'store', 'date', 'sales'"),
    ("timestamp", r"series 's01', row 125: timestamp '2024-02-31' does not parse"),
    ("mixed frequency", r"series 's01', row 131: timestamp 2024-01-10 12:00:00 is off the series' regular 'D' grid"),
    ("duplicate", r"series 's01': timestamp 2024-01-06 00:00:00 appears more than once, in rows 126, 127"),
    ("all nan", r"series 's01' has no values: all its 120 rows \(rows 121..240\) are NaN"),
    ("too short", r"series 's01' has 20 steps \(rows 121..140\), fewer than the 21 one window needs"),
    ("not a number", r"series 's01', row 123: value 'twelve' is not a number"),
])
def test_bad_input_rejected_before_anything_is_persisted(home, tmp_path, how, message):
    frame, _ = _bad(daily_series(), how)
    with pytest.raises(IngestError, match=message):
        ingest(source=str(write(frame, tmp_path / "bad.csv")), **COLUMNS, **WINDOW)
    assert not home.exists()


def test_split_too_small_names_the_series_and_its_dates(tmp_path):
    frame = daily_series(days=60)
    with pytest.raises(IngestError, match=r"series 's00': its validation part \(9 steps, 2024-02-12 00:00:00 .. "
                                          r"2024-02-20 00:00:00\) holds the targets of no complete window"):
        prepare(params(write(frame, tmp_path / "short.csv"), n_steps=14, horizon=10))


@pytest.mark.parametrize("bad, message", [
    ({"value_column": "sales'); DROP TABLE runs; --"}, "column name .* is not a plain name"),
    ({"name": "../etc"}, "dataset name '../etc' is not a plain name"),
    ({"freq": "fortnightly"}, "freq 'fortnightly' is no pandas frequency alias"),
    ({"valid_fraction": 0.5, "test_fraction": 0.5}, "leaves no training part"),
    ({"source": "sales.xlsx"}, "neither a .csv nor a .parquet file"),
])
def test_unsafe_or_inconsistent_parameters_rejected(bad, message):
    with pytest.raises(ValidationError, match=message):
        IngestParams(**{"source": "sales.csv", **COLUMNS, **bad})


@pytest.mark.usefixtures("prefect_harness")
def test_cli_ingest_one_series_and_a_clear_error(home, tmp_path, capsys):
    from seqcast.app.cli import main as cli

    frame = daily_series(n_series=1).drop(columns="store")
    frame.loc[30, "sales"] = np.nan
    path = write(frame, tmp_path / "one.csv")
    options = ["--id-column", "", "--time-column", "day", "--value-column", "sales", "--n-steps", "14",
               "--horizon", "7"]
    assert cli(["ingest", str(path), *options]) == 2
    assert "series 'series', row 31: value is missing (1 row(s) in all); choose missing='drop'" \
        in capsys.readouterr().err
    assert not home.exists()
    assert cli(["ingest", str(path), *options, "--missing", "interpolate"]) == 0
    out = capsys.readouterr().out
    (dataset,) = printed_table(out)
    assert (dataset["n_series"], dataset["frequency"], dataset["n_steps"], dataset["horizon"]) == ("1", "D", "14", "7")
    assert f"seqcast run --variant linear --dataset-id {dataset['dataset_id']}" in out


def test_interpolation_never_crosses_a_part_boundary():
    from seqcast.data.ingest import interpolate_within_parts

    values = np.array([1.0, np.nan, 3.0, np.nan, 5.0, np.nan, 7.0])
    filled = interpolate_within_parts(values, [(0, 3), (3, 7)])
    # the gap at step 3 opens the second part: filling it would use the training value 3.0, so it stays a gap
    np.testing.assert_array_equal(filled, [1.0, 2.0, 3.0, np.nan, 5.0, 6.0, 7.0])
    assert np.isnan(values[1])  # the input is left alone


# ---- the last-horizon split and padding of short series -----------------------------------------------------------

def counting_series(tmp_path, lengths: dict[str, int], name="counts.csv"):
    """Daily series whose values count up from 10 (10, 11, 12, ...), so a window's values name its steps."""
    frame = pd.concat([pd.DataFrame({"store": sid, "day": pd.date_range("2024-01-01", periods=n, freq="D")
                                     .strftime("%Y-%m-%d"), "sales": 10.0 + np.arange(n)})
                       for sid, n in lengths.items()], ignore_index=True)
    return write(frame, tmp_path / name)


def windows_of(prepared, part: str, sid: str) -> np.ndarray:
    return prepared.splits[part][np.array(prepared.extra[part]["series_id"]) == sid]


def test_last_horizon_split_cuts_one_validation_and_one_test_window(tmp_path):
    path = counting_series(tmp_path, {"s00": 20})  # values 10..29
    prepared = prepare(params(path, split="last-horizon", n_steps=3, horizon=2))
    # test targets: the last 2 values; validation targets: the 2 before them; training: the 16 before those
    np.testing.assert_array_equal(windows_of(prepared, "test", "s00"), [[25, 26, 27, 28, 29]])
    np.testing.assert_array_equal(windows_of(prepared, "valid", "s00"), [[23, 24, 25, 26, 27]])
    train = windows_of(prepared, "train", "s00")
    np.testing.assert_array_equal(train, [np.arange(10, 15) + i for i in range(12)])  # the last ends at 25
    assert prepared.extra["test"]["target_start"][0] == pd.Timestamp("2024-01-19")
    assert prepared.series.to_pandas()["train_end"][0] == pd.Timestamp("2024-01-16")
    # the scaler saw the 16 training values only
    assert prepared.scaler.stats["s00"] == pytest.approx((17.5, np.arange(10, 26).std()))
    assert prepared.spec["split"] == "last-horizon" and prepared.spec["valid_fraction"] is None


def test_a_file_ingested_as_before_the_split_options_keeps_its_dataset_id(tmp_path):
    # the id this file had before split, short_series and benchmark existed: at their defaults they leave it alone
    prepared = prepare(params(write(daily_series(), tmp_path / "sales.csv")))
    assert prepared.spec["split"] == "fractions" and prepared.spec["short_series"] == "fail"
    assert prepared.dataset_id == "ds-a6c3d0da79c1"


def test_short_series_are_padded_with_their_first_value_on_request(tmp_path):
    path = counting_series(tmp_path, {"long": 12, "short": 8})  # short: values 10..17
    options = {"split": "last-horizon", "n_steps": 4, "horizon": 2}  # a window per part needs 4 + 3 * 2 = 10 steps
    with pytest.raises(IngestError, match=r"series 'short': its training part \(4 steps, 2024-01-01 00:00:00 .. "
                                          r"2024-01-04 00:00:00\) holds the targets of no complete window "
                                          r"\(n_steps 4 \+ horizon 2\); use a longer series, smaller windows or "
                                          r"short_series='pad'"):
        prepare(params(path, **options))

    prepared = prepare(params(path, **options, short_series="pad"))
    # short is padded by 2 steps holding its first value, 10: [10, 10 | 10, 11, ..., 17]
    np.testing.assert_array_equal(windows_of(prepared, "train", "short"), [[10, 10, 10, 11, 12, 13]])
    np.testing.assert_array_equal(windows_of(prepared, "valid", "short"), [[10, 11, 12, 13, 14, 15]])
    np.testing.assert_array_equal(windows_of(prepared, "test", "short"), [[12, 13, 14, 15, 16, 17]])
    extra = pd.DataFrame(prepared.extra["train"])
    assert extra.loc[extra["series_id"] == "short", "window_start"].tolist() == [pd.Timestamp("2023-12-30")]
    # every target, in every part, is an observed value: none lies before the series' first timestamp
    for part in ("train", "valid", "test"):
        assert (pd.DataFrame(prepared.extra[part])["target_start"] >= pd.Timestamp("2024-01-01")).all()
    series = prepared.series.to_pandas().set_index("series_id")
    assert series["padded_steps"].to_dict() == {"long": 0, "short": 2}
    assert series.loc["short", "first_timestamp"] == pd.Timestamp("2024-01-01")
    assert series.loc["short", "n_steps_total"] == 8
    assert prepared.spec["padded_steps"] == {"short": 2} and prepared.spec["short_series"] == "pad"
    # the padded copies of 10 stay out of the scaler: it saw the observed training values 10..13
    assert prepared.scaler.stats["short"] == pytest.approx((11.5, np.arange(10, 14).std()))
    np.testing.assert_array_equal(windows_of(prepared, "test", "long"), [[16, 17, 18, 19, 20, 21]])

    # padding fills inputs only: a series with fewer than 3 horizons of values has a part without targets
    too_short = counting_series(tmp_path, {"tiny": 5}, "tiny.csv")
    with pytest.raises(IngestError, match=r"series 'tiny' has 5 steps \(2024-01-01 00:00:00 .. 2024-01-05 00:00:00\), "
                                          r"too few even with padding: padding fills at most n_steps \(4\) input "
                                          r"steps, never a target"):
        prepare(params(too_short, **options, short_series="pad"))


def test_padding_under_the_fractions_split_never_pads_a_target(tmp_path):
    path = counting_series(tmp_path, {"s00": 30})
    with pytest.raises(IngestError, match="holds the targets of no complete window"):
        prepare(params(path))  # n_steps 14 + horizon 7 in each of three parts: 30 steps are too few
    prepared = prepare(params(path, short_series="pad"))
    pad = int(prepared.series.to_pandas()["padded_steps"][0])
    # the fewest steps that fit: 30 + 14 steps hold 7 test steps (15 %, rounded) whose window reaches back 14 more
    # to step 23, 21 steps in all; 30 + 13 would hold only 20
    assert pad == 14
    for part in ("train", "valid", "test"):
        # every target is the observed value of its date: the value on day d (from 0) is 10 + d
        days = (pd.DatetimeIndex(prepared.extra[part]["target_start"]) - pd.Timestamp("2024-01-01")).days
        assert len(days) and (days >= 0).all()
        np.testing.assert_array_equal(prepared.splits[part][:, WINDOW["n_steps"]:],
                                      10 + days.to_numpy()[:, None] + np.arange(WINDOW["horizon"]))


@pytest.mark.parametrize("bad, message", [
    ({"split": "last-horizon", "valid_fraction": 0.2},
     r"valid_fraction applies to split='fractions' only: split='last-horizon' makes the last horizon"),
    ({"split": "last-horizon", "valid_fraction": 0.15, "test_fraction": 0.15},
     r"valid_fraction and test_fraction apply to split='fractions' only"),
    ({"split": "halves"}, r"Input should be 'fractions' or 'last-horizon'"),
    ({"short_series": "drop"}, r"Input should be 'fail' or 'pad'"),
    ({"benchmark": "m3-other"}, r"name either a source file or a benchmark, not both"),
    ({"source": None}, r"name a source file, or a benchmark \(e.g. benchmark='m3-monthly'\)"),
])
def test_conflicting_split_options_are_refused(bad, message):
    with pytest.raises(ValidationError, match=message):
        IngestParams(**{"source": "sales.csv", **bad})


def test_unset_options_take_the_inputs_defaults():
    file = IngestParams(source="sales.csv")
    assert (file.split, file.short_series, file.n_steps, file.horizon) == ("fractions", "fail", 28, 7)
    assert (file.valid_fraction, file.test_fraction) == (0.15, 0.15)
    last = IngestParams(source="sales.csv", split="last-horizon")
    assert last.valid_fraction is None and last.test_fraction is None
    # a dump validates to the same parameters: the flow receives what the command line resolved
    for p in (file, last, IngestParams(benchmark="m3-yearly", n_steps=4)):
        assert IngestParams(**p.model_dump()) == p


# Sunspot numbers, climate and demographic records: centuries of yearly, quarterly and monthly steps, spans past the
# 292 years a nanosecond Timedelta holds.
OLD_SERIES = [("YS-JAN", "1700-01-01", 324, 1), ("QS-JAN", "1700-01-01", 1296, 4), ("MS", "1749-01-01", 3300, 12)]


@pytest.mark.parametrize("freq, start, periods, period", OLD_SERIES)
def test_old_and_long_series_ingest_with_their_timestamps(tmp_path, freq, start, periods, period):
    grid = pd.date_range(start, periods=periods, freq=freq)
    frame = pd.DataFrame({"store": "old", "day": grid.strftime("%Y-%m-%d"), "sales": 100.0 + np.arange(periods)})
    assert grid_steps(grid[0], grid[-1], freq) == pytest.approx(periods, rel=0.03)  # months and years vary
    prepared = prepare(params(write(frame, tmp_path / "old.csv")))
    (row,) = prepared.series.to_pylist()
    assert (row["period"], row["n_steps_total"]) == (period, periods)
    assert pd.date_range(grid[0], periods=periods, freq=row["frequency"]).equals(grid)  # pandas says QS-OCT for QS
    assert (row["first_timestamp"], row["last_timestamp"]) == (grid[0].to_pydatetime(), grid[-1].to_pydatetime())
    values = prepared.values.to_pandas()
    assert (pd.DatetimeIndex(values["timestamp"]) == grid).all()
    np.testing.assert_array_equal(values["value"], frame["sales"])
    first_window = pd.DatetimeIndex(prepared.extra["train"]["window_start"])[0]
    assert first_window == grid[0]


@pytest.mark.usefixtures("prefect_harness")
def test_cli_ingests_a_yearly_series_since_1700(home, tmp_path, capsys):
    from seqcast.app.cli import main as cli

    grid = pd.date_range("1700-01-01", periods=324, freq="YS")
    path = write(pd.DataFrame({"unique_id": "sunspots", "ds": grid.strftime("%Y-%m-%d"),
                               "y": 50.0 + np.sin(np.arange(324))}), tmp_path / "sunspots.csv")
    argv = ["ingest", str(path), "--id-column", "unique_id", "--time-column", "ds", "--value-column", "y"]
    assert cli(argv) == 0
    (dataset,) = (home / "datasets").iterdir()
    stored = pq.read_table(dataset / "values.parquet").column("timestamp").to_pandas()
    assert (pd.DatetimeIndex(stored) == grid).all()
    assert "seqcast run --variant linear --dataset-id " + dataset.name in capsys.readouterr().out


def mixed_grids() -> pd.DataFrame:
    """Series on many kinds of grid, in shuffled rows: month starts (monthly from several months, quarterly,
    yearly), fixed steps (daily, weekly on a Wednesday, hourly, 90 minutes, 10 days), business days, month ends,
    one daily series with a gap and one with a missing value."""
    grids = {
        "m1": pd.date_range("2001-01-01", periods=40, freq="MS"), "m2": pd.date_range("1999-07-01", periods=30,
                                                                                       freq="MS"),
        "q1": pd.date_range("2000-01-01", periods=30, freq="QS"), "q2": pd.date_range("2000-02-01", periods=30,
                                                                                       freq="QS-FEB"),
        "y1": pd.date_range("1960-01-01", periods=40, freq="YS"), "y2": pd.date_range("1960-07-01", periods=40,
                                                                                       freq="YS-JUL"),
        "d1": pd.date_range("2024-01-01", periods=50, freq="D"), "d2": pd.date_range("2024-01-01 06:00", periods=50,
                                                                                      freq="D"),
        "w1": pd.date_range("2024-01-03", periods=40, freq="W-WED"), "h1": pd.date_range("2024-01-01", periods=60,
                                                                                          freq="h"),
        "n90": pd.date_range("2024-01-01", periods=40, freq="90min"),
        "d10": pd.date_range("2024-01-01", periods=40, freq="10D"),
        "b1": pd.date_range("2024-01-01", periods=40, freq="B"), "e1": pd.date_range("2001-01-31", periods=40,
                                                                                      freq="ME"),
        "gap": pd.date_range("2024-01-01", periods=50, freq="D").delete(20),
        "hole": pd.date_range("2024-01-01", periods=50, freq="D"),
    }
    rng = np.random.default_rng(3)
    frame = pd.concat([pd.DataFrame({"store": sid, "day": stamps, "sales": rng.normal(10, 1, len(stamps))})
                       for sid, stamps in grids.items()], ignore_index=True)
    frame.loc[(frame["store"] == "hole") & (frame["day"] == "2024-01-30"), "sales"] = np.nan
    return frame.sample(frac=1, random_state=0).reset_index(drop=True)


@pytest.mark.parametrize("freq", [None, "D"])
def test_the_panel_puts_every_series_on_the_grid_each_alone_would_get(tmp_path, monkeypatch, freq):
    from seqcast.data import regular
    from seqcast.data.regular import panel_from_series, regular_panel, validate_series

    one_alone = regular.regular_series
    from seqcast.tasks.ingest import long_frame, read_file, recognised_columns

    reader = recognised_columns(params(write(mixed_grids(), tmp_path / "mixed.parquet"), missing="drop",
                                       freq=freq, n_steps=5, horizon=2))
    frame = long_frame(reader, read_file)
    if freq == "D":  # one frequency declared for all: only the daily series keep to it
        frame = frame[frame["series_id"].isin(["d1", "d2", "gap", "hole"])]
    one_by_one = panel_from_series(validate_series(frame, reader, 7))
    alone = []  # the series the panel leaves to regular_series, one by one
    monkeypatch.setattr(regular, "regular_series", lambda sid, *args: alone.append(sid) or one_alone(sid, *args))
    panel = regular_panel(frame, reader, 7)
    assert list(panel.ids) == list(one_by_one.ids) and list(panel.freqs) == list(one_by_one.freqs)
    # business days, month ends and series with gaps or missing values only
    assert sorted(alone) == (["b1", "e1", "gap", "hole"] if freq is None else ["gap", "hole"])
    if freq is None:
        assert dict(zip(panel.ids, panel.freqs)) == {
            "b1": "B", "d1": "D", "d10": "10D", "d2": "D", "e1": "ME", "gap": "D", "h1": "h", "hole": "D", "m1": "MS",
            "m2": "MS", "n90": "90min", "q1": "QS-OCT", "q2": "QS-NOV", "w1": "W-WED", "y1": "YS-JAN", "y2": "YS-JUL"}
    np.testing.assert_array_equal(panel.lengths, one_by_one.lengths)
    np.testing.assert_array_equal(panel.stamps, one_by_one.stamps)
    np.testing.assert_array_equal(panel.values, one_by_one.values)  # NaN where the gap is, in both
    assert panel.data_hash == one_by_one.data_hash


def test_shards_hold_whole_series_and_the_dataset_does_not_depend_on_their_number(tmp_path, monkeypatch):
    from seqcast.storage import Store

    frame = daily_series(n_series=9, days=60)
    reader = params(write(frame, tmp_path / "nine.parquet"), n_steps=7, horizon=3)
    prepared = prepare(reader)
    from seqcast.tasks.ingest import write_prepared

    refs = {}
    for n_shards in (1, 4):
        monkeypatch.setenv("SEQCAST_HOME", str(tmp_path / f"home-{n_shards}"))
        refs[n_shards] = write_prepared(prepared, n_shards)
    one, four = refs[1], refs[4]
    assert one.manifest["content_hash"] == four.manifest["content_hash"] and four.manifest["n_shards"] == 4
    store = Store(tmp_path / "home-4")
    shards = list(store.datasets.shards(four))
    assert [s.number for s in shards] == [0, 1, 2, 3]
    held = [sid for s in shards for sid in s.index.column("series_id").to_pylist()]
    assert sorted(held) == [f"s{i:02d}" for i in range(9)] and len(set(held)) == 9  # each series whole, once
    third = store.datasets.shard(four, 2, columns=["series_id", "value"])
    assert third.index.equals(shards[2].index) and third.values.column_names == ["series_id", "value"]
    with pytest.raises(ValueError, match="no shard 4: the dataset at .* has shards 0 to 3"):
        store.datasets.shard(four, 4)
    for shard in shards:
        long = shard.long_frame()
        assert list(long.columns) == ["unique_id", "ds", "y"]
        assert set(long["unique_id"]) == set(shard.index.column("series_id").to_pylist())
        for sid, group in long.groupby("unique_id"):
            expected = frame.loc[frame["store"] == sid, "sales"].to_numpy()
            np.testing.assert_allclose(group["y"].to_numpy(), expected)
            assert group["ds"].is_monotonic_increasing
    for split in ("train", "valid", "test"):
        np.testing.assert_array_equal(read_split(one, split), read_split(four, split))
        np.testing.assert_array_equal(read_split(four, split), prepared.splits[split])
        np.testing.assert_array_equal(read_split_column(four, split, "series_id"), prepared.extra[split]["series_id"])
    values = store.datasets.read_table(four, "values")
    assert values.column("series_id").to_pylist() == sorted(values.column("series_id").to_pylist())
    assert store.datasets.read_series_values(four)[0]["value"].tolist() == prepared.values.column("value").to_pylist()


def test_a_dataset_ingested_before_shards_reads_as_before(tmp_path):
    from seqcast.storage import Store
    from seqcast.storage.datasets import write_dataset

    prepared = prepare(params(write(daily_series(n_series=2, days=60), tmp_path / "two.csv"), n_steps=7, horizon=3))
    # the layout of before: every split's windows, a per-window table, and the values and series tables beside them
    old = write_dataset(tmp_path / "home" / "datasets", "ds-old", prepared.spec, prepared.splits, prepared.extra,
                        tables={"series": prepared.series, "values": prepared.values})
    assert "layout" not in old.manifest and (old.path / "train.windows.parquet").is_file()
    datasets = Store(tmp_path / "home").datasets
    windows, ids = datasets.read_windows(old, "valid")
    np.testing.assert_array_equal(windows, prepared.splits["valid"])
    np.testing.assert_array_equal(ids, prepared.extra["valid"]["series_id"])
    columns, periods = datasets.read_series_values(old)
    assert periods == {"s00": 7, "s01": 7} and len(columns["value"]) == prepared.values.num_rows
    with pytest.raises(ValueError, match="ds-old is not stored in shards"):
        datasets.shards(old)


def test_a_shard_cut_short_before_its_sync_is_found_by_the_content_hash(tmp_path, monkeypatch):
    from seqcast.storage.datasets import UNSYNCED, DamagedDataset
    from seqcast.tasks.ingest import write_prepared

    monkeypatch.setenv("SEQCAST_HOME", str(tmp_path / "home"))
    prepared = prepare(params(write(daily_series(n_series=4, days=60), tmp_path / "four.csv"), n_steps=7, horizon=3))
    ref = write_prepared(prepared, 2)
    assert (ref.path / UNSYNCED).exists()  # published, not yet flushed
    shard = ref.path / "values.parquet" / "shard-00001.parquet"
    intact = shard.read_bytes()
    shard.write_bytes(intact[: len(intact) // 2])  # a crash before the page cache reached the disk
    with pytest.raises(DamagedDataset, match=rf"dataset {ref.dataset_id} at .* is damaged"):
        find_dataset(tmp_path / "home" / "datasets", ref.dataset_id)
    shard.write_bytes(intact)
    found = find_dataset(tmp_path / "home" / "datasets", ref.dataset_id)  # checked against its hash, then synced
    assert found.manifest["content_hash"] == ref.manifest["content_hash"] and not (ref.path / UNSYNCED).exists()


@pytest.mark.parametrize("freq", ["YS", "MS", "D"])
def test_padding_extends_each_grid_backwards_with_the_first_value(tmp_path, freq):
    stamps = pd.date_range("2001-01-01", periods=8, freq=freq)  # 2 short of a training window of 4 + 2
    frame = pd.DataFrame({"store": "s00", "day": stamps, "sales": np.arange(10, 18, dtype=float)})
    prepared = prepare(params(write(frame, tmp_path / "short.parquet"), split="last-horizon", n_steps=4, horizon=2,
                              short_series="pad"))
    values = prepared.values.to_pandas()
    pad = int(values["padded"].sum())
    assert pad == 2 and prepared.series.column("padded_steps").to_pylist() == [pad]
    expected = pd.date_range(end=stamps[0], periods=pad + 1, freq=freq)[:-1].append(stamps)
    assert list(values["timestamp"]) == list(expected)
    assert list(values["value"]) == [10.0] * pad + list(range(10, 18))
