"""Live scoring: a held-back tail of M3 monthly series replayed point by point through `seqcast score` and the ingest
of a newer file, the live views against an independent computation, the monitor, and refused input."""

from __future__ import annotations

import json
import re
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import yaml

from seqcast.app.cli import main as cli
from seqcast.data import m3
from seqcast.deployments.monitor import monitor_deployment, monitor_spec
from seqcast.flows.backtest import backtest
from seqcast.flows.forecast import forecast
from seqcast.flows.ingest import ingest
from seqcast.flows.monitor import monitor
from seqcast.flows.predict import predict
from seqcast.forecasting.live import MonitorParams, flagged
from seqcast.storage import Store
from seqcast.storage.views import VIEWS
from seqcast.tasks.monitor import MONITOR_KEY
from tests.conftest import REPO_ROOT, results_db, table_versions

HELD_BACK = 6  # the tail each series hides from the model: one horizon
WINDOW = {"freq": "MS", "n_steps": 24, "horizon": HELD_BACK, "split": "last-horizon", "short_series": "pad"}
PERIOD = 12  # M3 monthly


@pytest.fixture(scope="module")
def live(prefect_harness, tmp_path_factory):
    """Thirty M3 monthly series ingested without their last 6 values, a linear model backtested on them (which
    trains it), and its forecasts of the 6 hidden months with intervals calibrated on that backtest."""
    data = m3.load_subset("monthly")
    chosen = list(range(0, len(data), 48))
    subset = m3.M3Subset("monthly", [data.series_ids[i] for i in chosen], [data.train[i] for i in chosen],
                         data.test[chosen], data.h, data.period, data.freq)
    whole = m3.long_frame(subset)
    position = whole.groupby("series_id").cumcount(ascending=False)  # 0 at each series' last value
    home = tmp_path_factory.mktemp("live") / "seqcast-home"
    files = tmp_path_factory.mktemp("files")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SEQCAST_HOME", str(home))
        known = whole[position >= HELD_BACK]
        known.to_parquet(files / "known.parquet")
        dataset_id = ingest(source=str(files / "known.parquet"), **WINDOW)["dataset_id"]
        tested = backtest(variant="linear", dataset_id=dataset_id, windows=3,
                          parameters={"epochs": 1, "seed": 7, "jit_compile": False})
        model_run_id = json.loads(rows(home, "SELECT model_run_ids FROM backtests")[0][0])[0]
        predicted = predict(run_id=model_run_id)
        yield SimpleNamespace(home=home, files=files, whole=whole, position=position, known=known,
                              dataset_id=dataset_id, backtest=tested, model_run_id=model_run_id,
                              forecast_run_id=predicted["run_id"], n_series=len(chosen))


def rows(home, sql, params=None):
    with results_db(home) as con:
        return con.execute(sql, params or []).fetchall()


def frame(home, sql, params=None) -> pd.DataFrame:
    with results_db(home) as con:
        return con.execute(sql, params or []).df()


def expected_errors(live, actuals: pd.DataFrame) -> pd.DataFrame:
    """Each forecast step's error computed here from the stored forecasts, the given actuals of the hidden tail
    and the seasonal-naive MASE scale of the known history."""
    forecasts = frame(live.home, "SELECT series_id, timestamp, step, value, lo_80, hi_80, lo_95, hi_95 "
                                 "FROM forecasts WHERE run_id = ?", [live.forecast_run_id])
    history = live.known.groupby("series_id")["value"].apply(
        lambda v: np.mean(np.abs(v.to_numpy()[PERIOD:] - v.to_numpy()[:-PERIOD])))
    merged = forecasts.merge(actuals.rename(columns={"value": "actual"}), on=["series_id", "timestamp"])
    merged["abs_error"] = (merged["actual"] - merged["value"]).abs()
    merged["scaled_error"] = merged["abs_error"] / merged["series_id"].map(history)
    merged["inside_80"] = (merged["lo_80"] <= merged["actual"]) & (merged["actual"] <= merged["hi_80"])
    merged["inside_95"] = (merged["lo_95"] <= merged["actual"]) & (merged["actual"] <= merged["hi_95"])
    return merged.sort_values(["series_id", "step"], ignore_index=True)


