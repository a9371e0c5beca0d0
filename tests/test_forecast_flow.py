"""End to end: the forecast flow on tiny data under one Prefect test harness, asserting real DuckDB rows."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    FlowFilter,
    FlowFilterName,
    FlowRunFilter,
    FlowRunFilterId,
    FlowRunFilterStartTime,
)
from pydantic import ValidationError

from seqcast.app.cli import main as cli
from seqcast.flows.forecast import forecast
from seqcast.models.registry import ONE_STEP, REGISTRY
from seqcast.storage import Store
from seqcast.storage.datasets import SPLITS, UNSYNCED, find_dataset, read_split, sync_dataset, write_dataset
from tests.conftest import TINY, printed_table, results_db
from tests.prefect_server import prefect_api, task_run_states

pytestmark = pytest.mark.usefixtures("prefect_harness")


def rows(home: Path, sql: str, params=None):
    with results_db(home) as con:
        return con.execute(sql, params or []).fetchall()


def test_linear_end_to_end_then_dataset_reused(home):
    first = forecast(variant="linear", **TINY)
    run_id = first["run_id"]
    assert task_run_states(run_id, 7) == [(name, "Completed") for name in (
        "evaluate-model", "find-dataset", "generate-series", "persist-synthetic-dataset", "publish-artifacts",
        "record-results", "train-model")]
    with get_client(sync_client=True) as client:
        assert client.read_flow_run(run_id).name == f"linear · {first['dataset_id']}"

    (ds,) = rows(home, "SELECT dataset_id, n_series, n_steps, horizon, n_train, n_valid, n_test, path FROM datasets")
    assert ds[:7] == (first["dataset_id"], 240, 50, 1, 160, 40, 40) and (home / ds[7]).is_dir()
    assert not (home / ds[7] / UNSYNCED).exists()  # published unsynced, flushed to disk before the record named it
    (run,) = rows(home, "SELECT variant, status, epochs, n_params, model_path, flow_run_id, dataset_id FROM runs")
    assert run[:4] == ("linear", "completed", 2, 51) and run[5] == run_id and run[6] == first["dataset_id"]
    metric_rows = rows(home, "SELECT predictor, split, metric FROM metrics WHERE horizon_step IS NULL ORDER BY ALL")
    assert metric_rows == sorted((p, s, m) for p in ("model", "naive") for s in ("valid", "test")
                                 for m in ("mae", "mse", "rmse"))
    (valid_mse,) = rows(home, "SELECT value FROM metrics WHERE predictor='model' AND split='valid' AND metric='mse'")[0]
    assert valid_mse == pytest.approx(first["valid_mse"])
    assert rows(home, "SELECT epoch FROM history ORDER BY epoch") == [(1,), (2,)]
    assert rows(home, "SELECT count(*) FROM predictions WHERE split='test'") == [(40,)]

    manifest = Store(home).models.manifest(run[4])
    assert manifest["variant"] == "linear" and manifest["dataset_id"] == first["dataset_id"]
    assert manifest["epochs"] == 2 and "keras" in manifest["libraries"] and manifest["params"]["epochs"] == 2
    assert (home / run[4]).with_name("forecast.png").stat().st_size > 1000
    assert (home / run[4]).with_name("learning_curve.png").stat().st_size > 1000

    dataset_files = {p: p.stat().st_mtime_ns for p in (home / ds[7]).iterdir()}
    second = forecast(variant="naive", **TINY)
    assert second["dataset_id"] == first["dataset_id"]
    # no generate-series, no persist-synthetic-dataset: the dataset is reused
    assert task_run_states(second["run_id"], 4) == [(name, "Completed") for name in (
        "evaluate-model", "find-dataset", "publish-artifacts", "record-results")]
    assert {p: p.stat().st_mtime_ns for p in (home / ds[7]).iterdir()} == dataset_files
    assert rows(home, "SELECT count(*) FROM datasets") == [(1,)]
    board = rows(home, "SELECT variant, run_id, valid_mse, ratio_to_naive FROM leaderboard ORDER BY variant")
    assert [row[:2] for row in board] == [("linear", run_id), ("naive", second["run_id"])]
    assert board[0][2] == pytest.approx(first["valid_mse"]) and board[1][2] == pytest.approx(second["valid_mse"])
    assert board[1][3] == 1.0  # naive against itself


def test_a_dataset_a_crash_cut_short_is_generated_again(home):
    from seqcast.data.synthetic import SyntheticSpec, generate_splits

    spec = SyntheticSpec(n_series=240, n_train=160, n_valid=40, n_test=40)
    splits = generate_splits(spec)
    dataset = write_dataset(home / "datasets", spec.dataset_id, spec.model_dump(), splits)
    (dataset.path / "test.parquet").write_bytes(b"")  # published, then lost with the page cache before its sync
    result = forecast(variant="naive", **TINY)
    assert result["dataset_id"] == spec.dataset_id
    assert task_run_states(result["run_id"], 6) == [(name, "Completed") for name in (
        "evaluate-model", "find-dataset", "generate-series", "persist-synthetic-dataset", "publish-artifacts",
        "record-results")]
    assert [p.name for p in (home / "datasets").iterdir()] == [spec.dataset_id]  # the damaged copy is gone
    again = find_dataset(home / "datasets", spec.dataset_id)
    assert not (again.path / UNSYNCED).exists()  # generated again, and synced by the record step
    for name in SPLITS:
        assert np.array_equal(read_split(again, name), splits[name])
    assert rows(home, "SELECT count(*) FROM predictions WHERE split = 'test'") == [(40,)]


@pytest.mark.parametrize("variant, out_steps", [("lstm", 50), ("conv_gru", 24)])
def test_sequence_variants_record_per_step_metrics(home, variant, out_steps):
    result = forecast(variant=variant, **{**TINY, "epochs": 1, "jit_compile": False})  # no XLA compile: tiny data
    per_step = rows(home, "SELECT split, horizon_step FROM metrics WHERE predictor='model' AND metric='mse' "
                          "AND horizon_step IS NOT NULL ORDER BY ALL")
    assert per_step == [(s, h) for s in ("test", "valid") for h in range(1, 11)]
    (mean_of_steps,) = rows(home, "SELECT avg(value) FROM metrics WHERE predictor='model' AND metric='mse' "
                                  "AND split='valid' AND horizon_step IS NOT NULL")[0]
    assert mean_of_steps == pytest.approx(result["valid_mse"], rel=1e-6)  # equal horizons: mean of means
    (history,) = rows(home, "SELECT last_time_step_mse, val_last_time_step_mse FROM history")
    assert all(v is not None and v > 0 for v in history)
    assert rows(home, "SELECT horizon, variant FROM runs") == [(10, variant)]
    assert rows(home, "SELECT count(*) FROM horizon_errors WHERE split='valid'") == [(10,)]


@pytest.mark.slow  # the default run covers the reuse: iterative_10 waits for deep_rnn_dense in the process pool test
def test_iterative_trains_its_base_once_then_reuses_it(home):
    first = forecast(variant="iterative_10", **TINY)
    runs = dict(rows(home, "SELECT variant, run_id FROM runs"))
    assert set(runs) == {"deep_rnn_dense", "iterative_10"}
    (base_run_id, horizon, model_path) = rows(
        home, "SELECT base_run_id, horizon, model_path FROM runs WHERE variant='iterative_10'")[0]
    assert base_run_id == runs["deep_rnn_dense"] and horizon == 10
    assert model_path == rows(home, "SELECT model_path FROM runs WHERE variant='deep_rnn_dense'")[0][0]
    second = forecast(variant="iterative_10", **TINY)
    assert second["valid_mse"] == pytest.approx(first["valid_mse"])
    assert rows(home, "SELECT count(*) FROM runs WHERE variant='deep_rnn_dense'") == [(1,)]


@pytest.mark.parametrize("bad, message", [
    ({"variant": "transformer"}, "unknown variant 'transformer'; valid variants: naive, linear"),
    ({"n_steps": 1}, "greater than or equal to 2"),
    ({"n_train": 500}, "needs 580 series, but n_series is 240"),
    ({"epochs": 0}, "greater than or equal to 1"),
    ({"batch_size": 0}, "greater than or equal to 1"),
    ({"variant": "simple_rnn", "horizon": 10}, "forecasts exactly 1 step"),
    ({"base_run_id": "some-run"}, "base_run_id applies to iterative variants only .iterative_10., not to 'linear'"),
    ({"variant": "conv_gru", "n_steps": 51}, "needs n_steps >= 4 with n_steps - 4 a multiple of 2 .got 51.; use 52"),
])
def test_bad_input_rejected_before_any_work(home, bad, message):
    with pytest.raises(ValidationError, match=message):
        forecast(**{**TINY, **bad})
    assert not home.exists()


def test_unknown_dataset_fails_at_once_without_retry(home):
    state = forecast(variant="linear", dataset_id="ds-000000000000", return_state=True)
    assert state.is_failed()
    with pytest.raises(ValueError, match="no dataset 'ds-000000000000'.*seqcast ingest"):
        state.result()
    with get_client(sync_client=True) as client:
        assert client.read_flow_run(state.state_details.flow_run_id).run_count == 1  # the flow's retry was dropped
    assert not (home / "records").exists()


def test_code_version_names_the_commit_and_uncommitted_changes(tmp_path, monkeypatch):
    import seqcast
    from seqcast.config.version import code_version

    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))  # even where the temp dir is in a checkout
    assert code_version(tmp_path) == seqcast.__version__  # not a git checkout: the version alone
    git = ["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run([*git, "init", "-q"], check=True)
    (tmp_path / "model.py").write_text("units = 20\n")
    subprocess.run([*git, "add", "model.py"], check=True)
    subprocess.run([*git, "commit", "-qm", "first"], check=True)
    commit = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    assert code_version(tmp_path) == f"{seqcast.__version__}+{commit}"
    (tmp_path / "notes.txt").write_text("untracked files do not count\n")
    assert code_version(tmp_path) == f"{seqcast.__version__}+{commit}"
    (tmp_path / "model.py").write_text("units = 30\n")
    assert code_version(tmp_path) == f"{seqcast.__version__}+{commit}.dirty"


def test_cli_rejects_bad_input_with_clear_message(home, capsys, monkeypatch):
    assert cli(["run", "--variant", "linear", "--variant", "nope", "--epochs", "1"]) == 2
    err = capsys.readouterr().err
    assert "unknown variant 'nope'" in err and "valid variants: naive, linear, simple_rnn" in err
    assert cli(["run", "--all", "--batch-size", "0"]) == 2
    assert "batch_size: Input should be greater than or equal to 1" in capsys.readouterr().err
    assert cli(["run", "--all", "--dataset-id", "ds-000000000000"]) == 2
    assert "no dataset 'ds-000000000000'" in capsys.readouterr().err
    assert cli(["run", "--variant", "naive", "--variant", "linear", "--jobs", "0"]) == 2
    assert "--jobs must be at least 1, got 0" in capsys.readouterr().err
    assert cli(["run", "--variant", "naive", "--variant", "linear", "--jobs", "2", "--address", "tcp://h:8786"]) == 2
    assert "--jobs does not apply with --address" in capsys.readouterr().err
    assert cli(["run", "--variant", "naive", "--variant", "linear", "--address", "nonsense://h:8786"]) == 2
    assert "no Dask scheduler answers at 'nonsense://h:8786'" in capsys.readouterr().err
    monkeypatch.setenv("SEQCAST_TRAINING_SLOTS", "two")
    assert cli(["run", "--variant", "naive", "--variant", "linear"]) == 2
    assert "SEQCAST_TRAINING_SLOTS='two': Input should be a valid integer" in capsys.readouterr().err
    monkeypatch.delenv("SEQCAST_TRAINING_SLOTS")
    assert cli(["run", "--variant", "lstm", "--variant", "wavenet", "--units", "8"]) == 2
    assert "variant 'wavenet' does not use units: its architecture takes none" in capsys.readouterr().err
    assert not home.exists()


TINY_ARGS = ["--n-series", "240", "--n-train", "160", "--n-valid", "40", "--n-test", "40", "--epochs", "1"]


def test_run_exits_1_naming_a_failed_variant_and_keeps_the_others_results(home, capsys):
    from seqcast.data.synthetic import SyntheticSpec, generate_splits

    spec = SyntheticSpec(n_series=240, n_train=160, n_valid=40, n_test=40)
    dataset = write_dataset(home / "datasets", spec.dataset_id, spec.model_dump(), generate_splits(spec))
    sync_dataset(dataset.path)
    train_file = dataset.path / "train.parquet"
    train_file.write_bytes(train_file.read_bytes()[:100])  # deep_rnn_dense fails on it; naive never reads it
    assert cli(["run", "--variant", "deep_rnn_dense", "--variant", "naive", "--jobs", "2", *TINY_ARGS]) == 1
    captured = capsys.readouterr()
    assert [row["variant"] for row in printed_table(captured.out)] == ["naive"]
    assert captured.err.splitlines()[-1] == "seqcast: 1 variant(s) failed: deep_rnn_dense"
    assert rows(home, "SELECT variant, status FROM runs") == [("naive", "completed")]


def test_cli_run_one_step_and_sql(home, capsys):
    assert cli(["run", "--one-step", "--jobs", "1", *TINY_ARGS]) == 0  # make run's command, on tiny data
    table = printed_table(capsys.readouterr().out)
    board = {row["variant"]: row for row in table}
    assert sorted(board) == sorted(ONE_STEP) and len(ONE_STEP) == 5  # the seed notebook's one-step variants
    for variant, row in board.items():  # the book's figures, shown on the book's own (synthetic) data
        assert row["book_valid_mse"] == f"{REGISTRY[variant].book_valid_mse:.5g}"
        assert (row["horizon"], row["epochs"]) == ("1", "NULL" if variant == "naive" else "1")
    mses = [float(row["valid_mse"]) for row in table]
    assert mses == sorted(mses)  # ranked, best first
    assert board["naive"]["ratio_to_naive"] == "1"
    assert float(board["linear"]["ratio_to_naive"]) == pytest.approx(
        float(board["linear"]["valid_mse"]) / float(board["linear"]["naive_valid_mse"]), rel=1e-3)
    assert cli(["sql", "SELECT variant, epochs FROM runs ORDER BY variant", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out) == [{"variant": v, "epochs": None if v == "naive" else 1}
                                                   for v in sorted(ONE_STEP)]
    assert cli(["sql", "SELECT nope FROM runs"]) == 2
    assert "query failed" in capsys.readouterr().err

    # the store's own files are readable by their stored (relative) paths; CSV lines end in \n
    assert cli(["sql", "SELECT path FROM datasets", "--format", "csv"]) == 0
    header, folder, end = capsys.readouterr().out.split("\n")
    assert (header, end) == ("path", "") and folder.startswith("datasets/")
    assert cli(["sql", f"SELECT count(*) > 0 AS read FROM read_parquet('{folder}/**/*.parquet')", "--format",
                "csv"]) == 0
    assert capsys.readouterr().out == "read\nTrue\n"
    # read-only: nothing is written, to the database or to any file, and nothing outside the store is read
    outside = home.parent / "outside.csv"
    outside.write_text("secret\n")
    for sql, problem in ((f"COPY (SELECT 42) TO '{home}/datasets/x.csv'", "COPY statements are refused"),
                         ("COPY runs TO 'runs.parquet'", "COPY statements are refused"),
                         ("CREATE TABLE t (a INT)", "CREATE statements are refused"),
                         (f"ATTACH '{home.parent}/other.duckdb'", "ATTACH statements are refused"),
                         ("SET enable_external_access = true", "SET statements are refused"),
                         ("SELECT 1; SELECT 2", "one statement at a time"),
                         (f"SELECT * FROM read_csv('{outside}')", "Permission Error")):
        assert cli(["sql", sql]) == 2
        assert problem in capsys.readouterr().err, sql
    assert not (home / "datasets" / "x.csv").exists() and not Path("runs.parquet").exists()
    assert not (home.parent / "other.duckdb").exists()


def test_cli_runs_variants_in_parallel_processes(home, capsys, monkeypatch):
    """--jobs 2: linear and deep_rnn_dense train side by side in Prefect's process pool, one TensorFlow thread each;
    iterative_10 waits for its base. Each variant's forecast flow is a subflow of its task in one `run` flow."""
    from seqcast.flows.execution import available_cores

    monkeypatch.delenv("TF_NUM_INTRAOP_THREADS", raising=False)
    monkeypatch.delenv("TF_NUM_INTEROP_THREADS", raising=False)
    variants = ["iterative_10", "deep_rnn_dense", "linear"]  # iterative_10 first: it must still wait
    assert cli(["run", *(a for v in variants for a in ("--variant", v)), "--jobs", "2", "--no-jit-compile",
                *TINY_ARGS]) == 0
    captured = capsys.readouterr()
    threads = str(max(1, available_cores() // 2))
    assert f"3 variant(s), 2 at once in worker processes with {threads} TensorFlow thread(s) each" in captured.err
    assert "seqcast: started linear" in captured.err and "iterative_10 done in" in captured.err
    assert captured.err.index("deep_rnn_dense done in") < captured.err.index("started iterative_10")
    assert all(v in captured.out for v in variants)  # the leaderboard
    runs = dict((v, (run_id, start, end, base)) for v, run_id, start, end, base in rows(
        home, "SELECT variant, run_id, started_at, finished_at, base_run_id FROM runs"))
    assert sorted(runs) == sorted(variants)  # each recorded once; deep_rnn_dense trained once: iterative_10 reused it
    assert runs["iterative_10"][3] == runs["deep_rnn_dense"][0]
    (_, linear_start, linear_end, _), (_, dense_start, dense_end, _) = runs["linear"], runs["deep_rnn_dense"]
    assert linear_start < dense_end and dense_start < linear_end  # the two trainings overlapped in time
    for variant in ("linear", "deep_rnn_dense"):
        (path,) = rows(home, "SELECT model_path FROM runs WHERE variant = ?", [variant])[0]
        assert Store(home).models.manifest(path)["tensorflow_threads"] == threads
    with get_client(sync_client=True) as client:  # every forecast flow run is a subflow of the one run flow run
        (parent,) = {client.read_task_run(client.read_flow_run(run_id).parent_task_run_id).flow_run_id
                     for run_id, *_ in runs.values()}
        parent_run = client.read_flow_run(parent)
        assert parent_run.name == "run · 3 variant(s): iterative_10, deep_rnn_dense, linear"
        assert parent_run.state.is_completed()
        tasks = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[parent])))
        assert sorted(t.name for t in tasks if t.name in variants) == sorted(variants)  # one run-variant task each
    assert not (home / "logs").exists()


