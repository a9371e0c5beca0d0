"""Own series end to end: ingest -> train and compare through the forecast flow -> predict into DuckDB."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from pydantic import ValidationError

from seqcast.app.cli import main as cli
from seqcast.config.params import INGESTED_WINDOW_NORM
from seqcast.data.ingest import IngestError
from seqcast.data.normalise import SCALE_FLOOR
from seqcast.flows.forecast import forecast
from seqcast.flows.ingest import ingest
from seqcast.flows.predict import deployment, predict
from seqcast.models.layers import CUSTOM_OBJECTS
from seqcast.storage import Store
from seqcast.storage.datasets import find_dataset, read_split
from tests.conftest import results_db, table_versions
from tests.series_files import COLUMNS, daily_series, write

WINDOW = {"n_steps": 14, "horizon": 7}
LAST_DAY = pd.Timestamp("2024-04-29")  # day 120 from 2024-01-01 (a leap year)


@pytest.fixture(scope="module")
def trained(prefect_harness, tmp_path_factory):
    """One ingested dataset of 4 daily series with a linear (2 epochs) and a naive run on it."""
    home = tmp_path_factory.mktemp("predict") / "seqcast-home"
    files = tmp_path_factory.mktemp("files")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SEQCAST_HOME", str(home))
        frame = daily_series(n_series=4, days=120)
        dataset = ingest(source=str(write(frame, files / "sales.csv")), **COLUMNS, **WINDOW)
        linear = forecast(variant="linear", dataset_id=dataset["dataset_id"], epochs=2, jit_compile=False)
        naive = forecast(variant="naive", dataset_id=dataset["dataset_id"])
        yield SimpleNamespace(home=home, files=files, frame=frame, dataset=dataset, linear=linear, naive=naive)


def rows(home, sql, params=None):
    with results_db(home) as con:
        return con.execute(sql, params or []).fetchall()


def test_variants_train_on_ingested_data_with_metrics_in_original_units(trained):
    home, ds = trained.home, trained.dataset["dataset_id"]
    assert trained.linear["dataset_id"] == trained.naive["dataset_id"] == ds
    assert rows(home, "SELECT variant, horizon, params->>'n_steps', params->>'window_norm' FROM runs "
                      "ORDER BY variant") == [("linear", 7, "14", INGESTED_WINDOW_NORM), ("naive", 7, "14", "none")]
    assert rows(home, "SELECT kind, n_series FROM datasets") == [("ingested", 4)]

    # naive valid MSE by hand from the raw (unscaled) validation windows: the metrics are in original units
    windows = read_split(find_dataset(home / "datasets", ds), "valid").astype(np.float64)
    by_hand = np.mean((windows[:, 14:] - windows[:, 13:14]) ** 2)
    assert trained.naive["valid_mse"] == pytest.approx(by_hand, rel=1e-5)
    assert trained.linear["naive_valid_mse"] == pytest.approx(by_hand, rel=1e-5)
    (low,) = rows(home, "SELECT min(y_true) FROM predictions")[0]
    assert low > 5  # original units (levels 10..25), not standardised ones
    board = dict(rows(home, "SELECT variant, ratio_to_naive FROM leaderboard WHERE dataset_id = ?", [ds]))
    assert set(board) == {"linear", "naive"} and board["naive"] == pytest.approx(1.0)

    # the scaler fit at ingest travels with the model
    manifest = Store(trained.home).models.manifest(trained.linear["model_path"])
    dataset_manifest = json.loads((home / "datasets" / ds / "dataset.json").read_text())
    assert manifest["scaling"] == dataset_manifest["scaling"] and manifest["scaling"]["mode"] == "series"


def test_predict_best_linear_continues_every_series(trained, tmp_path, monkeypatch):
    monkeypatch.setenv("SEQCAST_HOME", str(trained.home))
    ds = trained.dataset["dataset_id"]
    out = tmp_path / "forecasts.parquet"
    result = predict(dataset_id=ds, family="linear", output=str(out))
    assert result["model_run_id"] == trained.linear["run_id"] and result["n_rows"] == 4 * 7

    got = rows(trained.home, "SELECT model_run_id, dataset_id, series_id, timestamp, step, value FROM forecasts "
                             "WHERE run_id = ? ORDER BY series_id, step", [result["run_id"]])
    future = list(pd.date_range(LAST_DAY + pd.Timedelta(days=1), periods=7, freq="D"))
    assert [(r[2], r[3], r[4]) for r in got] == [(f"s{i:02d}", t.to_pydatetime(), s)
                                                 for i in range(4) for s, t in enumerate(future, 1)]
    assert {r[:2] for r in got} == {(trained.linear["run_id"], ds)}
    exported = pq.read_table(out).to_pandas().sort_values(["series_id", "step"])
    assert np.allclose(exported["value"], [r[5] for r in got])

    # the same numbers by hand: standardise the last 14 days with the training statistics, take them into the
    # window's frame (the run's recorded window norm), apply, and invert both in reverse order
    frame, model = trained.frame, Store(trained.home).models.load(trained.linear["model_path"], CUSTOM_OBJECTS)
    manifest = Store(trained.home).models.manifest(trained.linear["model_path"])
    assert manifest["params"]["window_norm"] == INGESTED_WINDOW_NORM != "none"
    for i, sid in enumerate(["s00", "s01", "s02", "s03"]):
        mean, std = manifest["scaling"]["stats"][sid]
        last = (frame.loc[frame["store"] == sid, "sales"].to_numpy()[-14:] - mean) / std
        ref = last[-1] if INGESTED_WINDOW_NORM == "last" else last.mean()
        scale = max(last.std(), SCALE_FLOOR)
        framed = model.predict(((last - ref) / scale).reshape(1, 14, 1), verbose=0)[0]
        expected = (framed * scale + ref) * std + mean
        assert np.allclose([r[5] for r in got[7 * i:7 * i + 7]], expected, rtol=1e-4)


def test_predict_a_new_file_by_run_id_from_the_cli(trained, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SEQCAST_HOME", str(trained.home))
    newer = write(daily_series(n_series=4, days=130), tmp_path / "newer.parquet")  # 10 more days of the same
    args = ["predict", "--run-id", trained.linear["run_id"], "--source", str(newer), "--id-column", "store",
            "--time-column", "day", "--value-column", "sales", "--show", "3"]
    assert cli(args) == 0
    out = capsys.readouterr().out
    assert "2024-05-10" in out and "s00" in out  # day 131 = the day after the file ends
    (first,) = rows(trained.home, "SELECT min(timestamp), count(*), any_value(dataset_id) FROM forecasts "
                                  "WHERE run_id = (SELECT run_id FROM forecasts WHERE timestamp = ? LIMIT 1)",
                    [pd.Timestamp("2024-05-10").to_pydatetime()])
    assert first == (pd.Timestamp("2024-05-10").to_pydatetime(), 28, None)


def _forecast_state(home):
    return table_versions(home), rows(home, "SELECT count(*) FROM forecasts")


@pytest.mark.parametrize("case, error, message", [
    ("n_steps", ValueError, r"model run \S+ takes n_steps=14 inputs, but dataset ds-\w+ has n_steps=10"),
    ("short series", IngestError, r"series 's02' has 9 steps \(rows 81..89\), fewer than the 14 one window needs"),
    ("unknown series", ValueError, r"no scaling statistics for series s99: the model was trained with per-series"),
    ("gap at the end", IngestError, r"series 's01': missing values among its last 14 steps \(2024-01-27 00:00:00 "
                                    r"\.\. 2024-02-09 00:00:00\) leave no input to forecast on from its end"),
    ("unknown run", ValueError, r"no completed run 'run-that-never-was'"),
    ("infinite value", IngestError, r"series 's03', row 160: value inf is not finite"),  # ingest's checks, for free
])
def test_predict_rejects_unfit_input_before_writing(trained, tmp_path, monkeypatch, case, error, message):
    monkeypatch.setenv("SEQCAST_HOME", str(trained.home))
    run_id = trained.linear["run_id"]
    frame = daily_series(n_series=4, days=40)
    if case == "n_steps":  # the same file windowed for a 10-step model
        other = ingest(source=str(write(trained.frame, tmp_path / "sales.csv")), **COLUMNS, n_steps=10, horizon=7)
        kwargs = {"run_id": run_id, "dataset_id": other["dataset_id"]}
    elif case == "short series":
        frame = frame[(frame["store"] != "s02") | (frame["day"] < "2024-01-10")]
        kwargs = {"run_id": run_id, "source": str(write(frame, tmp_path / "short.csv")), **COLUMNS}
    elif case == "gap at the end":  # an older complete window would forecast days the file already has
        frame.loc[(frame["store"] == "s01") & (frame["day"] == "2024-02-06"), "sales"] = np.nan
        kwargs = {"run_id": run_id, "source": str(write(frame, tmp_path / "gap.csv")), **COLUMNS, "missing": "drop"}
    elif case == "unknown series":
        frame["store"] = frame["store"].replace("s03", "s99")
        kwargs = {"run_id": run_id, "source": str(write(frame, tmp_path / "new.csv")), **COLUMNS}
    elif case == "infinite value":
        frame.loc[frame.index[-1], "sales"] = np.inf
        kwargs = {"run_id": run_id, "source": str(write(frame, tmp_path / "inf.parquet")), **COLUMNS}
    else:
        kwargs = {"run_id": "run-that-never-was"}
    before = _forecast_state(trained.home)
    with pytest.raises(error, match=message):
        predict(**kwargs)
    assert _forecast_state(trained.home) == before  # no record folder, no forecasts row


@pytest.mark.parametrize("bad, message", [
    ({"variant": "simple_rnn"}, "forecasts exactly 1 step\\(s\\), but dataset ds-\\w+ has horizon 7"),
    ({"variant": "linear", "horizon": 3}, "horizon 3 does not fit dataset"),
    ({"variant": "linear", "n_steps": 12}, "n_steps 12 does not fit dataset ds-\\w+ \\(n_steps 14\\)"),
    ({"variant": "iterative_10"}, "not supported on ingested datasets"),
])
def test_variant_that_does_not_fit_the_dataset_fails_before_any_work(trained, monkeypatch, bad, message):
    monkeypatch.setenv("SEQCAST_HOME", str(trained.home))
    before = rows(trained.home, "SELECT count(*) FROM runs")
    with pytest.raises(ValueError, match=message):
        forecast(dataset_id=trained.dataset["dataset_id"], epochs=1, **bad)
    with pytest.raises(ValueError, match="no dataset 'ds-000000000000'"):
        forecast(dataset_id="ds-000000000000")
    assert rows(trained.home, "SELECT count(*) FROM runs") == before


def test_predict_deployment_is_schedulable_with_validated_parameters():
    dep = deployment("predict-daily", cron="0 6 * * *", dataset_id="ds-0123456789ab", family="linear")
    assert dep.name == "predict-daily" and dep.parameters == {"dataset_id": "ds-0123456789ab", "family": "linear"}
    assert dep.schedules[0].schedule.cron == "0 6 * * *"
    with pytest.raises(ValidationError, match="unknown family 'transformers'"):
        deployment(dataset_id="ds-0123456789ab", family="transformers")
    with pytest.raises(ValidationError, match="name a run_id, or a dataset_id"):
        deployment(family="linear")
    with pytest.raises(ValidationError, match="is not a plain id"):
        deployment(dataset_id="x'; DROP TABLE runs; --")
