"""`seqcast run --address`: the variants on a real Dask cluster (a LocalCluster of worker processes started here)."""

from __future__ import annotations

import sys

import distributed
import pytest

from seqcast.app.cli import main as cli
from seqcast.storage import Store
from tests.conftest import results_db
from tests.test_forecast_flow import TINY_ARGS

pytestmark = pytest.mark.usefixtures("prefect_harness")

ONE_THREAD = {"TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1"}


@pytest.mark.slow
def test_variants_run_on_an_existing_dask_cluster(home, capsys):
    """Two worker processes of one thread each, started with one TensorFlow thread as docs/deployments.md says; the
    workers inherit this test's SEQCAST_HOME, and report to this process's Prefect API."""
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                  env=ONE_THREAD) as cluster, distributed.Client(cluster) as client:
        assert cli(["run", "--variant", "naive", "--variant", "linear", "--address", cluster.scheduler_address,
                    *TINY_ARGS]) == 0
        ran_here = client.run(lambda: "seqcast.flows.forecast" in sys.modules)  # which workers ran a forecast flow
    captured = capsys.readouterr()
    assert f"2 variant(s) on the Dask cluster at {cluster.scheduler_address} (2 worker thread(s))" in captured.err
    assert "naive done in" in captured.err and "linear done in" in captured.err
    assert "naive" in captured.out and "linear" in captured.out  # the leaderboard
    assert any(ran_here.values())
    with results_db(home) as con:
        runs = con.execute("SELECT variant, model_path FROM runs ORDER BY variant").fetchall()
    assert [variant for variant, _ in runs] == ["linear", "naive"]  # each recorded once
    assert Store(home).models.manifest(runs[0][1])["tensorflow_threads"] == "1"  # the worker's environment


def test_a_cluster_without_workers_is_refused_before_any_work(home, capsys):
    with distributed.LocalCluster(n_workers=0, processes=True, dashboard_address=None) as cluster:
        assert cli(["run", "--variant", "naive", "--address", cluster.scheduler_address, *TINY_ARGS]) == 2
    assert f"the Dask cluster at {cluster.scheduler_address} has no workers" in capsys.readouterr().err
    assert not home.exists()


@pytest.mark.slow
def test_backtests_run_on_an_existing_dask_cluster(home, capsys, tmp_path):
    """`seqcast backtest --address` on an ingested (sharded) dataset: each variant's backtest here, its shard tasks
    on the Dask workers, recorded where this process records."""
    from seqcast.data import m3

    data = m3.load_subset("monthly")
    chosen = list(range(0, len(data), 200))
    subset = m3.M3Subset("monthly", [data.series_ids[i] for i in chosen], [data.train[i] for i in chosen],
                         data.test[chosen], data.h, data.period, data.freq)
    path = tmp_path / "m3-part.parquet"
    m3.long_frame(subset).to_parquet(path)
    assert cli(["ingest", str(path), "--freq", "MS", "--n-steps", "36", "--horizon", "18", "--split", "last-horizon",
                "--short-series", "pad"]) == 0
    dataset_id = next(line.split("--dataset-id ")[1] for line in capsys.readouterr().out.splitlines()
                      if "--dataset-id" in line).strip()
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                  env=ONE_THREAD) as cluster, distributed.Client(cluster) as client:
        assert cli(["backtest", "--dataset-id", dataset_id, "--variant", "stats_naive", "--variant", "stats_theta",
                    "--windows", "2", "--address", cluster.scheduler_address]) == 0
        ran_here = client.run(lambda: "seqcast.tasks.backtest" in sys.modules)  # which workers ran its shards
    err = capsys.readouterr().err
    # a sharded dataset: the backtests here one after another, each one's shards on the cluster
    assert f"2 variant(s) one after another, each run's shards on the Dask cluster at {cluster.scheduler_address}" \
        in err
    assert "stats_naive done in" in err and "stats_theta done in" in err
    assert any(ran_here.values())
    with results_db(home) as con:
        scored = con.execute("SELECT variant, n_series FROM backtest_scores WHERE cutoff IS NULL ORDER BY variant"
                             ).fetchall()
    assert scored == [("stats_naive", len(subset)), ("stats_theta", len(subset))]