@pytest.mark.slow
def test_a_failed_parallel_variant_is_reported_and_the_others_kept(home, capsys):
    """A variant that fails is reported with its error; one that reuses it does not run; the others carry on."""
    from seqcast.data.synthetic import SyntheticSpec, generate_splits

    spec = SyntheticSpec(n_series=240, n_train=160, n_valid=40, n_test=40)
    dataset = write_dataset(home / "datasets", spec.dataset_id, spec.model_dump(), generate_splits(spec))
    sync_dataset(dataset.path)  # on disk, so not checked again: the damage below is found by training
    train_file = dataset.path / "train.parquet"
    train_file.write_bytes(train_file.read_bytes()[:100])  # a damaged training split: naive never reads it
    assert cli(["run", "--variant", "iterative_10", "--variant", "deep_rnn_dense", "--variant", "naive", "--jobs",
                "2", *TINY_ARGS]) == 1
    err = capsys.readouterr().err
    assert "deep_rnn_dense FAILED after" in err and "naive done in" in err
    (failure,) = [line for line in err.splitlines() if line.startswith("seqcast: deep_rnn_dense FAILED")]
    assert "Parquet" in failure  # the variant's own error names the cause
    assert "seqcast: iterative_10 not run: it reuses the run of deep_rnn_dense, which failed" in err
    assert "2 variant(s) failed: iterative_10, deep_rnn_dense" in err
    assert rows(home, "SELECT variant FROM runs") == [("naive",)]
    ((naive_run,),) = rows(home, "SELECT run_id FROM runs")
    with get_client(sync_client=True) as client:  # the run flow run ends Failed, naming the variants that failed
        parent = client.read_flow_run(client.read_task_run(client.read_flow_run(naive_run).parent_task_run_id)
                                      .flow_run_id)
    assert parent.state.is_failed()
    assert parent.state.message == "2 of 3 variant(s) failed: iterative_10, deep_rnn_dense"


