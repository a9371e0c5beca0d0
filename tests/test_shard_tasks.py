"""Runs on sharded datasets: one evaluation task per shard, staged rows, figures from partial sums. What a run
records must not depend on how many shards hold the series, nor on where the shard tasks ran."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import distributed
import numpy as np
import pytest

from seqcast.app.cli import main as cli
from seqcast.data import m3
from seqcast.evaluation.holdout import split_series, split_series_of
from seqcast.evaluation.run import Sums, evaluate, evaluation, score_part
from seqcast.models.registry import get_variant
from tests.conftest import results_db

SHARDED = ("metrics", "step_scores", "split_scores", "series_scores", "predictions")
ORDER = {"metrics": "predictor, split, metric, horizon_step", "step_scores": "predictor, split, step",
         "split_scores": "split", "series_scores": "predictor, split, series_id",
         "predictions": "split, series_index, horizon_step"}


@pytest.fixture(scope="module")
def m3_file(tmp_path_factory):
    """120 M3 monthly series in the long format, a Parquet file."""
    frame = m3.load_long("monthly")
    ids = frame["series_id"].unique()[::12][:120]
    path = tmp_path_factory.mktemp("panel") / "m3-120.parquet"
    frame[frame["series_id"].isin(ids)].to_parquet(path)
    return path


def ingested(m3_file, shards: int, capsys) -> str:
    assert cli(["ingest", str(m3_file), "--freq", "MS", "--n-steps", "36", "--horizon", "18", "--split",
                "last-horizon", "--short-series", "pad", "--shards", str(shards)]) == 0
    return next(line.split("--dataset-id ")[1] for line in capsys.readouterr().out.splitlines()
                if "--dataset-id" in line).strip()


def recorded(home, run_id: str) -> dict[str, list[tuple]]:
    """Every sharded table's rows of the run, without the run id, in a fixed order."""
    with results_db(home) as con:
        found = {}
        for table in SHARDED:
            columns = [c for c in con.execute(f"SELECT * FROM {table} LIMIT 0").df().columns if c != "run_id"]
            found[table] = con.execute(f"SELECT {', '.join(columns)} FROM {table} WHERE run_id = ? "
                                       f"ORDER BY {ORDER[table]}", [run_id]).fetchall()
    return found


def assert_same_rows(one: dict[str, list[tuple]], other: dict[str, list[tuple]]) -> None:
    for table in SHARDED:
        assert len(one[table]) == len(other[table]) > 0, table
        for a, b in zip(one[table], other[table]):
            assert a == pytest.approx(b, rel=1e-12, nan_ok=True), table


