"""The champion: the model a dataset's forecasts come from, chosen by backtest MASE with a margin, recorded."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from seqcast.app.cli import main as cli
from seqcast.flows.forecast import forecast
from seqcast.flows.predict import predict
from seqcast.forecasting.champion import Candidate, Sitting, choose
from seqcast.models import stats
from tests.conftest import results_db, table_versions
from tests.series_files import daily_series, write
from tests.test_backtest import ingested, monthly_file  # noqa: F401 (a fixture, used by name)

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def candidate(variant: str, mase: float, smape: float = 10.0, run_id: str | None = None, windows: int = 3,
              minutes: int = 0, backtest: str | None = None) -> Candidate:
    backtest = backtest or f"bt-{variant}-{windows}-{minutes}"
    return Candidate(run_id or backtest, variant, backtest, mase, smape, 18, windows, 18,
                     T0 + timedelta(minutes=minutes))


def sitting(c: Candidate) -> Sitting:
    return Sitting("choice-0", c.run_id, c.variant, c.backtest_run_id)


def test_the_lowest_mase_wins_and_a_challenger_must_beat_the_champion_by_the_margin():
    theta, naive2 = candidate("stats_theta", 0.90), candidate("stats_naive2", 1.00)
    linear = candidate("linear", 0.95, run_id="run-linear")
    first = choose("ds-1", [naive2, linear, theta], None, 2.0)
    assert (first.champion, first.runner_up, first.replaced) == (theta, linear, False)
    assert [c.variant for c in first.ranked] == ["stats_theta", "linear", "stats_naive2"]

    # a challenger 1.1% better stays behind a 2% margin, and is the runner-up; 3.3% better replaces the champion
    close, clear = candidate("linear", 0.89, run_id="run-linear-2"), candidate("linear", 0.87, run_id="run-linear-3")
    kept = choose("ds-1", [theta, close, naive2], sitting(theta), 2.0)
    assert (kept.champion, kept.runner_up, kept.replaced, kept.held_score) == (theta, close, False, 0.90)
    assert "within the 2% margin" in kept.reason
    taken = choose("ds-1", [theta, clear, naive2], sitting(theta), 2.0)
    assert (taken.champion, taken.runner_up, taken.replaced) == (clear, theta, True)
    assert choose("ds-1", [theta, close], sitting(theta), 1.0).champion == close  # the user's margin decides
    assert choose("ds-1", [theta, close], sitting(theta), 0).champion == close

    # ties on MASE go to sMAPE; a newer backtest of the same model replaces its older one
    tie = candidate("stats_ets", 0.90, smape=9.0)
    assert choose("ds-1", [theta, tie], None, 2.0).champion == tie
    rerun = candidate("stats_theta", 0.99, minutes=5)
    assert choose("ds-1", [theta, rerun, naive2], None, 2.0).ranked == [rerun, naive2]


def test_only_backtests_over_the_same_cutoffs_compare():
    three = [candidate("stats_theta", 0.9), candidate("stats_naive2", 1.0), candidate("linear", 0.95, run_id="r")]
    six = [candidate("stats_ets", 0.5, windows=6, minutes=9)]  # better, but over other cutoffs and alone there
    choice = choose("ds-1", three + six, None, 2.0)
    assert choice.champion.variant == "stats_theta" and len(choice.ranked) == 3
    # a sitting champion without a backtest over the compared cutoffs gives way to the best there
    gone = choose("ds-1", three + six, sitting(six[0]), 2.0)
    assert gone.champion.variant == "stats_theta" and gone.replaced and gone.held_score is None
    assert "has no backtest over these cutoffs" in gone.reason
    with pytest.raises(ValueError, match="no completed backtest with a MASE"):
        choose("ds-1", [candidate("linear", None, run_id="r")], None, 2.0)
    with pytest.raises(ValueError, match="margin must be a percentage"):
        choose("ds-1", three, None, 100)


def rows(home, sql: str, params=None):
    with results_db(home) as con:
        return con.execute(sql, params or []).fetchall()


def independent_mase(home) -> dict[str, tuple[float, float, str, str]]:
    """variant -> (MASE, sMAPE, backtest run, serving run), from every scored forecast of its backtest."""
    frame = pd.DataFrame(rows(home, "SELECT b.variant, b.run_id, coalesce(b.model_run_ids->>'$[0]', b.run_id), "
                                    "f.scaled_error, f.smape FROM backtest_forecasts f JOIN backtests b "
                                    "USING (run_id)"),
                         columns=["variant", "backtest", "run", "scaled_error", "smape"])
    return {variant: (part["scaled_error"].dropna().mean(), part["smape"].mean(), part["backtest"].iloc[0],
                      part["run"].iloc[0]) for variant, part in frame.groupby("variant")}


CHAMPIONS = "SELECT choice_id, run_id, variant, score, runner_up_variant, replaced, margin FROM champions ORDER BY ALL"


@pytest.mark.usefixtures("prefect_harness")
def test_the_champion_has_the_lowest_backtest_mase_and_serves_the_forecasts(home, capsys, monkeypatch,
                                                                           monthly_file):  # noqa: F811
    path, subset = monthly_file
    dataset_id = ingested(capsys, str(path), "--freq", "MS", "--n-steps", "36", "--horizon", "18", "--split",
                          "last-horizon", "--short-series", "pad")
    backtest = ["backtest", "--dataset-id", dataset_id, "--windows", "2", "--epochs", "1", "--seed", "7"]

    # one backtested model: it is the first champion, and predict without --run-id forecasts with its trained run
    assert cli([*backtest, "--variant", "linear"]) == 0
    assert cli(["predict", "--dataset-id", dataset_id]) == 0
    scores = independent_mase(home)
    ((choice_id, run_id, variant, score, runner_up, replaced, margin),) = rows(home, CHAMPIONS)
    assert (variant, run_id, runner_up, replaced, margin) == ("linear", scores["linear"][3], None, False, 2.0)
    assert score == pytest.approx(scores["linear"][0])
    assert rows(home, "SELECT status FROM runs WHERE run_id = ?", [run_id]) == [("completed",)]
    assert rows(home, "SELECT DISTINCT model_run_id, variant, choice_id, interval_run_id FROM forecasts") == [
        (run_id, "linear", choice_id, scores["linear"][2])]

    # Theta beats it here: with a margin (SEQCAST_CHAMPION_MARGIN) wider than its lead it only becomes the runner-up
    assert cli([*backtest, "--variant", "stats_naive2", "--variant", "stats_theta"]) == 0
    scores = independent_mase(home)
    best = min(scores, key=lambda v: scores[v][:2])
    lead = 100 * (1 - scores["stats_theta"][0] / scores["linear"][0])
    assert best == "stats_theta" and lead > 2, scores
    monkeypatch.setenv("SEQCAST_CHAMPION_MARGIN", f"{lead + 1:.3f}")
    assert cli(["champion", "--dataset-id", dataset_id]) == 0
    kept = rows(home, "SELECT variant, runner_up_variant, replaced, reason FROM current_champions")
    assert kept[0][:3] == ("linear", "stats_theta", False) and "within the" in kept[0][3]
    capsys.readouterr()

    # predict chooses with a 2% margin (--margin over the setting): the lowest MASE replaces the champion, forecasts
    assert cli(["predict", "--dataset-id", dataset_id, "--margin", "2"]) == 0
    monkeypatch.delenv("SEQCAST_CHAMPION_MARGIN")
    out = capsys.readouterr().out
    ((choice_id, run_id, variant, score, runner_up, replaced, previous),) = rows(
        home, "SELECT choice_id, run_id, variant, score, runner_up_variant, replaced, previous_variant "
              "FROM current_champions")
    assert (variant, run_id, replaced, previous) == ("stats_theta", scores["stats_theta"][2], True, "linear")
    assert score == pytest.approx(scores["stats_theta"][0]) and choice_id in out
    assert runner_up == min(set(scores) - {best}, key=lambda v: scores[v][:2])
    assert rows(home, "SELECT count(*) FROM champions") == [(3,)]
    served = rows(home, "SELECT DISTINCT model_run_id, variant, choice_id, interval_run_id FROM forecasts "
                        "WHERE choice_id = ?", [choice_id])
    assert served == [(run_id, "stats_theta", choice_id, scores["stats_theta"][2])]
    # Theta fitted on each series' whole history, as the backtest fits it at every cutoff
    sid = subset.series_ids[0]
    got = [v for (v,) in rows(home, "SELECT value FROM forecasts WHERE series_id = ? AND choice_id = ? ORDER BY step",
                              [sid, choice_id])]
    np.testing.assert_allclose(got, stats.theta([subset.full(0)], 12, 18)[0], rtol=1e-6)
    # as does a statistical forecast run named by --run-id
    named = predict(run_id=forecast(variant="stats_theta", dataset_id=dataset_id)["run_id"])
    assert named["choice_id"] is None and named["n_series"] == len(subset)
    assert [v for (v,) in rows(home, "SELECT value FROM forecasts WHERE series_id = ? AND run_id = ? ORDER BY step",
                               [sid, named["run_id"]])] == pytest.approx(got, rel=1e-9)
    # which model served which forecast, and why
    assert rows(home, "SELECT c.variant, bool_and(c.reason LIKE '%more than the 2% margin') FROM forecasts f "
                      "JOIN champions c USING (choice_id) GROUP BY ALL ORDER BY ALL") == [
        ("linear", False), ("stats_theta", True)]

    # predicting again on the same evidence (the default margin is 2%) records no new choice; the forecasts name the
    # standing one
    assert cli(["predict", "--dataset-id", dataset_id]) == 0
    assert rows(home, "SELECT count(*) FROM champions") == [(3,)]
    assert rows(home, "SELECT count(DISTINCT run_id) FROM forecasts WHERE choice_id = ?", [choice_id]) == [(2,)]

    # the choices are commits of their own: compacting the tables keeps every one
    before = rows(home, "SELECT * FROM champions ORDER BY chosen_at")
    assert cli(["results", "compact"]) == 0
    assert rows(home, "SELECT * FROM champions ORDER BY chosen_at") == before
    assert rows(home, "SELECT count(DISTINCT choice_id) FROM forecasts") == [(2,)]  # and NULL: the named run


@pytest.mark.usefixtures("prefect_harness")
def test_a_dataset_without_backtests_has_no_champion_and_says_which_command_gives_one(home, tmp_path, capsys):
    path = write(daily_series(n_series=2, days=60, seed=1), tmp_path / "daily.csv")
    columns = ("--id-column", "store", "--time-column", "day", "--value-column", "sales")
    last_horizon = ingested(capsys, str(path), *columns, "--n-steps", "14", "--horizon", "7", "--split",
                            "last-horizon")
    fractions = ingested(capsys, str(path), *columns, "--n-steps", "14", "--horizon", "7")
    before = table_versions(home)
    assert cli(["predict", "--dataset-id", last_horizon]) == 2
    assert f"`seqcast backtest --dataset-id {last_horizon} --variant" in capsys.readouterr().err
    assert cli(["champion", "--dataset-id", fractions]) == 2
    assert "needs a dataset ingested with --split last-horizon" in capsys.readouterr().err
    assert cli(["predict", "--dataset-id", last_horizon, "--variant", "naive", "--margin", "5"]) == 2
    assert "margin applies to the dataset's champion only" in capsys.readouterr().err
    assert table_versions(home) == before  # no choice, no forecast recorded


@pytest.mark.integration
def test_a_choice_is_a_commit_of_its_own_that_is_written_once(tmp_path):
    from seqcast.storage.results import Results

    results = Results(tmp_path)
    row = {"choice_id": "choice-1", "dataset_id": "ds-1", "run_id": "run-7", "variant": "linear",
           "backtest_run_id": "bt-1", "chosen_at": T0, "score": 0.9, "margin": 2.0, "replaced": False}
    for score in (0.9, 0.8):  # a second write of the same choice replaces the first
        results.record("choice-1", {"champions": [{**row, "score": score}]})
    assert rows(tmp_path, "SELECT choice_id, run_id, score FROM champions") == [("choice-1", "run-7", 0.8)]
    for value in (1.0, 2.0):  # the chosen run's own rows, written and rewritten, leave the choices alone
        results.record("run-7", {"forecasts": [{"run_id": "run-7", "series_id": "a", "step": 1, "value": value}]})
    assert rows(tmp_path, "SELECT value FROM forecasts") == [(2.0,)]
    assert rows(tmp_path, "SELECT count(*) FROM champions") == [(1,)]
    with pytest.raises(ValueError, match="champions rows of run choice-2 carry other choice_ids"):
        results.record("choice-2", {"champions": [row]})
    with pytest.raises(ValueError, match="champions.variant"):
        results.record("choice-1", {"champions": [{**row, "variant": "x'; DROP TABLE runs"}]})
    assert rows(tmp_path, "SELECT choice_id, score FROM current_champions") == [("choice-1", 0.8)]


def test_a_statistical_model_forecasts_a_new_file_from_each_series_whole_history(tmp_path):
    from seqcast.data.scaling import Scaler
    from seqcast.forecasting.predict import ChosenModel, PredictParams, file_latest, forecast_latest
    from seqcast.tasks.ingest import read_validated

    frame = daily_series(n_series=3, days=40, seed=2)
    params = PredictParams(run_id="bt-1", source=str(write(frame, tmp_path / "new.csv")), id_column="store",
                           time_column="day", value_column="sales")
    model = ChosenModel("bt-1", "stats_seasonal_naive", "ds-1", None, 14, 10, Scaler(), None)
    reader = params.reader(model.n_steps, model.horizon)
    latest = file_latest(read_validated(reader, model.n_steps), reader, model)
    assert [len(h) for h in latest.history.history] == [40, 40, 40] and list(latest.history.period) == [7, 7, 7]
    got = forecast_latest(model, None, latest)
    for i, (_, part) in enumerate(frame.groupby("store")):  # daily: the last week repeated
        np.testing.assert_allclose(got[i], np.resize(part["sales"].to_numpy()[-7:], 10))
