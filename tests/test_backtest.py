"""Rolling-origin backtests: what each cutoff knows, the whole path on M3 series, refits, and refusals."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from seqcast.app.cli import main as cli
from seqcast.data import m3
from seqcast.data.ingest import IngestParams, Series, build_dataset
from seqcast.evaluation.backtest import cut, min_history, refit_input, truncated
from seqcast.flows.backtest import backtest
from seqcast.flows.forecast import forecast
from seqcast.storage import Store
from tests.conftest import results_db, table_versions
from tests.series_files import daily_series, write

pytestmark = pytest.mark.usefixtures("prefect_harness")
COLUMNS = ("--id-column", "store", "--time-column", "day", "--value-column", "sales")  # tests.series_files' names


def rows(home, sql: str, params=None):
    with results_db(home) as con:
        return con.execute(sql, params or []).fetchall()


def value_columns(table) -> dict[str, np.ndarray]:
    return {name: table.column(name).to_numpy(zero_copy_only=False) for name in table.column_names}


def test_each_cutoff_holds_what_was_known_there():
    rng = np.random.default_rng(3)
    raw = {"long": rng.normal(10, 1, 40), "short": rng.normal(5, 1, 14)}  # "short" needs padding for 8+3 windows
    series = [Series(sid, "D", pd.date_range("2024-01-01", periods=len(v), freq="D"), v) for sid, v in raw.items()]
    params = IngestParams(source="x.csv", freq="D", n_steps=8, horizon=3, split="last-horizon", short_series="pad")
    prepared = build_dataset(series, params)
    values, periods = value_columns(prepared.values), {s.series_id: 7 for s in series}
    assert min_history(7) == 10

    for offset in (0, 2, 3):
        cutoff = cut(values, periods, 3, 8, 1, offset)
        kept = [sid for sid in sorted(raw) if len(raw[sid]) - 3 - offset >= 10]
        assert cutoff.series.series_ids == kept and cutoff.left_out == len(raw) - len(kept)
        for i, sid in enumerate(kept):
            v, at = raw[sid], len(raw[sid]) - 3 - offset  # the cutoff: the first forecast step
            np.testing.assert_array_equal(cutoff.series.actual[i], v[at:at + 3])
            np.testing.assert_array_equal(cutoff.series.history[i], v[:at])
            known = v[max(0, at - 8):at]
            expected = np.r_[np.full(8 - len(known), v[0]), known]  # padded with the first value, as ingest does
            np.testing.assert_allclose(cutoff.inputs[i], expected.astype(np.float32))
            assert cutoff.padded[i] == 8 - len(known)
            assert list(cutoff.timestamps[i]) == list(series[sorted(raw).index(sid)].timestamps[at:at + 3]
                                                     .to_numpy(dtype="datetime64[us]"))
    # at the test cutoff the inputs are exactly the dataset's own test windows
    test_cutoff = cut(values, periods, 3, 8, 0, 0)
    np.testing.assert_array_equal(test_cutoff.inputs, prepared.splits["test"][:, :8])
    # the windows hold float32, the cutoffs the stored float64 values
    np.testing.assert_array_equal(test_cutoff.series.actual.astype(np.float32), prepared.splits["test"][:, 8:])

    # a refit at the cutoff 3 steps back learns from the values before it: its test part is that cutoff's actuals
    series_back, params_back = refit_input(values, periods, prepared.spec, 3)
    assert [s.series_id for s in series_back] == ["long"]  # "short" has too little history there
    derived = build_dataset(series_back, params_back)
    np.testing.assert_array_equal(derived.splits["test"][:, 8:],
                                  cut(values, periods, 3, 8, 1, 3).series.actual.astype(np.float32))
    assert len(truncated(values, 3)["value"]) == len(values["value"]) - 2 * 3


@pytest.fixture(scope="module")
def monthly_file(tmp_path_factory):
    """Thirty M3 monthly series, the shortest among them, whole, as a long-format Parquet file."""
    data = m3.load_subset("monthly")
    chosen = sorted(set(range(0, len(data), 50)) | {int(np.argmin([len(x) for x in data.train]))})
    subset = m3.M3Subset("monthly", [data.series_ids[i] for i in chosen], [data.train[i] for i in chosen],
                         data.test[chosen], data.h, data.period, data.freq)
    path = tmp_path_factory.mktemp("m3") / "m3-monthly-part.parquet"
    m3.long_frame(subset).to_parquet(path)
    return path, subset


def ingested(capsys, *argv: str) -> str:
    assert cli(["ingest", *argv]) == 0
    return next(line.split("--dataset-id ")[1] for line in capsys.readouterr().out.splitlines()
                if "--dataset-id" in line).strip()


def test_m3_series_from_ingest_to_backtest_scores(home, capsys, monthly_file):
    path, subset = monthly_file
    dataset_id = ingested(capsys, str(path), "--freq", "MS", "--n-steps", "36", "--horizon", "18", "--split",
                          "last-horizon", "--short-series", "pad")
    # the forecast flow's own runs on this dataset, whose test scores cutoff 0 must reproduce
    forecast(variant="stats_theta", dataset_id=dataset_id)
    trained = forecast(variant="linear", dataset_id=dataset_id, epochs=1, seed=7)
    capsys.readouterr()

    assert cli(["backtest", "--dataset-id", dataset_id, "--variant", "stats_naive2", "--variant", "stats_theta",
                "--variant", "linear", "--epochs", "1", "--seed", "7", "--windows", "3"]) == 0
    out = capsys.readouterr().out
    assert all(v in out for v in ("stats_naive2", "stats_theta", "linear"))

    # every series that has the history at a cutoff is forecast there: at least 13 values (a period and one more)
    lengths = np.array([len(x) + subset.h for x in subset.train])
    expected = [int((lengths - 18 - offset >= 13).sum()) for offset in (0, 18, 36)]
    assert expected[0] == len(subset) and expected[2] < len(subset)  # the shortest series drop out of cutoff 2
    scores = rows(home, "SELECT variant, cutoff, smape, mase, owa, n_series FROM backtest_scores ORDER BY ALL")
    by_key = {(v, c): (s, m, o, n) for v, c, s, m, o, n in scores}
    for variant in ("linear", "stats_naive2", "stats_theta"):
        assert [by_key[(variant, c)][3] for c in (0, 1, 2)] == expected
        assert by_key[(variant, None)][3] == len(subset)
    for cutoff in (0, 1, 2, None):
        assert by_key[("stats_naive2", cutoff)][2] == pytest.approx(1.0)  # Naive2 against itself
    assert rows(home, "SELECT count(*) FROM backtest_forecasts f JOIN backtests b USING (run_id) "
                      "WHERE b.variant = 'linear'") == [(sum(expected) * 18,)]

    # cutoff 0 is the test split: the same sMAPE and MASE per series as the forecast flow's test scores
    for variant in ("stats_theta", "linear"):
        flow_scores = dict((sid, (s, m)) for sid, s, m in rows(
            home, "SELECT series_id, smape, mase FROM series_scores JOIN runs USING (run_id) WHERE variant = ? AND "
                  "split = 'test' AND predictor = 'model'", [variant]))
        cutoff_scores = rows(
            home, "SELECT series_id, avg(smape), avg(scaled_error) FROM backtest_forecasts JOIN backtests b "
                  "USING (run_id) WHERE b.variant = ? AND cutoff = 0 GROUP BY series_id", [variant])
        assert len(cutoff_scores) == len(flow_scores) == len(subset)
        for sid, smape, mase in cutoff_scores:
            assert (smape, mase) == pytest.approx(flow_scores[sid], rel=1e-5)

    # no refit: the trained linear run forecasts every cutoff; it was reused, not trained again
    ((model_runs, refit),) = rows(home, "SELECT model_run_ids, refit FROM backtests WHERE variant = 'linear'")
    assert json.loads(model_runs) == [trained["run_id"]] * 3 and refit is False
    assert rows(home, "SELECT count(*) FROM runs WHERE variant = 'linear'") == [(1,)]
    # an earlier cutoff forecasts the values 18 steps before the test part's
    first = subset.full(0)
    ((actual, step),) = rows(home, "SELECT actual, step FROM backtest_forecasts JOIN backtests USING (run_id) "
                                   "WHERE variant = 'stats_theta' AND cutoff = 1 AND series_id = ? AND step = 1",
                             [subset.series_ids[0]])
    assert actual == first[len(first) - 36] and step == 1


def test_backtests_side_by_side_with_jobs_score_as_one_after_another(home, capsys, monthly_file):
    from prefect.client.orchestration import get_client

    path, _ = monthly_file
    dataset_id = ingested(capsys, str(path), "--freq", "MS", "--n-steps", "36", "--horizon", "18", "--split",
                          "last-horizon", "--short-series", "pad")
    argv = ["backtest", "--dataset-id", dataset_id, "--variant", "stats_naive", "--variant", "stats_theta",
            "--windows", "2"]
    assert cli([*argv, "--jobs", "2"]) == 0
    err = capsys.readouterr().err
    assert "2 variant(s), 2 at once in worker processes" in err
    assert "stats_naive done in" in err and "stats_theta done in" in err and "backtest sMAPE" in err
    assert cli(argv) == 0  # one after another, in this process

    scores = rows(home, "SELECT variant, run_id, cutoff, smape, mase, owa, n_series FROM backtest_scores "
                        "ORDER BY variant, cutoff, run_id")
    runs = {}
    for variant, run_id, *row in scores:
        runs.setdefault((variant, run_id), []).append(row)
    assert sorted(v for v, _ in runs) == ["stats_naive", "stats_naive", "stats_theta", "stats_theta"]
    for variant in ("stats_naive", "stats_theta"):
        side_by_side, in_line = [r for (v, _), r in runs.items() if v == variant]
        assert [(c, n) for c, *_, n in side_by_side] == [(c, n) for c, *_, n in in_line] == [(0, 30), (1, 30),
                                                                                              (None, 30)]
        for one, other in zip(side_by_side, in_line):
            assert one[1:4] == pytest.approx(other[1:4], rel=1e-9)
    with get_client(sync_client=True) as client:  # two of the four backtests ran as tasks of one run flow
        parents = [client.read_flow_run(run_id).parent_task_run_id for _, run_id in runs]
    assert sum(parent is not None for parent in parents) == 2


def test_a_refit_trains_each_cutoff_on_the_values_before_it(home, tmp_path):
    path = write(daily_series(n_series=3, days=80, seed=5), tmp_path / "daily.csv")
    from seqcast.flows.ingest import ingest

    dataset_id = ingest(source=str(path), id_column="store", time_column="day", value_column="sales", n_steps=14,
                        horizon=7, split="last-horizon")["dataset_id"]
    summary = backtest(variant="linear", dataset_id=dataset_id, windows=2, step=5, refit=True,
                       parameters={"epochs": 1})
    assert summary["n_series"] == 3 and summary["refit"] is True
    ((model_runs,),) = rows(home, "SELECT model_run_ids FROM backtests WHERE run_id = ?", [summary["run_id"]])
    first, second = json.loads(model_runs)
    datasets = dict(rows(home, "SELECT run_id, dataset_id FROM runs"))
    assert datasets[first] == dataset_id and datasets[second] != dataset_id  # cutoff 1's model: its own dataset

    # the refit model of cutoff 1 never saw a value from the cutoff on: its dataset ends where the forecasts begin
    store = Store(home)
    derived = store.datasets.require(datasets[second])
    values = store.datasets.read_table(derived, "values").to_pandas()
    forecasts = pd.DataFrame(rows(home, "SELECT series_id, step, timestamp, actual FROM backtest_forecasts WHERE "
                                        "run_id = ? AND cutoff = 1", [summary["run_id"]]),
                             columns=["series_id", "step", "timestamp", "actual"])
    for sid, part in values.groupby("series_id"):
        test = part[part.part == "test"].sort_values("step")
        mine = forecasts[forecasts.series_id == sid].sort_values("step")
        assert list(test.timestamp) == list(mine.timestamp) and list(test.value) == list(mine.actual)
        assert part.timestamp.max() == mine.timestamp.max()


def test_a_refit_forecasts_a_series_too_short_to_train_on_at_its_cutoff(home, tmp_path):
    # s02 has 38 days: enough for a window in each part of the dataset (35), not once its last 5 days are gone
    frame = daily_series(n_series=3, days=80, seed=6)
    frame = frame[(frame.store != "s02") | (frame.day >= "2024-02-12")]
    assert (frame.store == "s02").sum() == 38
    path = write(frame, tmp_path / "daily.csv")
    from seqcast.flows.ingest import ingest

    dataset_id = ingest(source=str(path), id_column="store", time_column="day", value_column="sales", n_steps=14,
                        horizon=7, split="last-horizon")["dataset_id"]
    summary = backtest(variant="linear", dataset_id=dataset_id, windows=2, step=5, refit=True,
                       parameters={"epochs": 1})
    assert summary["n_series"] == 3
    ((model_runs,),) = rows(home, "SELECT model_run_ids FROM backtests WHERE run_id = ?", [summary["run_id"]])
    derived = Store(home).datasets.require(dict(rows(home, "SELECT run_id, dataset_id FROM runs"))[
        json.loads(model_runs)[1]])
    trained_on = set(Store(home).datasets.read_table(derived, "series").column("series_id").to_pylist())
    assert trained_on == {"s00", "s01"}  # the refit at cutoff 1 learned without s02 ...
    forecasts = dict(rows(home, "SELECT series_id, count(forecast) FROM backtest_forecasts WHERE run_id = ? AND "
                                "cutoff = 1 AND isfinite(forecast) GROUP BY series_id", [summary["run_id"]]))
    assert forecasts == {"s00": 7, "s01": 7, "s02": 7}  # ... and forecast it all the same


def test_a_series_a_refit_left_out_is_scaled_by_its_own_history():
    from seqcast.evaluation.backtest import cutoff_scaling

    values = {"series_id": np.repeat(["a", "b"], 30), "step": np.tile(np.arange(30), 2),
              "timestamp": np.tile(pd.date_range("2024-01-01", periods=30, freq="D").to_numpy(), 2),
              "value": np.r_[np.arange(30.0), 100 + 2 * np.arange(30.0)], "part": np.tile(["train"] * 23 +
                                                                                         ["test"] * 7, 2),
              "padded": np.zeros(60, dtype=bool)}
    at = cut(values, {"a": 1, "b": 1}, 7, 5, 1, 3)
    model = {"mode": "series", "stats": {"a": [1.0, 2.0]}}
    known_b = 100 + 2 * np.arange(20.0)  # b's 20 values before the cutoff 3 steps ahead of its test part
    assert cutoff_scaling(model, at)["stats"] == {"a": [1.0, 2.0], "b": [known_b.mean(), known_b.std()]}
    assert cutoff_scaling({"mode": "global", "stats": {"*": [0.0, 1.0]}}, at)["stats"] == {"*": [0.0, 1.0]}
    assert cutoff_scaling(None, at) is None


@pytest.mark.parametrize(("argv", "message"), [
    (["--windows", "0"], "windows: Input should be greater than or equal to 1"),
    (["--windows", "40"], "leaves no series of"),
    (["--step", "0"], "step: Input should be greater than or equal to 1"),
    (["--units", "8"], "does not use units"),
    (["--jobs", "0"], "--jobs must be at least 1, got 0"),
    (["--jobs", "2", "--address", "tcp://127.0.0.1:1"], "--jobs does not apply with --address"),
    (["--address", "nonsense://h:8786"], "no Dask scheduler answers at 'nonsense://h:8786'"),
])
def test_a_backtest_that_cannot_run_is_refused_before_any_work(home, tmp_path, capsys, argv, message):
    path = write(daily_series(n_series=2, days=60, seed=1), tmp_path / "daily.csv")
    dataset_id = ingested(capsys, str(path), *COLUMNS, "--n-steps", "14", "--horizon", "7", "--split", "last-horizon")
    before = table_versions(home)
    assert cli(["backtest", "--dataset-id", dataset_id, "--variant", "linear", *argv]) == 2
    assert message in capsys.readouterr().err
    assert table_versions(home) == before  # nothing trained, nothing recorded
    assert not (home / "models").exists()


def test_a_backtest_needs_a_last_horizon_dataset(home, tmp_path, capsys):
    path = write(daily_series(n_series=2, days=60, seed=1), tmp_path / "daily.csv")
    dataset_id = ingested(capsys, str(path), *COLUMNS, "--n-steps", "14", "--horizon", "7")
    before = table_versions(home)
    assert cli(["backtest", "--dataset-id", dataset_id, "--variant", "stats_naive"]) == 2
    assert "needs a dataset ingested with split='last-horizon'" in capsys.readouterr().err
    assert cli(["backtest", "--dataset-id", "ds-000000000000", "--variant", "stats_naive"]) == 2
    assert "ds-000000000000" in capsys.readouterr().err
    assert table_versions(home) == before


def test_backtest_all_skips_each_variant_that_cannot_run_and_refuses_when_none_can(home, tmp_path, capsys):
    from seqcast.models.registry import REGISTRY

    path = write(daily_series(n_series=2, days=60, seed=1), tmp_path / "daily.csv")
    dataset_id = ingested(capsys, str(path), *COLUMNS, "--n-steps", "14", "--horizon", "7", "--split", "last-horizon")
    before = table_versions(home)
    assert cli(["backtest", "--dataset-id", dataset_id, "--all", "--windows", "40"]) == 2
    err = capsys.readouterr().err.splitlines()
    skipped = {line.split()[2]: line for line in err if line.startswith("seqcast: skipping ")}
    assert sorted(skipped) == sorted(REGISTRY)  # --all names every variant, and each is skipped with its reason
    assert f"leaves no series of {dataset_id} with enough history to forecast from" in skipped["linear"]
    assert err[-1] == f"seqcast: error: no variant can be backtested on {dataset_id}"
    assert table_versions(home) == before and not (home / "models").exists()
