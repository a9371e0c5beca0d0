"""The results store under real concurrency: real OS processes, real files, a real DuckDB in temp dirs.

Flow runs use the ``naive`` variant on tiny data (no TensorFlow import), so six of them fit on two cores.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from seqcast.app.cli import main as cli
from seqcast.storage.migrate import migrate
from seqcast.storage.results import (
    TABLES,
    committed_records,
    load_records,
    pending_records,
    query,
    read_marker,
    rebuild,
    record_files,
    sync,
    write_record,
)
from seqcast.storage.table_queries import connect
from seqcast.storage.tables import Tables
from seqcast.storage.views import VIEW_NAMES
from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.integration  # storage: real files, a real DuckDB, real processes

ALL_TABLES = (*TABLES, "loaded_records")
N_CONCURRENT = 6
# One naive run on this data: (model, naive) x (valid, test) x (mse, mae, rmse); one prediction per test series.
NAIVE_ARGS = "variant='naive', n_series=240, n_train=160, n_valid=40, n_test=40"
METRICS_PER_RUN, PREDICTIONS_PER_RUN = 12, 40
FLOW_TIMEOUT_S = 300


def start_flow(server, home: Path, seed: int, **env: str) -> subprocess.Popen:
    """Start one forecast flow run as its own OS process against the shared Prefect server."""
    code = f"from seqcast.flows.forecast import forecast; forecast({NAIVE_ARGS}, seed={seed})"
    return subprocess.Popen([sys.executable, "-c", code], cwd=REPO_ROOT, text=True,
                            env=server.client_env(SEQCAST_HOME=str(home), **env),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def finish(process: subprocess.Popen, timeout_s: float = FLOW_TIMEOUT_S) -> tuple[int, str]:
    try:
        output, _ = process.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate()
    return process.returncode, output


def rows(db: Path, sql: str, params=None) -> list[tuple]:
    with duckdb.connect(str(db), read_only=True) as con:
        return con.execute(sql, params or []).fetchall()


def snapshot(db: Path) -> dict[str, list[tuple]]:
    """Every table's rows, in a canonical order."""
    return {t: rows(db, f"SELECT * FROM {t} ORDER BY ALL") for t in ALL_TABLES}


def sample_rows(run_id: str, tag: float = 1.0, n_predictions: int = 5, dataset_id: str = "ds-sample",
                variant: str = "linear") -> dict[str, list[dict] | pa.Table]:
    """Rows of one made-up run; ``tag`` changes every value so two writes of one run differ."""
    now = datetime.now(UTC)
    return {
        "datasets": [{"dataset_id": dataset_id, "kind": "synthetic", "spec": "{}", "n_series": 10, "n_steps": 50,
                      "horizon": 1, "n_train": 6, "n_valid": 2, "n_test": 2, "path": "/data", "created_at": now,
                      "content_hash": "sha256:00"}],
        "runs": [{"run_id": run_id, "variant": variant, "family": "dense", "dataset_id": dataset_id, "horizon": 1,
                  "params": "{}", "status": "completed", "started_at": now, "finished_at": now, "epochs": int(tag),
                  "code_version": "test"}],
        "metrics": [{"run_id": run_id, "predictor": p, "split": s, "metric": "mse", "horizon_step": None,
                     "value": tag * (2 if p == "naive" else 1)} for p in ("model", "naive") for s in ("valid", "test")],
        "history": [{"run_id": run_id, "epoch": e, "loss": tag / e} for e in range(1, int(tag) + 1)],
        "predictions": pa.table({
            "run_id": [run_id] * n_predictions, "split": ["test"] * n_predictions,
            "series_index": pa.array(range(n_predictions), pa.int64()),
            "horizon_step": pa.array([1] * n_predictions, pa.int32()),
            "y_true": pa.array([0.0] * n_predictions), "y_pred": pa.array([tag] * n_predictions)}),
    }


@pytest.fixture(scope="module")
def concurrent_runs(prefect_server, tmp_path_factory):
    """Six flow runs started together as separate processes on one SEQCAST_HOME: (home, [(rc, output)])."""
    home = tmp_path_factory.mktemp("concurrent") / "seqcast-home"
    processes = [start_flow(prefect_server, home, seed) for seed in range(N_CONCURRENT)]
    return home, [finish(p) for p in processes]