def task_runs(flow_run_id: str) -> dict[str, int]:
    """The evaluate-shard task runs of a flow run (and of its subflows): name -> how many times it ran."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId, TaskRunFilter, TaskRunFilterName

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])),
                                     task_run_filter=TaskRunFilter(name=TaskRunFilterName(like_="evaluate shard")))
    return {run.name: run.run_count for run in runs}


@pytest.mark.usefixtures("prefect_harness")
def test_a_run_records_the_same_with_one_shard_and_with_seven_and_a_failed_shard_alone_runs_again(
        m3_file, tmp_path, monkeypatch, capsys):
    from seqcast.flows.forecast import forecast

    found, runs, homes = {}, {}, {}
    for shards in (1, 7):
        homes[shards] = home = tmp_path / f"home-{shards}"
        monkeypatch.setenv("SEQCAST_HOME", str(home))
        dataset_id = ingested(m3_file, shards, capsys)
        if shards == 7:  # shard 3's first try fails: it alone runs again, and the run records what it would have
            marker = tmp_path / "fail-once"
            marker.write_text("evaluate shard 3")
            monkeypatch.setenv("SEQCAST_TEST_FAIL_ONCE", str(marker))
        summary = forecast(variant="stats_theta", dataset_id=dataset_id)
        found[shards] = recorded(home, summary["run_id"])
        runs[shards] = task_runs(summary["run_id"])
        assert not (home / "staged" / summary["run_id"]).exists()  # committed, then the staged rows go
        monkeypatch.delenv("SEQCAST_TEST_FAIL_ONCE", raising=False)
    assert_same_rows(found[1], found[7])
    assert not marker.exists()  # the fault fired
    assert runs[1] == {"evaluate shard 0": 1}
    assert runs[7] == {f"evaluate shard {n}": 2 if n == 3 else 1 for n in range(7)}
    # every series scored once, whatever shard held it
    assert len(found[7]["series_scores"]) == len({row[:3] for row in found[7]["series_scores"]})
    assert len({row[2] for row in found[7]["series_scores"]}) == max(row[-1] for row in found[7]["split_scores"])

    # a neural model: one trained model scored on either dataset, shard by shard
    monkeypatch.setenv("SEQCAST_HOME", str(homes[1]))
    trained = forecast(variant="linear", dataset_id=dataset_id, epochs=1)
    run_folder = (homes[1] / trained["model_path"]).parent
    shutil.copytree(run_folder, homes[7] / run_folder.relative_to(homes[1]))
    with results_db(homes[1]) as con:
        (params,) = con.execute("SELECT params FROM runs WHERE run_id = ?", [trained["run_id"]]).fetchone()
    scored = {}
    for shards, home in homes.items():
        monkeypatch.setenv("SEQCAST_HOME", str(home))
        scored[shards] = score_with(json.loads(params), trained["model_path"], dataset_id)
    (one, one_predictions), (seven, seven_predictions) = scored[1], scored[7]
    for name in ("metrics", "step_scores", "split_scores"):
        assert len(getattr(one, name)) == len(getattr(seven, name)) > 0
        for a, b in zip(getattr(one, name), getattr(seven, name)):
            assert list(a.values()) == pytest.approx(list(b.values()), rel=1e-6)
    assert one_predictions.num_rows == seven_predictions.num_rows > 0
    np.testing.assert_allclose(one_predictions.column("y_pred"), seven_predictions.column("y_pred"), rtol=1e-5)
    np.testing.assert_array_equal(one_predictions.column("y_true"), seven_predictions.column("y_true"))


def score_with(params: dict, model_path: str, dataset_id: str):
    """A run's evaluation of a saved model (trained with ``params``) on the dataset (this home's), and its staged
    predictions sorted as the table keys them."""
    from prefect import flow

    from seqcast.config.params import ForecastParams
    from seqcast.flows.forecast import evaluate_run
    from seqcast.storage.home import current_store

    @flow
    def score():
        store = current_store()
        found = evaluate_run(ForecastParams(**params), store.datasets.require(dataset_id), model_path, "scoring",
                             []).evaluation
        predictions = store.staged.dataset("scoring", "predictions").to_table()
        return found, predictions.sort_by([("series_index", "ascending"), ("horizon_step", "ascending")])

    return score()


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_harness")
def test_a_runs_shards_spread_over_a_dask_cluster_and_a_killed_workers_shard_runs_again(
        m3_file, home, tmp_path, monkeypatch, capsys):
    """`seqcast run --address` on a sharded dataset: the run here, its shard tasks on the cluster's two workers; the
    worker scoring shard 2 is killed (SIGKILL) once, its shard alone runs again, and the run records what a run in
    this process records, each row once; so does a run in a process pool's worker (`--jobs`)."""
    dataset_id = ingested(m3_file, 4, capsys)
    assert cli(["run", "--variant", "stats_theta", "--dataset-id", dataset_id]) == 0
    marker = tmp_path / "kill-once"
    marker.write_text("kill evaluate shard 2")
    monkeypatch.setenv("SEQCAST_TEST_FAIL_ONCE", str(marker))
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
                                  ) as cluster, distributed.Client(cluster) as client:
        assert cli(["run", "--variant", "stats_theta", "--dataset-id", dataset_id, "--address",
                    cluster.scheduler_address]) == 0
        scored_there = client.run(lambda: "seqcast.tasks.evaluate" in sys.modules)
    err = capsys.readouterr().err
    assert f"each run's shards on the Dask cluster at {cluster.scheduler_address}" in err
    assert not marker.exists()  # the worker was killed
    assert any(scored_there.values())
    # and in a process pool's worker, beside another variant
    assert cli(["run", "--variant", "stats_theta", "--variant", "stats_naive", "--dataset-id", dataset_id,
                "--jobs", "2"]) == 0
    with results_db(home) as con:
        here, there, pooled = [row[0] for row in con.execute(
            "SELECT run_id FROM runs WHERE variant = 'stats_theta' ORDER BY finished_at").fetchall()]
    assert_same_rows(recorded(home, here), recorded(home, there))
    assert_same_rows(recorded(home, here), recorded(home, pooled))


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_harness")
def test_a_run_on_an_s3_home_stages_its_shards_in_the_bucket_and_records_what_a_local_home_records(
        m3_file, s3_home, tmp_path, monkeypatch, capsys):
    from seqcast.flows.forecast import forecast
    from seqcast.storage.home import current_store

    on_s3 = forecast(variant="stats_theta", dataset_id=ingested(m3_file, 3, capsys))
    store = current_store()
    assert not store.remote.list(f"staged/{on_s3['run_id']}")  # staged in the bucket, gone once committed
    local = tmp_path / "local-home"
    monkeypatch.setenv("SEQCAST_HOME", str(local))
    here = forecast(variant="stats_theta", dataset_id=ingested(m3_file, 1, capsys))
    found = {}
    for name, home, run_id in (("s3", None, on_s3["run_id"]), ("local", local, here["run_id"])):
        found[name] = {}
        for table in SHARDED:
            query = store.results if home is None else current_store().results
            names, table_rows = query.query(f"SELECT * EXCLUDE (run_id) FROM {table} WHERE run_id = ? "
                                            f"ORDER BY {ORDER[table]}", [run_id])
            found[name][table] = table_rows
    assert_same_rows(found["s3"], found["local"])


