"""The M3 benchmark: its flow's table against DuckDB and its artifacts, its variant list, and bench/m3.py's report."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bench import m3 as bench_m3
from seqcast.evaluation.m3_benchmark import (
    OVERALL,
    Anchor,
    BenchmarkParams,
    default_variants,
    fits_benchmark,
    leaderboard,
)
from seqcast.models.registry import REGISTRY
from tests.conftest import results_db


def db_rows(home, sql: str, params: list) -> list[tuple]:
    with results_db(home) as con:
        return con.execute(sql, params).fetchall()


@pytest.mark.usefixtures("prefect_harness")
def test_benchmark_flow_table_matches_duckdb_and_is_published(home):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterKey

    from seqcast.flows.m3_benchmark import m3_benchmark
    from seqcast.tasks.leaderboard import BENCHMARK_KEY, CHART_KEY

    anchor = Anchor(subset="other", variant="stats_naive2", smape=6.3, source="a test", kind="measured")
    state = m3_benchmark(subsets=["other", "yearly"], variants=["stats_naive", "stats_naive2"], anchors=[anchor],
                         return_state=True)
    assert state.is_completed(), state.message
    result = state.result()
    table, runs = result["table"], result["runs"]
    assert len(runs) == 4 and {r["state"] for r in runs} == {"Completed"}

    # every subset row is the benchmark_scores view's row of its run
    view = {row[0]: row[1:] for row in db_rows(
        home, "SELECT run_id, smape, mase, owa, n_series FROM benchmark_scores WHERE split = 'test' "
              "AND run_id IN (SELECT unnest(?))", [[r["run_id"] for r in runs]])}
    subset_rows = [r for r in table if r["subset"] != OVERALL]
    assert len(subset_rows) == 4 and len(view) == 4
    for row in subset_rows:
        assert (row["smape"], row["mase"], row["owa"], row["n_series"]) == pytest.approx(view[row["run_id"]])
    assert {r["n_series"] for r in subset_rows if r["subset"] == "other"} == {174}

    # overall: each variant's per-series average over both subsets, by SQL of its own; Naive2's OWA is 1
    overall = {r["variant"]: r for r in table if r["subset"] == OVERALL}
    for variant, row in overall.items():
        ids = [r["run_id"] for r in runs if r["variant"] == variant]
        (expected,) = db_rows(home, "SELECT avg(smape), avg(mase), count(*) FROM series_scores WHERE split = 'test' "
                                    "AND predictor = 'model' AND run_id IN (SELECT unnest(?))", [ids])
        assert (row["smape"], row["mase"], row["n_series"]) == pytest.approx(expected)
        assert row["n_series"] == 174 + 645
    assert all(r["owa"] == pytest.approx(1.0) for r in table if r["variant"] == "stats_naive2")
    mean_of_means = sum(r["smape"] for r in subset_rows if r["variant"] == "stats_naive") / 2
    assert overall["stats_naive"]["smape"] != pytest.approx(mean_of_means)  # the weighting matters here
    assert next(r["anchor"] for r in subset_rows if (r["subset"], r["variant"]) == ("other", "stats_naive2")) \
        == anchor.text()

    # the artifacts of this flow run hold the same table, and a chart
    flow_run_id = state.state_details.flow_run_id
    with get_client(sync_client=True) as client:
        found = {a.key: a for a in client.read_artifacts(artifact_filter=ArtifactFilter(
            key=ArtifactFilterKey(any_=[BENCHMARK_KEY, CHART_KEY]),
            flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])))}
    assert set(found) == {BENCHMARK_KEY, CHART_KEY}
    published = json.loads(found[BENCHMARK_KEY].data)
    assert [(r["subset"], r["variant"], r["run_id"]) for r in published] == \
        [(r["subset"], r["variant"], r["run_id"]) for r in table]
    assert [r["smape"] for r in published] == pytest.approx([r["smape"] for r in table])
    chart = found[CHART_KEY].data
    assert "data:image/png;base64," in chart and f"{overall['stats_naive2']['smape']:.2f}" in chart


def test_default_variants_are_those_that_fit_an_ingested_last_horizon_dataset():
    chosen = default_variants()
    assert "iterative_10" not in chosen and "simple_rnn" not in chosen  # refused on a dataset's horizon
    assert not [v for v in chosen if REGISTRY[v].horizon == 1]  # one-step twins of multi-step variants
    assert {"stats_theta", "stats_naive2", "linear_10", "nbeats_generic", "nbeats_interpretable"} <= set(chosen)
    assert chosen == [v for v in REGISTRY if fits_benchmark(v)]
    with pytest.raises(ValueError, match="iterative_10"):
        BenchmarkParams(variants=["linear_10", "iterative_10"])
    with pytest.raises(ValueError, match=r"subsets.0\n  Input should be 'yearly', 'quarterly', 'monthly' or 'other'"):
        BenchmarkParams(subsets=["weekly"])


def series(run_id: str, values: list[tuple[float, float]], naive2: tuple[float, float]) -> list[dict]:
    rows = []
    for i, (smape, mase) in enumerate(values):
        rows.append({"run_id": run_id, "predictor": "model", "series_id": f"{run_id}-{i}", "smape": smape,
                     "mase": mase})
        rows.append({"run_id": run_id, "predictor": "naive2", "series_id": f"{run_id}-{i}", "smape": naive2[0],
                     "mase": naive2[1]})
    return rows


def test_report_gives_overall_as_the_per_series_average_across_subsets(tmp_path):
    # one yearly series at sMAPE 10, three monthly at 20: per series 17.5, where the mean of the subsets is 15
    runs = [{"subset": "yearly", "variant": "linear_10", "run_id": "r1", "state": "Completed", "wall_s": 2.0,
             "epochs": 3},
            {"subset": "monthly", "variant": "linear_10", "run_id": "r2", "state": "Completed", "wall_s": 5.0,
             "epochs": 4}]
    rows = series("r1", [(10.0, 1.0)], (20.0, 2.0)) + series("r2", [(20.0, 1.0)] * 3, (20.0, 2.0))
    scores = [{"run_id": "r1", "smape": 10.0, "mase": 1.0, "owa": 0.5, "n_series": 1},
              {"run_id": "r2", "smape": 20.0, "mase": 1.0, "owa": 0.75, "n_series": 3}]
    everywhere = Anchor(subset=OVERALL, variant="linear_10", smape=12.0, source="all of M3", kind="published")
    table = leaderboard(runs, scores, rows, [everywhere])
    assert all(r["anchor"] == "" for r in table)  # two subsets of four: the figure for all of M3 does not apply
    text = bench_m3.markdown({"table": table, "runs": runs}, [], "bench/m3.py --subset yearly", 9.0)
    overall = text.split(f"## {OVERALL}")[1].splitlines()
    line = next(line for line in overall if line.startswith("| linear_10 "))
    # sMAPE 17.50 per series; OWA 0.5 * (17.5 / 20 + 1 / 2) = 0.6875; 4 series; wall time 2 + 5
    assert line.startswith("| linear_10 | 17.50 | 1.000 | 0.688 | 4 | 7 |")
    assert "15.00" not in line
    assert "## yearly (1 series)" in text and "## monthly (3 series)" in text


def test_variant_and_subset_lists_split_on_commas_and_spaces():
    assert bench_m3.split_names(["stats_theta,linear_10", "nbeats_generic lstm"]) == \
        ["stats_theta", "linear_10", "nbeats_generic", "lstm"]
    assert bench_m3.split_names(None) is None and bench_m3.split_names([""]) is None


@pytest.mark.usefixtures("prefect_harness")
def test_benchmark_backtests_score_the_intervals_on_the_test_values(home):
    from seqcast.flows.m3_benchmark import m3_benchmark

    state = m3_benchmark(subsets=["other"], variants=["stats_naive2"], backtest_windows=3, return_state=True)
    assert state.is_completed(), state.message
    result = state.result()
    (run,) = result["runs"]
    assert run["backtest_state"] == "Completed" and result["parameters"]["backtest_windows"] == 3

    # coverage and MSIS of the test cutoff, computed here from the stored forecasts and intervals
    stored = db_rows(home, "SELECT actual, lo_80, hi_80, lo_95, hi_95, scale FROM backtest_forecasts WHERE "
                           "run_id = ? AND cutoff = 0", [run["backtest_run_id"]])
    actual, lo_80, hi_80, lo_95, hi_95, scale = (np.array(c, dtype=np.float64) for c in zip(*stored))
    assert len(actual) == 174 * 8 and np.isfinite(lo_80).all()

    def msis(lo, hi, alpha):
        return np.mean((hi - lo + 2 / alpha * np.maximum(lo - actual, 0) + 2 / alpha * np.maximum(actual - hi, 0))
                       / scale)

    expected = [100 * np.mean((actual >= lo_80) & (actual <= hi_80)), msis(lo_80, hi_80, 0.2),
                100 * np.mean((actual >= lo_95) & (actual <= hi_95)), msis(lo_95, hi_95, 0.05)]
    view = db_rows(home, "SELECT split, backtest_run_id, coverage_80, msis_80, coverage_95, msis_95 FROM "
                         "benchmark_scores WHERE run_id = ? ORDER BY split", [run["run_id"]])
    assert view[0][:2] == ("test", run["backtest_run_id"]) and view[0][2:] == pytest.approx(expected)
    assert view[1] == ("valid", None, None, None, None, None)  # the intervals are scored on the test values only
    (row,) = [r for r in result["table"] if r["subset"] == "other"]
    assert [row[k] for k in ("coverage_80", "msis_80", "coverage_95", "msis_95")] == pytest.approx(expected)
    assert 50 < expected[0] < expected[2] <= 100

    # a run without a backtest has none
    plain = m3_benchmark(subsets=["other"], variants=["stats_naive"])
    (row,) = [r for r in plain["table"] if r["subset"] == "other"]
    assert row["smape"] is not None and row["coverage_80"] is None and row["msis_95"] is None


def test_refit_is_an_option_of_the_backtests():
    with pytest.raises(ValueError, match="set backtest_windows as well"):
        BenchmarkParams(refit=True)
    with pytest.raises(ValueError, match="backtest_windows"):
        BenchmarkParams(backtest_windows=1)
    params = BenchmarkParams(subsets=["other"], variants=["mlp", "stats_theta"], backtest_windows=3, refit=True)
    assert params.backtest_params("mlp", "ds-1")["refit"] is True
    assert params.backtest_params("mlp", "ds-1")["parameters"] == {"epochs": 30, "patience": 5, "batch_size": 32}
    assert params.backtest_params("stats_theta", "ds-1")["refit"] is False  # fits every cutoff's history anyway
    assert BenchmarkParams(variants=["mlp"]).backtest_params("mlp", "ds-1") is None


def test_the_report_shows_interval_scores_beside_the_reference_intervals():
    runs = [{"subset": "monthly", "variant": v, "run_id": v, "state": "Completed", "wall_s": 1.0, "epochs": None}
            for v in ("mlp", "stats_ets")]
    scores = [{"run_id": "mlp", "smape": 14.0, "mase": 0.9, "owa": 0.9, "n_series": 2, "coverage_80": 79.25,
               "msis_80": 4.876, "coverage_95": 94.5, "msis_95": 7.61},
              {"run_id": "stats_ets", "smape": 14.2, "mase": 0.86, "owa": 0.84, "n_series": 2}]
    ets = Anchor(subset="monthly", variant="stats_ets", coverage_80=74.7, msis_80=4.2, coverage_95=89.7, msis_95=6.83,
                 source="statsforecast", kind="measured")
    table = leaderboard(runs, scores, [], [ets])
    lines = bench_m3.score_table([r for r in table if r["subset"] == "monthly"])
    assert "coverage 80 | MSIS 80 | coverage 95 | MSIS 95" in lines[0]
    mlp = next(line for line in lines if line.startswith("| mlp "))
    assert "| 79.2 | 4.88 | 94.5 | 7.61 |" in mlp
    ets_line = next(line for line in lines if line.startswith("| stats_ets "))
    assert "| – | – | – | – |" in ets_line and "coverage 80 74.7 MSIS 80 4.20 coverage 95 89.7 MSIS 95 6.83" in ets_line
    assert all(r["coverage_80"] is None for r in table if r["subset"] == OVERALL)
    assert "coverage" not in bench_m3.score_table([{**r, "coverage_80": None, "coverage_95": None}
                                                   for r in table])[0]  # no backtest, no interval columns


@pytest.mark.usefixtures("prefect_harness")
def test_benchmark_runs_and_backtests_side_by_side_in_worker_processes_with_jobs(home):
    from prefect.client.orchestration import get_client

    from seqcast.flows.m3_benchmark import m3_benchmark

    state = m3_benchmark(subsets=["other"], variants=["stats_naive", "stats_naive2"], backtest_windows=2, jobs=2,
                         return_state=True)
    assert state.is_completed(), state.message
    runs = state.result()["runs"]
    assert [(r["variant"], r["state"], r["backtest_state"]) for r in runs] == \
        [("stats_naive", "Completed", "Completed"), ("stats_naive2", "Completed", "Completed")]
    with get_client(sync_client=True) as client:  # each ran as a subflow of a run flow, not in line
        for flow_run_id in [r["run_id"] for r in runs] + [r["backtest_run_id"] for r in runs]:
            task_run = client.read_task_run(client.read_flow_run(flow_run_id).parent_task_run_id)
            assert client.read_flow_run(task_run.flow_run_id).name == "run · 2 variant(s): stats_naive, stats_naive2"
    backtested = dict(db_rows(home, "SELECT variant, count(DISTINCT cutoff) FROM backtest_forecasts JOIN backtests "
                                    "USING (run_id) GROUP BY variant", []))
    assert backtested == {"stats_naive": 2, "stats_naive2": 2}


def test_jobs_and_an_address_together_are_refused_before_any_work(home):
    from seqcast.flows.m3_benchmark import m3_benchmark

    with pytest.raises(ValueError, match="jobs must be at least 1, and 1 with an address"):
        m3_benchmark.fn(subsets=["other"], variants=["stats_naive"], jobs=2, address="tcp://127.0.0.1:1")
    assert not (home / "datasets").exists()