def test_concurrent_flow_runs_lose_and_duplicate_nothing(concurrent_runs):
    home, results = concurrent_runs
    for rc, output in results:
        assert rc == 0, output[-3000:]
    db = home / "results.duckdb"
    run_ids = [r for (r,) in rows(db, "SELECT run_id FROM runs")]
    assert len(run_ids) == len(set(run_ids)) == N_CONCURRENT
    assert set(run_ids) == set(committed_records(home / "records"))
    per_run = dict(rows(db, "SELECT run_id, count(*) FROM metrics GROUP BY run_id"))
    assert per_run == {r: METRICS_PER_RUN for r in run_ids}
    assert rows(db, "SELECT count(*) FROM (SELECT DISTINCT run_id, predictor, split, metric, horizon_step "
                    "FROM metrics)") == [(N_CONCURRENT * METRICS_PER_RUN,)]
    assert rows(db, "SELECT count(*), count(DISTINCT (run_id, series_index)) FROM predictions") == \
        [(N_CONCURRENT * PREDICTIONS_PER_RUN,) * 2]
    assert rows(db, "SELECT count(*) FROM datasets") == [(N_CONCURRENT,)]  # one seed, one dataset
    assert rows(db, "SELECT count(*) FROM leaderboard") == [(N_CONCURRENT,)]
    assert pending_records(home / "records", db) == []


def test_the_runs_records_migrate_into_delta_tables_that_read_as_the_database(concurrent_runs, tmp_path):
    """Real flow runs' records brought into the Delta tables: every table and view reads as in results.duckdb."""
    home, _ = concurrent_runs
    tables = Tables(tmp_path / "tables-home")
    migrated, skipped = migrate(home / "records", tables)
    assert sorted(migrated) == sorted(committed_records(home / "records")) and skipped == []
    over_tables = connect(tables)
    db = home / "results.duckdb"
    for name in [*TABLES, *VIEW_NAMES]:
        sql = f"SELECT * FROM {name} ORDER BY ALL"
        assert over_tables.execute(sql).fetchall() == rows(db, sql), name
    assert over_tables.execute("SELECT count(*) FROM leaderboard").fetchall() == [(N_CONCURRENT,)]


def test_rebuild_reproduces_every_table(concurrent_runs):
    home, _ = concurrent_runs
    db = home / "results.duckdb"
    before = snapshot(db)
    assert len(before["runs"]) == N_CONCURRENT
    report = rebuild(home / "records", db)
    assert sorted(report.loaded) == sorted(r for (r, *_) in before["runs"]) and not report.failed
    assert snapshot(db) == before
    db.unlink()  # the record alone is enough: a lost database comes back identical
    rebuild(home / "records", db)
    assert snapshot(db) == before


def test_rebuild_replaces_a_damaged_database_and_its_log(tmp_path):
    records, db = tmp_path / "records", tmp_path / "results.duckdb"
    write_record(records, "run-1", sample_rows("run-1"))
    db.write_bytes(b"not a database" * 100)
    Path(f"{db}.wal").write_bytes(b"nor a log")
    with pytest.raises(duckdb.Error):
        rows(db, "SELECT 1")
    assert rebuild(records, db).loaded == ["run-1"]
    assert rows(db, "SELECT run_id FROM runs") == [("run-1",)] and not Path(f"{db}.wal").exists()


def test_a_writer_racing_rebuild_lands_in_the_new_database(tmp_path, monkeypatch):
    """A writer that tries to load while rebuild swaps the files in waits for the lock and loads into the new file.

    The writer is started just before the swap, which waits until the writer has found the lock held (or has
    finished): had rebuild released the old file's lock before the rename, the writer would load into the old file
    and its rows would vanish with it.
    """
    records, db = tmp_path / "records", tmp_path / "results.duckdb"
    write_record(records, "early", sample_rows("early"))
    assert sync(records, db).loaded == ["early"]
    with duckdb.connect(str(db)) as con:  # the old file carries a write-ahead log, as after a writer's crash
        con.execute("PRAGMA disable_checkpoint_on_shutdown")
        con.execute("UPDATE runs SET epochs = 7")
    assert Path(f"{db}.wal").exists()
    writer_code = textwrap.dedent(f"""
        from pathlib import Path
        import duckdb
        from seqcast.storage.results import load_records
        connect = duckdb.connect
        def announcing_connect(*args, **kwargs):  # says, once, that it found the database locked
            try:
                return connect(*args, **kwargs)
            except duckdb.IOException:
                print("locked", flush=True)
                duckdb.connect = connect
                raise
        duckdb.connect = announcing_connect
        report = load_records(Path({str(db)!r}), {{"late": Path({str(records / "late")!r})}}, timeout_s=60)
        print(report.loaded, report.pending, report.lock_retries > 0)
    """)
    writers = []
    swap = os.replace

    def replace_with_a_racing_writer(src, dst):  # a run commits its record and loads it, just before the swap
        if Path(dst) != db:  # os.replace is the os module's: the record's own renames pass through
            return swap(src, dst)
        write_record(records, "late", sample_rows("late"))
        writers.append(subprocess.Popen([sys.executable, "-c", writer_code], cwd=REPO_ROOT, text=True,
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT))
        # until it says "locked"; or, from a writer the lock did not hold off, until its report (or its end)
        writers.append(next((line for line in writers[0].stdout if line == "locked\n" or line.startswith("[")), ""))
        swap(src, dst)

    monkeypatch.setattr(os, "replace", replace_with_a_racing_writer)
    report = rebuild(records, db, timeout_s=5)
    monkeypatch.undo()
    rc, output = finish(writers[0], timeout_s=60)
    assert writers[1] == "locked\n", writers[1] + output  # the race happened: the writer met rebuild's lock
    assert rc == 0 and "['late'] [] True" in output, output
    assert report.loaded == ["early"]  # "late" was committed after rebuild listed the record
    assert rows(db, "SELECT run_id, epochs FROM runs ORDER BY run_id") == [("early", 1), ("late", 1)]
    assert pending_records(records, db) == []