def live_errors(live) -> pd.DataFrame:
    return frame(live.home, "SELECT series_id, timestamp, step, actual, forecast, abs_error, scaled_error, inside_80, "
                            "inside_95, score_run_id, actuals_dataset_id FROM live_errors WHERE run_id = ? "
                            "ORDER BY series_id, step", [live.forecast_run_id])


def assert_matches(got: pd.DataFrame, expected: pd.DataFrame) -> None:
    assert list(zip(got["series_id"], got["step"])) == list(zip(expected["series_id"], expected["step"]))
    for column in ("actual", "abs_error", "scaled_error"):
        np.testing.assert_allclose(got[column], expected[column], rtol=1e-9)
    np.testing.assert_allclose(got["forecast"], expected["value"], rtol=1e-12)
    assert list(got["inside_80"]) == list(expected["inside_80"])
    assert list(got["inside_95"]) == list(expected["inside_95"])


def health(live) -> dict:
    (row,) = frame(live.home, "SELECT * FROM live_vs_backtest").to_dict("records")
    return row


def test_a_held_back_tail_replayed_point_by_point_scores_every_forecast_once(live, monkeypatch, capsys):
    monkeypatch.setenv("SEQCAST_HOME", str(live.home))
    n, tail = live.n_series, live.whole[live.position < HELD_BACK]
    assert rows(live.home, "SELECT count(*), count(lo_80), count(hi_95) FROM forecasts") == [(n * HELD_BACK,) * 3]

    for arrived in range(1, HELD_BACK + 1):  # the file grows by one month of every series at a time
        path = live.files / f"upto-{arrived}.csv"
        live.whole[live.position >= HELD_BACK - arrived].to_csv(path, index=False)
        assert cli(["score", "--source", str(path)]) == 0
        out = capsys.readouterr().out
        assert live.forecast_run_id in out and "live_vs_backtest" in out
        assert rows(live.home, "SELECT count(*), max(step) FROM live_errors") == [(n * arrived, arrived)]

    # every scoring rescored the steps before it: the table keeps them all, the view one per step
    assert rows(live.home, "SELECT count(*), count(DISTINCT score_run_id) FROM forecast_errors") == \
        [(n * sum(range(1, HELD_BACK + 1)), HELD_BACK)]
    expected = expected_errors(live, tail)
    got = live_errors(live)
    assert_matches(got, expected)
    assert got["actuals_dataset_id"].isna().all()

    # the live MASE beside the model run's newest backtest: the same numbers computed here
    row = health(live)
    (backtest_mase,) = rows(live.home, "SELECT mase FROM backtest_scores WHERE run_id = ? AND cutoff IS NULL",
                            [live.backtest["run_id"]])[0]
    assert (row["dataset_id"], row["model_run_id"], row["basis"], row["backtest_run_id"]) == \
        (live.dataset_id, live.model_run_id, "newest backtest", live.backtest["run_id"])
    assert row["live_mase"] == pytest.approx(expected["scaled_error"].mean(), rel=1e-9)
    assert row["backtest_mase"] == pytest.approx(backtest_mase, rel=1e-12)
    assert row["mase_ratio"] == pytest.approx(expected["scaled_error"].mean() / backtest_mase, rel=1e-9)
    assert row["coverage_80"] == pytest.approx(100 * expected["inside_80"].mean())
    assert (row["n_errors"], row["n_series"], row["retrain_dataset_id"]) == (n * HELD_BACK, n, live.dataset_id)

    # the live section of docs/results.md: its queries answer, and the view SQL it shows is the one in use
    section = (REPO_ROOT / "docs" / "results.md").read_text().split("## Live scores", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```sql\n(.*?)```", section, re.S)
    statements = [sql.strip() for block in blocks for sql in block.split(";") if sql.strip()]
    assert len(statements) == 5
    for sql in statements:
        if sql.startswith("CREATE"):
            assert sql in VIEWS
        else:
            assert rows(live.home, sql), sql

    # compacted tables give the same live errors
    assert cli(["results", "compact"]) == 0
    assert_matches(live_errors(live), expected)
    # a rewritten forecast run (a retried predict run) replaces its forecasts, not the errors that score them:
    # those belong to the scoring runs
    store = Store(live.home)
    forecasts = store.results.frame("SELECT * FROM forecasts WHERE run_id = ?", [live.forecast_run_id])
    store.results.record(live.forecast_run_id, {"forecasts": forecasts.to_dict("records")})
    assert_matches(live_errors(live), expected)

    # the honest tail is not flagged at the default threshold; its artifact lists no dataset
    assert row["mase_ratio"] < 1.2
    assert monitor() == []


def test_drifting_actuals_are_flagged_and_retrained_and_honest_ones_clear_it(live, monkeypatch, capsys):
    monkeypatch.setenv("SEQCAST_HOME", str(live.home))
    drifted = live.whole.copy()
    drifted.loc[live.position < HELD_BACK, "value"] *= 3  # the tail leaves the model's world
    drifted.to_parquet(live.files / "drifted.parquet")

    # an ingest of the newer file scores the stored forecasts the same way, in its own record
    newer = ingest(source=str(live.files / "drifted.parquet"), **WINDOW)
    assert newer["forecast_errors"] == live.n_series * HELD_BACK and newer["dataset_id"] != live.dataset_id
    got = live_errors(live)
    assert_matches(got, expected_errors(live, drifted[live.position < HELD_BACK]))
    assert (got["actuals_dataset_id"] == newer["dataset_id"]).all()
    assert rows(live.home, "SELECT count(*) FROM live_errors") == [(live.n_series * HELD_BACK,)]
    row = health(live)
    assert row["mase_ratio"] > 1.2 and row["retrain_dataset_id"] == newer["dataset_id"]

    # the monitor flags the dataset and retrains its model on the newer data through the forecast deployment
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
    from prefect.client.schemas.sorting import ArtifactSort

    forecast.to_deployment(name="linear", parameters={"variant": "linear"}).apply()  # registered, not served
    (flagged,) = monitor(retrain=True)
    assert (flagged["dataset_id"], flagged["model_run_id"]) == (live.dataset_id, live.model_run_id)
    assert flagged["mase_ratio"] == pytest.approx(row["mase_ratio"])
    with get_client(sync_client=True) as client:
        triggered = client.read_flow_run(flagged["retrain_flow_run_id"])
        (artifact,) = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[MONITOR_KEY])),
                                            sort=ArtifactSort.CREATED_DESC, limit=1)
    assert triggered.parameters["dataset_id"] == newer["dataset_id"]
    assert (triggered.parameters["variant"], triggered.parameters["epochs"], triggered.parameters["seed"]) == \
        ("linear", 1, 7)
    assert [r["dataset_id"] for r in json.loads(artifact.data)] == [live.dataset_id]

    # the honest file scored last wins again: nothing flagged
    honest_file = live.files / "honest.csv"
    live.whole.to_csv(honest_file, index=False)  # every value, none drifted
    assert cli(["score", "--source", str(honest_file)]) == 0
    assert_matches(live_errors(live), expected_errors(live, live.whole[live.position < HELD_BACK]))
    assert monitor() == []

    # a champion of the dataset (the champions table's contract) is judged against its own backtest score
    honest = health(live)
    store = Store(live.home)
    store.results.record("choice-1", {"champions": [{
        "choice_id": "choice-1", "dataset_id": live.dataset_id, "run_id": live.model_run_id, "variant": "linear",
        "backtest_run_id": live.backtest["run_id"], "chosen_at": pd.Timestamp.now(tz="UTC"),
        "score": honest["live_mase"] / 2}]})
    row = health(live)
    assert (row["basis"], row["model_run_id"]) == ("champion", live.model_run_id)
    assert row["backtest_mase"] == pytest.approx(honest["live_mase"] / 2)
    assert row["mase_ratio"] == pytest.approx(2.0)
    assert [r["dataset_id"] for r in monitor()] == [live.dataset_id]
    assert monitor(threshold=2.5) == []