def processes_with(env_entry: str) -> list[int]:
    """Live processes whose environment holds ``env_entry`` (e.g. ``SEQCAST_HOME=/tmp/x``)."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and env_entry.encode() in (proc / "environ").read_bytes().split(b"\0"):
                found.append(int(proc.name))
        except OSError:  # gone meanwhile, or not ours to read
            pass
    return found


def forecast_runs(api_url: str, created_after: datetime, state: str) -> list[str]:
    """The variants of the forecast flow runs created after ``created_after`` that are in ``state`` now."""
    with prefect_api(api_url), get_client(sync_client=True) as client:
        runs = client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=["forecast"])),
                                     flow_run_filter=FlowRunFilter(start_time=FlowRunFilterStartTime(
                                         after_=created_after)))
    return sorted(run.name.split(" · ")[0] for run in runs if run.state.name == state)


@pytest.mark.slow
def test_sigterm_stops_a_parallel_run_and_its_children(prefect_server, tmp_path):
    """`kill` of `seqcast run --jobs 2` ends it as Ctrl-C does: no worker process is left behind, and the runs they
    were training are recorded as crashed.

    The same exit path (SystemExit, not death by signal) runs Prefect's atexit hook that stops an ephemeral server;
    this test uses the session's running server to keep clear of a fresh server's start-up time.
    """
    from tests.conftest import REPO_ROOT

    home = tmp_path / "seqcast-home"
    env = prefect_server.client_env(SEQCAST_HOME=str(home))
    args = [*TINY_ARGS[:-2], "--epochs", "100000", "--patience", "100000"]  # training until stopped, however slow
    process = subprocess.Popen([sys.executable, "-m", "seqcast.app.cli", "run", "--variant", "linear", "--variant",
                                "deep_rnn_dense", "--jobs", "2", *args], cwd=REPO_ROOT, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    marker = f"SEQCAST_HOME={home}"
    began = datetime.now(UTC)
    try:
        started, lines = 0, []
        while started < 2 and (line := process.stderr.readline()):
            lines.append(line)
            started += line.startswith("seqcast: started ")
        assert started == 2, "".join(lines)
        threading.Thread(target=process.stderr.read, daemon=True).start()  # the workers' logs, read on
        deadline = time.monotonic() + 30  # under load, once, only 2 were found right after "started"
        while len(processes_with(marker)) < 3 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert len(processes_with(marker)) >= 3, "".join(lines)  # this command and its two worker processes
        deadline = time.monotonic() + 120
        while len(forecast_runs(prefect_server.api_url, began, "Running")) < 2 and time.monotonic() < deadline:
            time.sleep(0.5)  # the workers are still starting the forecast subflows
        assert len(forecast_runs(prefect_server.api_url, began, "Running")) == 2
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=90) == 128 + signal.SIGTERM
        deadline = time.monotonic() + 30
        while processes_with(marker) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert processes_with(marker) == []
        assert forecast_runs(prefect_server.api_url, began, "Crashed") == ["deep_rnn_dense", "linear"]
    finally:  # a failed assertion must not leave the run training on
        for pid in processes_with(marker):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def test_documented_queries_run_and_answer(home):
    import re

    from tests.conftest import REPO_ROOT

    for variant in ("naive_10", "linear_10"):
        forecast(variant=variant, **TINY)
    results_doc = (REPO_ROOT / "docs" / "results.md").read_text()
    questions = results_doc.split("### Questions users ask", 1)[1].split("\n#", 1)[0]
    blocks = re.findall(r"```sql\n(.*?)```", questions, re.S)
    assert len(blocks) >= 4
    for sql in blocks:
        assert rows(home, sql), f"docs/results.md query returned nothing:\n{sql}"
    pivot = [b for b in blocks if "PIVOT" in b][0]
    with results_db(home) as con:
        cursor = con.execute(pivot)
        columns = [d[0] for d in cursor.description]
        growth = cursor.fetchall()
    assert columns == ["horizon_step", "linear_10", "naive_10"]
    assert [r[0] for r in growth] == list(range(1, 11))
    assert growth[-1][2] > growth[0][2]  # naive's error grows with the horizon on sine waves


def test_a_run_whose_loss_diverges_ends_failed_and_never_ranks(home):
    from seqcast.training.fit import Diverged

    forecast(variant="naive", **TINY)
    with pytest.raises(Diverged, match=r"linear: loss became (nan|inf) at batch \d+ of epoch 1, so training stopped"):
        forecast(variant="linear", learning_rate=1e30, **TINY)
    (run_id, status, error, epochs) = rows(home, "SELECT run_id, status, error, epochs FROM runs "
                                                 "WHERE variant = 'linear'")[0]
    assert status == "failed" and "loss became" in error and epochs is None
    assert rows(home, "SELECT count(*) FROM metrics WHERE run_id = ?", [run_id]) == [(0,)]
    assert rows(home, "SELECT variant FROM leaderboard") == [("naive",)]  # the failed run never ranks
    with get_client(sync_client=True) as client:
        flow_run = client.read_flow_run(run_id)
    assert flow_run.state.is_failed() and flow_run.run_count == 1  # diverging again is certain: no retry


TINY_10 = {**TINY, "horizon": 10, "epochs": 2, "jit_compile": False}  # no XLA compile: tiny data


def test_nbeats_runs_through_the_forecast_flow_and_ranks_without_a_book_figure(home, capsys):
    from seqcast.app.cli import print_leaderboard
    from seqcast.reporting.report import metrics_table

    result = forecast(variant="nbeats_generic", **TINY_10)
    (run,) = rows(home, "SELECT variant, status, horizon, epochs, n_params, model_path FROM runs")
    # 2 stacks x 2 blocks of 4 Dense(64) on 50 inputs, minus the last block's unused backcast (tests/test_models.py)
    assert run[:5] == ("nbeats_generic", "completed", 10, 2, 83226)
    metrics = rows(home, "SELECT predictor, split, metric, horizon_step, value FROM metrics WHERE metric = 'mse'")
    per_step = sorted((p, s, h) for p, s, _, h, _ in metrics if h is not None)
    assert per_step == sorted((p, s, h) for p in ("model", "naive") for s in ("valid", "test") for h in range(1, 11))
    (valid_mse,) = [v for p, s, _, h, v in metrics if (p, s, h) == ("model", "valid", None)]
    assert valid_mse == pytest.approx(result["valid_mse"]) and np.isfinite(valid_mse)
    assert rows(home, "SELECT epoch FROM history ORDER BY epoch") == [(1,), (2,)]
    assert rows(home, "SELECT count(*) FROM predictions WHERE split='test'") == [(40 * 10,)]  # windows x steps
    assert Store(home).models.manifest(run[5])["variant"] == "nbeats_generic"

    # the book has no figure for N-BEATS: the report's and the leaderboard's book columns stay empty
    table = metrics_table("nbeats_generic", [{"predictor": p, "split": s, "metric": m, "horizon_step": h, "value": v}
                                             for p, s, m, h, v in metrics])
    assert [r["book"] for r in table] == [None, None]
    print_leaderboard(Store(home), [result])
    (line,) = [line for line in capsys.readouterr().out.splitlines() if line.startswith("nbeats_generic")]
    assert line.split()[:2] == ["nbeats_generic", "10"] and "NULL" in line.split()


def test_cli_variants_lists_nbeats_without_a_book_figure(capsys):
    assert cli(["variants"]) == 0
    lines = {line.split()[0]: line.split() for line in capsys.readouterr().out.splitlines() if line.strip()}
    for name in ("nbeats_generic", "nbeats_interpretable"):
        assert lines[name][1:6] == ["nbeats", "10", "vector", "units", "-"] and "N-BEATS" in lines[name]
    assert lines["lstm"][4:8] == ["units,", "dropout,", "recurrent_dropout", "0.0086"]
