"""Statistical variants at scale: every split's fits in one pass through StatsForecast, a fallback for a failed fit,
the naive family without per-series loops, and the progress of the fits (log line and Prefect artifact)."""

from __future__ import annotations

import numpy as np
import pytest

from seqcast.data import m3
from seqcast.evaluation.holdout import forecast_groups, split_series
from seqcast.models import stats
from seqcast.storage import Store
from seqcast.tasks.progress import Progress
from tests.conftest import results_db


def ragged(n: int = 9, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.normal(10 + i, 1, 5 + 3 * i) for i in range(n)]


def test_the_naive_family_equals_its_series_by_series_definition():
    train = ragged()
    for h in (1, 5, 13):
        np.testing.assert_array_equal(stats.naive(train, 4, h), np.stack([np.full(h, x[-1]) for x in train]))
        for period in (1, 4, 5):
            expected = np.stack([np.resize(x[-period:], h) for x in train])
            np.testing.assert_array_equal(stats.seasonal_naive(train, period, h), expected)
    with pytest.raises(ValueError, match=r"series \[0\] are shorter than one period \(6\)"):
        stats.seasonal_naive(train, 6, 3)


def test_naive2_of_many_series_equals_its_series_by_series_definition():
    from seqcast.evaluation.baselines import naive2, naive2_one, seasonality_test

    rng = np.random.default_rng(1)
    seasonal = [rng.normal(10, 0.5, n) * (1 + 0.3 * np.sin(np.arange(n) * 2 * np.pi / 12))
                for n in rng.integers(1, 90, 300)]
    for train, period, h in [(m3.load_subset("monthly").train, 12, 18), (m3.load_subset("quarterly").train, 4, 8),
                             (seasonal + [np.full(40, 3.0), np.arange(1.0, 50.0)], 12, 18)]:
        expected = np.stack([naive2_one(x, period, h) for x in train])
        np.testing.assert_allclose(naive2(train, period, h), expected, rtol=1e-12)
        assert any(seasonality_test(np.asarray(x, float), period) for x in train)  # both branches are exercised


def test_a_series_whose_fit_fails_is_forecast_by_the_fallback_and_the_others_by_their_model():
    from statsforecast.models import Theta

    long = m3.load_subset("monthly").train[0]
    found = stats.forecast_stats("theta", [long, np.array([5.0, 6.0])], 12, 4)  # two values: too few for Theta
    np.testing.assert_array_equal(found[1], [6.0, 6.0, 6.0, 6.0])  # Naive: the last value
    np.testing.assert_allclose(found[0], Theta(season_length=12).forecast(y=np.asarray(long, float), h=4)["mean"],
                               rtol=1e-12)


def test_groups_in_chunks_equal_one_call_each_and_report_progress_up_to_the_total(monkeypatch):
    data = m3.load_subset("monthly")
    train = data.train[:23]
    alone = [stats.forecast_stats("theta", part, 12, 6) for part in (train[:10], train[10:])]
    monkeypatch.setattr(stats, "CHUNK_SERIES", 4)  # several chunks on these few series
    seen = []
    grouped = stats.forecast_stats_groups("theta", [train[:10], train[10:]], 12, 6, lambda d, t: seen.append((d, t)))
    for one, other in zip(alone, grouped):
        np.testing.assert_allclose(other, one, rtol=1e-12)
    assert [d for d, _ in seen] == [4, 8, 12, 16, 20, 23] and {t for _, t in seen} == {23}


def test_progress_reports_done_rate_and_time_left_at_most_every_interval_and_at_the_end():
    lines = []
    progress = Progress("fits", 10, every_s=3600, say=lines.append)
    progress(3)  # within the interval: not reported
    progress(10)
    assert len(lines) == 1 and lines[0].startswith("fits: 10/10 series (100%), ") and ", done in " in lines[0]
    assert progress.percent == 100.0
    progress = Progress("cutoffs", 4, unit="cutoffs", every_s=0, say=lines.append)
    progress(1)
    assert lines[-1].startswith("cutoffs: 1/4 cutoffs (25%), ") and lines[-1].endswith(" left")


def test_series_of_several_periods_are_fitted_per_period_in_one_pass_of_every_group():
    from seqcast.evaluation.holdout import SplitSeries

    train = ragged(6)
    groups = [SplitSeries([f"s{i}" for i in range(6)], train, np.zeros((6, 3)), np.array([1, 2, 1, 2, 1, 2])),
              SplitSeries(["s0", "s1"], train[:2], np.zeros((2, 3)), np.array([1, 2]))]
    seen = []
    found = forecast_groups("seasonal_naive", groups, 3, lambda d, t: seen.append((d, t)))
    for group, forecasts in zip(groups, found):
        expected = np.stack([np.resize(x[-p:], 3) for x, p in zip(group.history, group.period)])
        np.testing.assert_array_equal(forecasts, expected)
    assert seen[-1] == (8, 8)


def progress_artifacts(flow_run_id: str) -> list:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])))
    return [a for a in artifacts if a.type == "progress"]