def test_run_completes_while_db_is_held_open_then_sync_loads_it(prefect_server, tmp_path, monkeypatch, capsys):
    home = tmp_path / "seqcast-home"
    db = home / "results.duckdb"
    home.mkdir()
    # A user's read-write DuckDB shell: a real process holding the file until its stdin closes.
    holder = subprocess.Popen(
        [sys.executable, "-c", (f"import duckdb, sys; con = duckdb.connect({str(db)!r}); "
                                "print('held', flush=True); sys.stdin.read(); con.close()")],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        rc, output = finish(start_flow(prefect_server, home, seed=7, SEQCAST_DB_LOCK_TIMEOUT="1"))
        assert rc == 0, output[-3000:]
        assert "not yet in DuckDB" in output and "lock retries" in output
        (run_id,) = committed_records(home / "records")

        # A reader waits only its bounded time, then says why.
        monkeypatch.setenv("SEQCAST_HOME", str(home))
        monkeypatch.setenv("SEQCAST_DB_LOCK_TIMEOUT", "0.5")
        assert cli(["sql", "SELECT count(*) FROM runs"]) == 2
        assert "stayed locked by another process" in capsys.readouterr().err
        assert cli(["results", "sync"]) == 2
        assert "locked by another process; nothing was loaded" in capsys.readouterr().err
    finally:
        holder.communicate(input="", timeout=30)
    assert holder.returncode == 0

    sync_cli = subprocess.run([sys.executable, "-m", "seqcast.app.cli", "results", "sync"], cwd=REPO_ROOT, text=True,
                              env={**os.environ, "SEQCAST_HOME": str(home)}, capture_output=True, timeout=120,
                              check=False)
    assert sync_cli.returncode == 0, sync_cli.stderr
    assert "loaded 1 run(s)" in sync_cli.stdout
    assert rows(db, "SELECT run_id FROM runs") == [(run_id,)]
    assert rows(db, "SELECT count(*) FROM metrics") == [(METRICS_PER_RUN,)]
    assert pending_records(home / "records", db) == []


def test_sql_is_read_only_and_releases_the_file(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SEQCAST_HOME", str(tmp_path))
    load_records(tmp_path / "results.duckdb", {"r1": write_record(tmp_path / "records", "r1", sample_rows("r1"))})
    assert cli(["sql", "SELECT run_id FROM runs", "--format", "csv"]) == 0
    assert capsys.readouterr().out.split() == ["run_id", "r1"]
    assert cli(["sql", "DELETE FROM runs"]) == 2
    assert "DELETE statements are refused: seqcast sql only reads" in capsys.readouterr().err
    # Another process must get the write lock at once (timeout 0): the query's connection is closed.
    writer = subprocess.run(
        [sys.executable, "-c", ("import sys; from pathlib import Path; "
                                "from seqcast.storage.results import connect_writer; "
                                f"sys.exit(connect_writer(Path({str(tmp_path / 'results.duckdb')!r}), 0) is None)")],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert writer.returncode == 0, writer.stderr
    assert rows(tmp_path / "results.duckdb", "SELECT count(*) FROM runs") == [(1,)]


KILL_CHILD = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    import pyarrow.parquet as pq
    from seqcast.storage.results import write_record
    from tests.test_results_store import sample_rows

    record_root, run_id, ready = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
    real_write_table = pq.write_table

    def write_half_then_hang(table, where, **kwargs):
        # Stop the predictions file half-way: a real, footerless Parquet file on disk when the kill lands.
        if "predictions" not in str(where):
            return real_write_table(table, where, **kwargs)
        with pq.ParquetWriter(where, table.schema) as writer:
            writer.write_table(table.slice(0, len(table) // 2))
            writer.file_handle.flush()
            ready.write_text(str(where))
            time.sleep(600)

    pq.write_table = write_half_then_hang
    write_record(record_root, run_id, sample_rows(run_id, tag=2.0, n_predictions=200_000))
""")


@pytest.mark.parametrize("earlier_write", [True, False], ids=["retry-of-committed-run", "first-write"])
def test_sigkill_mid_write_leaves_nothing_taken_as_valid(tmp_path, earlier_write):
    records, db = tmp_path / "records", tmp_path / "results.duckdb"
    run_id = "run-killed"
    if earlier_write:
        write_record(records, run_id, sample_rows(run_id, tag=1.0))
        assert run_id in sync(records, db).loaded
    before = snapshot(db) if earlier_write else None
    marker_before = read_marker(records / run_id) if earlier_write else None

    ready = tmp_path / "ready"
    child = subprocess.Popen([sys.executable, "-c", KILL_CHILD, str(records), run_id, str(ready)], cwd=REPO_ROOT,
                             stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not ready.exists():
        assert child.poll() is None, child.stderr.read()
        assert time.monotonic() < deadline, "the writer never reached the predictions file"
        time.sleep(0.05)
    partial = Path(ready.read_text())
    assert partial.stat().st_size > 0
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)
    child.stderr.close()
    assert child.returncode == -signal.SIGKILL and partial.exists()

    if earlier_write:  # the previous complete write is still the record, byte for byte
        assert read_marker(records / run_id) == marker_before
        assert all(p.is_file() for p in record_files(records / run_id).values())
    else:  # tables written before the kill exist on disk, but nothing names them as committed
        assert read_marker(records / run_id) is None and run_id not in committed_records(records)
    assert not sync(records, db).loaded
    assert pending_records(records, db) == []
    if earlier_write:
        assert snapshot(db) == before
        assert rows(db, "SELECT DISTINCT y_pred FROM predictions") == [(1.0,)]

    write_record(records, run_id, sample_rows(run_id, tag=2.0, n_predictions=50))  # re-running completes
    assert sync(records, db).loaded == [run_id]
    assert rows(db, "SELECT count(*), min(y_pred), max(y_pred) FROM predictions") == [(50, 2.0, 2.0)]
    assert rows(db, "SELECT count(*) FROM runs") == [(1,)]
    assert not partial.exists()  # the crashed write's leftovers are cleaned by the next write


def test_retried_run_leaves_exactly_one_set_of_rows(tmp_path):
    records, db = tmp_path / "records", tmp_path / "results.duckdb"
    write_record(records, "other", sample_rows("other", tag=5.0))
    first = write_record(records, "run-1", sample_rows("run-1", tag=1.0, n_predictions=7))
    assert sorted(sync(records, db).loaded) == ["other", "run-1"]
    second = write_record(records, "run-1", sample_rows("run-1", tag=3.0, n_predictions=4))
    assert second == first
    assert sync(records, db).loaded == ["run-1"]
    assert sync(records, db).loaded == []  # idempotent: nothing new, nothing reloaded

    assert rows(db, "SELECT run_id, epochs FROM runs ORDER BY run_id") == [("other", 5), ("run-1", 3)]
    assert rows(db, "SELECT count(*), min(value) FROM metrics WHERE run_id = 'run-1'") == [(4, 3.0)]
    assert rows(db, "SELECT count(*) FROM history WHERE run_id = 'run-1'") == [(3,)]
    assert rows(db, "SELECT count(*), max(y_pred) FROM predictions WHERE run_id = 'run-1'") == [(4, 3.0)]
    assert rows(db, "SELECT count(*) FROM metrics WHERE run_id = 'other'") == [(4,)]
    (write_id,) = rows(db, "SELECT write_id FROM loaded_records WHERE run_id = 'run-1'")[0]
    assert write_id == read_marker(first)["write_id"]
    # Only the latest write's files are left in the run's folder.
    assert sorted(p.name for p in first.iterdir()) == sorted(["_COMMITTED", *read_marker(first)["files"]])


HOSTILE = ["x'; DROP TABLE runs; --", 'ds"; DROP TABLE datasets; --', "a;b", "../escape", "-- comment"]


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_names_are_rejected_and_tables_stay_intact(tmp_path, monkeypatch, capsys, name):
    monkeypatch.setenv("SEQCAST_HOME", str(tmp_path))
    records, db = tmp_path / "records", tmp_path / "results.duckdb"
    write_record(records, "good", sample_rows("good"))
    sync(records, db)
    before = snapshot(db)

    assert cli(["run", "--variant", name]) == 2
    assert "not a plain name" in capsys.readouterr().err
    assert cli(["run", "--variant", "iterative_10", "--base-run-id", name]) == 2
    assert "base_run_id" in capsys.readouterr().err
    for bad_rows, run_id, message in [
        (sample_rows("r2", dataset_id=name), "r2", "dataset_id"),
        (sample_rows("r3", variant=name), "r3", "runs.variant"),
        (sample_rows("good"), name, "run id"),
    ]:
        with pytest.raises(ValueError, match=f"{message} .* is not a plain name"):
            write_record(records, run_id, bad_rows)
    assert sorted(p.name for p in records.iterdir()) == ["good"]  # rejected before anything was written
    sync(records, db)
    assert snapshot(db) == before


def test_documented_lineage_query_reaches_data_model_run_and_code(concurrent_runs):
    """The lineage query of docs/results.md, run as documented, leads to files that exist and to the Prefect run."""
    home, _ = concurrent_runs
    results_doc = (REPO_ROOT / "docs" / "results.md").read_text()
    lineage_sql = results_doc.split("### Lineage", 1)[1].split("```sql", 1)[1].split("```", 1)[0]
    columns, found = query(home / "results.duckdb", lineage_sql.replace("'linear'", "'naive'"))
    (row,) = [dict(zip(columns, r)) for r in found]
    assert row["flow_run_id"] in committed_records(home / "records")
    assert row["code_version"].startswith("0.1.0")
    # paths are relative to SEQCAST_HOME, so the record means the same on any machine that has the home
    assert (row["dataset_folder"], row["record_path"]) == (f"datasets/{row['dataset_id']}",
                                                          f"records/{row['flow_run_id']}")
    manifest = json.loads((home / row["dataset_folder"] / "dataset.json").read_text())
    assert manifest["content_hash"] == row["dataset_hash"]
    assert query(home / "results.duckdb", "SELECT count(*) FROM read_parquet(?)", [row["predictions_parquet"]],
                 home=home)[1] == [(PREDICTIONS_PER_RUN,)]
    assert row["model_path"] is None  # the naive variant has no model; trained variants name their .keras file


def test_records_and_databases_from_before_the_stored_scores_still_load(tmp_path):
    """A database made before ``split_scores`` and the backtest score tables existed gains them on the next load;
    a record written before (no rows in them) loads beside a new one, and the views select the new one's scores."""
    records, db = tmp_path / "records", tmp_path / "results.duckdb"
    write_record(records, "old", {**sample_rows("old"), "series_scores": [
        {"run_id": "old", "predictor": p, "split": "test", "series_id": "a", "smape": 10.0, "mase": 1.0}
        for p in ("model", "naive2")]})
    sync(records, db)
    with duckdb.connect(str(db)) as con:  # the schema of a seqcast that computed these scores in the views
        for table in ("split_scores", "backtest_cutoff_scores", "backtest_level_scores"):
            con.execute(f"DROP TABLE {table}")
    write_record(records, "new", {**sample_rows("new", dataset_id="ds-other"), "split_scores": [
        {"run_id": "new", "split": "test", "smape": 12.0, "mase": 1.5, "naive2_smape": 24.0, "naive2_mase": 1.5,
         "owa": 0.75, "n_series": 3}]})
    report = sync(records, db)
    assert report.loaded == ["new"] and not report.failed
    assert rows(db, "SELECT run_id, split, smape, mase, owa, n_series, naive2_smape FROM benchmark_scores") == [
        ("new", "test", 12.0, 1.5, 0.75, 3, 24.0)]
    assert rows(db, "SELECT count(*) FROM series_scores WHERE run_id = 'old'") == [(2,)]
    assert rows(db, "SELECT count(*) FROM backtest_scores") == [(0,)]
    rebuild(records, db)  # the records alone give the same
    assert rows(db, "SELECT run_id, owa FROM benchmark_scores") == [("new", 0.75)]