def test_bad_score_input_is_refused_before_any_write(live, monkeypatch, capsys):
    monkeypatch.setenv("SEQCAST_HOME", str(live.home))
    before = table_versions(live.home)
    whole = live.whole

    def refused(frame_or_args, message: str):
        if isinstance(frame_or_args, pd.DataFrame):
            path = live.files / "bad.csv"
            frame_or_args.to_csv(path, index=False)
            frame_or_args = ["--source", str(path)]
        assert cli(["score", *frame_or_args]) == 2
        err = capsys.readouterr().err
        assert err.startswith("seqcast: error: ") and "Traceback" not in err and message in err, err

    stranger = whole[whole["series_id"] == whole["series_id"].iat[0]].assign(series_id="nope")
    refused(pd.concat([whole, stranger]), "series 'nope' has no stored forecast")
    refused(stranger, "the file matches no stored forecast")
    refused(live.known, "no actual after the forecast origin has arrived")
    first = live.known["series_id"].iat[0]
    refused(pd.concat([live.known[live.known["series_id"] == first], whole[whole["series_id"] != first]]),
            f"series {first!r}: the file ends at")
    refused(["--source", str(live.files / "upto-1.csv"), "--forecast-run-id", "nope"],
            "no stored forecast of forecast run nope")
    refused(["--source", str(live.files / "upto-1.csv"), "--dataset-id", "../x"], "dataset_id '../x' is not a plain id")
    refused(["--source", str(live.files / "missing.csv")], "no file at")
    refused(["--source", str(live.files / "notes.txt")], "neither a .csv nor a .parquet file")
    assert table_versions(live.home) == before