@pytest.mark.usefixtures("prefect_harness")
def test_stats_theta_runs_and_backtests_store_statsforecasts_forecasts_and_progress_artifacts(home, tmp_path):
    import pandas as pd
    from statsforecast import StatsForecast
    from statsforecast.models import Theta

    from seqcast.evaluation.point import smape_steps
    from seqcast.flows.backtest import backtest
    from seqcast.flows.forecast import forecast
    from seqcast.flows.ingest import ingest

    data = m3.load_subset("monthly")
    # long series: every one has the history for each of three cutoffs 18 steps apart, as cross_validation needs
    chosen = [i for i in range(0, len(data), 60) if len(data.full(i)) >= 100][:8]
    subset = m3.M3Subset("monthly", [data.series_ids[i] for i in chosen], [data.train[i] for i in chosen],
                         data.test[chosen], data.h, data.period, data.freq)
    path = tmp_path / "m3-part.parquet"
    m3.long_frame(subset).to_parquet(path)
    dataset_id = ingest(source=str(path), freq="MS", n_steps=36, horizon=18, split="last-horizon",
                        short_series="pad")["dataset_id"]
    summary = forecast(variant="stats_theta", dataset_id=dataset_id)

    # the run: every series' sMAPE on each split is that of statsforecast's Theta fitted to what precedes it
    store = Store(home)
    values, periods = store.datasets.read_series_values(store.datasets.require(dataset_id))
    with results_db(home) as con:
        stored = {(split, sid): smape for split, sid, smape in con.execute(
            "SELECT split, series_id, smape FROM series_scores WHERE run_id = ? AND predictor = 'model'",
            [summary["run_id"]]).fetchall()}
    assert len(stored) == 2 * len(subset)
    for split in ("valid", "test"):
        series = split_series(values, periods, split, 18)
        for sid, history, actual in zip(series.series_ids, series.history, series.actual):
            direct = Theta(season_length=12).forecast(y=history, h=18)["mean"]
            # StatsForecast's own fits differ in the last bits between processes, hence a tolerance
            assert stored[(split, sid)] == pytest.approx(float(smape_steps(actual[None], direct[None]).mean()),
                                                         rel=1e-9)
    (shards,) = progress_artifacts(summary["run_id"])  # the shards' fits report in the log, the run in the UI
    assert shards.data == 100.0 and shards.key == "forecast-stats-theta-shards"

    # the backtest: each cutoff's forecasts are statsforecast's cross_validation windows, the last window cutoff 0
    result = backtest(variant="stats_theta", dataset_id=dataset_id, windows=3)
    frame = pd.DataFrame({"unique_id": np.repeat(subset.series_ids, [len(subset.full(i)) for i in range(len(subset))]),
                          "ds": np.concatenate([np.arange(len(subset.full(i))) for i in range(len(subset))]),
                          "y": np.concatenate([subset.full(i) for i in range(len(subset))])})
    cv = StatsForecast(models=[Theta(season_length=12)], freq=1).cross_validation(df=frame, h=18, n_windows=3,
                                                                                    step_size=18)
    cv["cutoff"] = cv.groupby("unique_id")["cutoff"].rank(method="dense", ascending=False).astype(int) - 1
    with results_db(home) as con:
        ours = con.execute("SELECT series_id AS unique_id, cutoff, step, forecast, actual FROM backtest_forecasts "
                           "WHERE run_id = ? ORDER BY ALL", [result["run_id"]]).df()
    cv = cv.sort_values(["unique_id", "cutoff", "ds"], ignore_index=True)
    assert len(ours) == len(cv) == 3 * 18 * len(subset)
    np.testing.assert_array_equal(ours["unique_id"], cv["unique_id"])
    np.testing.assert_array_equal(ours["cutoff"], cv["cutoff"])
    np.testing.assert_array_equal(ours["actual"], cv["y"])
    np.testing.assert_allclose(ours["forecast"], cv["Theta"], rtol=1e-9)
    # the backtest's two passes over the shards: forecasts, then intervals
    assert {artifact.key: artifact.data for artifact in progress_artifacts(result["run_id"])} == {
        "forecast-stats-theta-backtest-shards": 100.0, "forecast-stats-theta-backtest-intervals": 100.0}


def _fit_in_child(queue, train):
    queue.put(stats.forecast_stats("theta", train, 12, 6))


def test_a_daemonic_process_such_as_a_dask_workers_fits_in_itself_as_it_may_start_no_processes(monkeypatch):
    import multiprocessing

    train = m3.load_subset("monthly").train[:6]
    monkeypatch.setattr(stats, "PARALLEL_MIN_SERIES", 2)  # a process pool for these few series, where allowed
    expected = stats.forecast_stats("theta", train, 12, 6)
    context = multiprocessing.get_context("fork")  # the child sees the lowered threshold
    queue = context.Queue()
    child = context.Process(target=_fit_in_child, args=(queue, train), daemon=True)
    child.start()
    found = queue.get(timeout=120)
    child.join(timeout=30)
    np.testing.assert_allclose(found, expected, rtol=1e-9)