def _started(argv: list[str], cwd, log, env) -> subprocess.Popen:
    with log.open("w") as out:
        return subprocess.Popen(argv, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, env=env)


@pytest.mark.slow
def test_a_run_whose_cluster_loses_every_worker_fails_in_bounded_time_saying_why(m3_file, home, tmp_path):
    """As users run it: the `dask` CLI starts a scheduler and one worker without a nanny, and `seqcast` runs in its
    own process; the worker is killed by the first shard it scores, nothing starts it again, and the run fails after
    SEQCAST_DASK_WORKER_WAIT instead of waiting for ever."""
    marker = tmp_path / "kill-once"
    env = {**os.environ, "SEQCAST_HOME": str(home), "PREFECT_HOME": str(tmp_path / "prefect"),
           "SEQCAST_TEST_FAIL_ONCE": str(marker), "SEQCAST_DASK_WORKER_WAIT": "5"}
    env.pop("PREFECT_API_URL", None)
    seqcast, dask = (str(Path(sys.executable).with_name(name)) for name in ("seqcast", "dask"))
    ingest = subprocess.run([seqcast, "ingest", str(m3_file), "--freq", "MS", "--n-steps", "36", "--horizon", "18",
                             "--split", "last-horizon", "--short-series", "pad", "--shards", "3"],
                            env=env, capture_output=True, text=True, timeout=300)
    assert ingest.returncode == 0, ingest.stderr
    dataset_id = ingest.stdout.split("--dataset-id ")[1].split()[0]
    marker.write_text("kill evaluate shard 0")
    scheduler_file = tmp_path / "scheduler.json"
    processes = [_started([dask, "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                           "--scheduler-file", str(scheduler_file)], tmp_path, tmp_path / "scheduler.log", env)]
    try:
        processes.append(_started([dask, "worker", "--scheduler-file", str(scheduler_file), "--nthreads", "1",
                                   "--no-nanny", "--no-dashboard"], tmp_path, tmp_path / "worker.log", env))
        with distributed.Client(scheduler_file=str(scheduler_file), timeout=60) as client:
            client.wait_for_workers(1, timeout=60)
            address = client.scheduler.address
        started = time.monotonic()
        run = subprocess.run([seqcast, "run", "--variant", "stats_seasonal_naive", "--dataset-id", dataset_id,
                              "--address", address], env=env, capture_output=True, text=True, timeout=600)
        took = time.monotonic() - started
    finally:
        for process in processes:
            process.kill()
            process.wait()
    assert run.returncode == 1, run.stderr
    assert not marker.exists() and processes[1].returncode == -signal.SIGKILL
    assert f"the Dask cluster at {address} has had no workers for 5 s" in run.stderr
    assert "seqcast: 1 variant(s) failed: stats_seasonal_naive" in run.stderr
    assert took < 180  # start-up, the wait, the flow run's one retry (refused: no workers); not for ever


def test_the_parts_sums_give_the_figures_of_the_whole():
    """Scoring series in parts and adding the parts' sums gives what scoring them together gives."""
    rng = np.random.default_rng(0)
    n, n_steps, horizon = 40, 12, 6
    lengths = rng.integers(30, 60, n)
    ids = np.array([f"s{i:02d}" for i in range(n)], dtype=object)
    value = np.concatenate([100 + np.cumsum(rng.normal(size=k)) for k in lengths])
    step = np.concatenate([np.arange(k) for k in lengths])
    rows = np.repeat(np.arange(n), lengths)
    part = np.where(step >= lengths[rows] - horizon, "test",
                    np.where(step >= lengths[rows] - 2 * horizon, "valid", "train")).astype(object)
    padded = np.zeros(len(value), dtype=bool)
    columns = {"series_id": ids[rows], "step": step, "value": value, "part": part, "padded": padded}
    periods = dict.fromkeys(ids, 12)
    whole = {split: split_series(columns, periods, split, horizon) for split in ("valid", "test")}
    parts = {name: part == name for name in ("train", "valid", "test")}
    flat = {split: split_series_of(ids, lengths, np.full(n, 12), value, parts, padded, split, horizon)
            for split in ("valid", "test")}
    for split in whole:  # the vectorised split of stored series is the series-by-series one
        assert flat[split].series_ids == whole[split].series_ids
        np.testing.assert_array_equal(flat[split].actual, whole[split].actual)
        for a, b in zip(flat[split].history, whole[split].history):
            np.testing.assert_array_equal(a, b)

    def windows(series, split):
        x = np.stack([np.r_[h[-n_steps:], a] for h, a in zip(series[split].history, series[split].actual)])
        return x, np.array(series[split].series_ids, dtype=object)

    variant = get_variant("stats_seasonal_naive")
    from seqcast.data.scaling import Scaler

    together = evaluate(variant, None, n_steps, horizon, Scaler(), {s: windows(whole, s) for s in whole},
                        series=whole)
    halves = [[sid for sid in ids if int(sid[1:]) % 3 == k] for k in range(3)]
    sums = []
    for half in halves:
        subset = {s: whole[s].subset([sid for sid in whole[s].series_ids if sid in half]) for s in whole}
        part = score_part(variant, None, n_steps, horizon, Scaler(), {s: windows(subset, s) for s in subset},
                          series=subset)
        sums.append(Sums.from_json(part.sums.to_json()))  # as a shard task stages them
    combined = evaluation(sums)
    for name in ("metrics", "step_scores", "split_scores"):
        a, b = getattr(together, name), getattr(combined, name)
        assert len(a) == len(b) > 0
        for x, y in zip(a, b):
            assert x.keys() == y.keys()
            assert [x[k] for k in x] == pytest.approx([y[k] for k in y], rel=1e-12)
