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