@pytest.mark.usefixtures("prefect_harness")
def test_an_empty_store_has_nothing_to_score(home, tmp_path, capsys):
    path = tmp_path / "sales.csv"
    pd.DataFrame({"series_id": "a", "timestamp": pd.date_range("2024-01-01", periods=3, freq="D"),
                  "value": [1.0, 2.0, 3.0]}).to_csv(path, index=False)
    assert cli(["score", "--source", str(path)]) == 2
    assert "no stored forecast in" in capsys.readouterr().err
    assert not (home / "records").exists()


@pytest.mark.usefixtures("prefect_harness")
def test_the_monitor_deployment_loads_and_matches_prefect_yaml():
    spec = monitor_spec()
    (declared,) = [d for d in yaml.safe_load((REPO_ROOT / "prefect.yaml").read_text())["deployments"]
                   if d["entrypoint"] == spec.entrypoint]
    assert (declared["name"], declared["parameters"], declared["tags"]) == (spec.name, spec.parameters,
                                                                            list(spec.tags))
    assert (declared["schedules"][0]["cron"], declared["schedules"][0]["timezone"]) == (spec.cron, spec.timezone)
    assert (REPO_ROOT / spec.entrypoint.split(":")[0]).is_file()
    deployment = monitor_deployment()
    assert deployment.name == "daily" and [s.schedule.cron for s in deployment.schedules] == ["0 0 * * *"]
    assert deployment.parameters == {"threshold": 1.2, "min_errors": 1, "retrain": False}
    with pytest.raises(ValueError, match="threshold"):
        monitor(threshold=0.5)


def test_only_models_past_the_threshold_with_enough_scored_steps_and_a_backtest_are_flagged():
    health = [{"dataset_id": "a", "mase_ratio": 1.5, "n_errors": 12}, {"dataset_id": "b", "mase_ratio": 1.1,
                                                                        "n_errors": 12},
              {"dataset_id": "c", "mase_ratio": None, "n_errors": 12}, {"dataset_id": "d", "mase_ratio": 9.0,
                                                                         "n_errors": 3}]
    assert [r["dataset_id"] for r in flagged(health, MonitorParams())] == ["a", "d"]
    assert [r["dataset_id"] for r in flagged(health, MonitorParams(min_errors=6))] == ["a"]
    assert [r["dataset_id"] for r in flagged(health, MonitorParams(threshold=1.05))] == ["a", "b", "d"]
    for bad, message in [({"threshold": 1.0}, r"threshold\n  Input should be greater than 1"),
                         ({"threshold": float("nan")}, r"threshold\n  Input should be a finite number"),
                         ({"min_errors": 0}, r"min_errors\n  Input should be greater than or equal to 1"),
                         ({"retrain": "maybe"}, r"retrain\n  Input should be a valid boolean")]:
        with pytest.raises(ValueError, match=message):
            MonitorParams(**bad)
