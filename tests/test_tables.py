"""Results as Delta tables, against real files and a real S3 API (moto's server): one commit per table per run, a
retried run's rows replaced, writers in several OS processes losing nothing, a writer killed mid-commit, the views
and queries of the DuckDB file over the tables, compaction and vacuum."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable, write_deltalake

from seqcast.storage.migrate import local_records, migrate
from seqcast.storage.objects import ObjectStore
from seqcast.storage.results import Results
from seqcast.storage.schemas import SCHEMAS
from seqcast.storage.table_queries import connect, query, read_only_query
from seqcast.storage.tables import Tables, delta_options
from tests.conftest import REPO_ROOT
from tests.legacy_records import record_rows, write_record
from tests.s3_server import SECRET

# storage: real Delta tables, processes and an S3 server; the durability tests with many processes or rows are slow, as
# the tables are not yet where the flows record

WRITER_TIMEOUT_S = 240


def run_rows(run_id: str, tag: float = 1.0, n_predictions: int = 5, dataset_id: str = "ds-sample",
             variant: str = "linear") -> dict[str, list[dict] | pa.Table]:
    """Rows of one made-up run in most tables; ``tag`` changes every value (and the history's length)."""
    now = datetime.now(UTC)
    return {
        "datasets": [{"dataset_id": dataset_id, "kind": "synthetic", "spec": "{}", "n_series": 10, "n_steps": 50,
                      "horizon": 1, "n_train": 6, "n_valid": 2, "n_test": 2, "path": "datasets/x",
                      "created_at": datetime(2026, 1, 1, tzinfo=UTC),  # the dataset's, whichever run records it
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
        "series_scores": [{"run_id": run_id, "predictor": p, "split": "test", "series_id": f"s{i}",
                           "smape": tag * (i + 1), "mase": tag} for p in ("model", "naive2") for i in range(3)],
        "backtests": [{"run_id": run_id, "variant": variant, "dataset_id": dataset_id, "horizon": 1, "windows": 2,
                       "refit": False, "model_run_ids": f'["{run_id}"]', "status": "completed", "started_at": now,
                       "finished_at": now}],
        "backtest_forecasts": [{"run_id": run_id, "cutoff": c, "series_id": "s0", "step": 1, "actual": 1.0,
                                "forecast": tag, "naive2": 1.5, "smape": tag, "naive2_smape": 2.0,
                                "scaled_error": tag, "naive2_scaled_error": 2.0, "scale": 1.0,
                                "lo_80": 0.0, "hi_80": 2.0, "lo_95": -1.0, "hi_95": 3.0} for c in (0, 1)],
    }


@pytest.fixture(scope="module")
def s3_process():
    from tests.s3_server import running_s3_process

    with running_s3_process() as server:
        yield server


@pytest.fixture(params=["local", "s3"])
def location(request, tmp_path, s3_process, monkeypatch) -> tuple[str, dict | None]:
    """A fresh store location and its delta-rs options: a local folder, or a prefix of the S3 server's bucket."""
    if request.param == "local":
        return str(tmp_path / "home"), None
    for name, value in s3_process.env().items():
        monkeypatch.setenv(name, value)
    url = s3_process.url(f"tables-{tmp_path.name}")
    return url, delta_options(ObjectStore(url))


def count(tables: Tables, sql: str, params=None) -> list[tuple]:
    return query(tables, sql, params)[1]


@pytest.mark.integration
def test_a_run_is_one_commit_per_table_and_a_retry_replaces_only_its_rows(location):
    tables = Tables(*location)
    first = tables.write("run-1", run_rows("run-1"))
    # each table created by this run's one commit; datasets is created empty first, then merged into
    assert first == {**{name: 0 for name in run_rows("run-1")}, "datasets": 1}
    tables.write("run-2", run_rows("run-2", 2.0))
    # the retry writes fewer predictions and no history: its earlier rows go, run-2's stay
    retry = run_rows("run-1", 3.0, n_predictions=2)
    retry["history"] = []
    versions = tables.write("run-1", retry)
    assert versions["predictions"] == 2 and versions["history"] == 2 and versions["runs"] == 2
    assert tables.open("predictions").history(1)[0]["operation"] == "WRITE"  # replace-where: one commit
    assert count(tables, "SELECT run_id, count(*), max(y_pred) FROM predictions GROUP BY ALL ORDER BY 1") == [
        ("run-1", 2, 3.0), ("run-2", 5, 2.0)]
    assert count(tables, "SELECT run_id, count(*) FROM history GROUP BY ALL") == [("run-2", 2)]
    assert count(tables, "SELECT run_id, epochs FROM runs ORDER BY 1") == [("run-1", 3), ("run-2", 2)]
    assert count(tables, "SELECT count(*) FROM datasets") == [(1,)]  # shared by content: one row
    # time travel: the table's first version still reads as run-1's first write
    old = DeltaTable(tables.uri("predictions"), version=0, storage_options=location[1])
    assert old.to_pyarrow_table().column("y_pred").to_pylist() == [1.0] * 5
    if location[0].startswith("s3://"):  # the credentials stay in the environment: no object of the store holds them
        remote = ObjectStore(location[0])
        keys = remote.list("tables")
        assert keys and not [key for key in keys if SECRET.encode() in remote.get_bytes(key)]


@pytest.mark.integration
def test_bad_rows_are_refused_before_anything_is_written(tmp_path):
    tables = Tables(tmp_path / "home")
    with pytest.raises(ValueError, match="run id"):
        tables.write("run'; --", run_rows("x"))
    with pytest.raises(ValueError, match="unknown result tables"):
        tables.write("run-1", {"nope": []})
    with pytest.raises(ValueError, match="carry other run_ids"):
        tables.write("run-1", run_rows("run-2"))
    with pytest.raises(ValueError, match="runs.variant"):
        tables.write("run-1", run_rows("run-1", variant="x'; DROP TABLE runs"))
    assert not (tmp_path / "home").exists()


@pytest.mark.integration
def test_a_column_a_table_lacks_reads_as_null_and_the_next_write_adds_it(tmp_path):
    tables = Tables(tmp_path / "home")
    older = SCHEMAS["runs"].remove(SCHEMAS["runs"].get_field_index("error"))  # a table made before the column
    write_deltalake(tables.uri("runs"), pa.Table.from_pylist([{"run_id": "old", "status": "completed"}], older))
    assert count(tables, "SELECT run_id, error FROM runs") == [("old", None)]
    tables.write("new", {"runs": [{"run_id": "new", "status": "failed", "error": "boom"}]})
    assert count(tables, "SELECT run_id, error FROM runs ORDER BY 1") == [("new", "boom"), ("old", None)]


@pytest.mark.integration
def test_a_users_query_reads_and_writes_nothing(tmp_path):
    home = tmp_path / "home"
    tables = Tables(home)
    tables.write("run-1", run_rows("run-1"))
    (home / "datasets").mkdir()
    pq.write_table(pa.table({"value": [1.0, 2.0]}), home / "datasets" / "v.parquet")
    assert read_only_query(tables, "SELECT count(*) FROM runs", home)[1] == [(1,)]
    assert read_only_query(tables, "SELECT sum(value) FROM 'datasets/v.parquet'", home)[1] == [(3.0,)]
    for sql in ["DELETE FROM runs", "CREATE TABLE x AS SELECT 1", "COPY runs TO 'out.csv'", "ATTACH 'x.db'",
                "SET enable_external_access = true", "SELECT 1; SELECT 2"]:
        with pytest.raises(ValueError):
            read_only_query(tables, sql, home)
    outside = tmp_path / "outside.csv"
    outside.write_text("a\n1\n")
    with pytest.raises(duckdb.Error):
        read_only_query(tables, f"SELECT * FROM read_csv('{outside}')", home)
    assert not (home / "out.csv").exists()


def start_writer(location: tuple[str, dict | None], code: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    """A Python process that opens the tables at ``location`` as ``tables`` and runs ``code``."""
    prelude = textwrap.dedent(f"""
        from seqcast.storage.tables import Tables
        from tests.test_tables import run_rows
        tables = Tables({location[0]!r}, {location[1]!r})
    """)
    return subprocess.Popen([sys.executable, "-c", prelude + textwrap.dedent(code)], cwd=REPO_ROOT, text=True,
                            env={**os.environ, **(env or {})}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


@pytest.mark.slow
def test_several_processes_writing_at_once_lose_and_duplicate_nothing(location):
    """Three writer processes, each committing four runs and then retrying each: every run once, in its last write."""
    writers, runs = 3, 4
    code = """
        for n in range(runs):
            tables.write(f"w{w}-{n}", run_rows(f"w{w}-{n}", 1.0, n_predictions=3, dataset_id=f"ds-{n % 2}"))
        for n in range(runs):
            tables.write(f"w{w}-{n}", run_rows(f"w{w}-{n}", 2.0, n_predictions=4, dataset_id=f"ds-{n % 2}"))
    """
    processes = [start_writer(location, f"w, runs = {w}, {runs}\n" + textwrap.dedent(code)) for w in range(writers)]
    for process in processes:
        output, _ = process.communicate(timeout=WRITER_TIMEOUT_S)
        assert process.returncode == 0, output[-3000:]
    tables = Tables(*location)
    total = writers * runs
    assert count(tables, "SELECT count(*), count(DISTINCT run_id), min(epochs) FROM runs") == [(total, total, 2)]
    assert count(tables, "SELECT count(*), count(DISTINCT (run_id, series_index)), min(y_pred) FROM predictions") \
        == [(total * 4, total * 4, 2.0)]
    assert count(tables, "SELECT count(*) FROM history") == [(total * 2,)]
    assert count(tables, "SELECT dataset_id FROM datasets ORDER BY 1") == [("ds-0",), ("ds-1",)]
    assert count(tables, "SELECT count(*) FROM leaderboard") == [(2,)]


@pytest.mark.slow
def test_a_writer_killed_mid_commit_leaves_the_table_at_its_previous_version(tmp_path):
    tables = Tables(tmp_path / "home")
    tables.write("run-1", run_rows("run-1"))
    before = tables.open("predictions").version()
    folder = Path(tables.uri("predictions"))
    files_before = set(folder.glob("*.parquet"))
    # a run whose predictions take a while to write: it is killed once its first data file appears
    writer = start_writer((str(tmp_path / "home"), None), """
        import numpy as np
        import pyarrow as pa
        n = 20_000_000
        rows = pa.table({"run_id": pa.repeat("run-2", n), "split": pa.repeat("test", n),
                         "series_index": np.arange(n), "horizon_step": np.ones(n, np.int32),
                         "y_true": np.random.default_rng(0).normal(size=n), "y_pred": np.zeros(n)})
        print("writing", flush=True)
        tables.write("run-2", {"predictions": rows, "runs": [{"run_id": "run-2", "status": "completed"}]})
    """)
    deadline = time.monotonic() + WRITER_TIMEOUT_S
    while not set(folder.glob("*.parquet")) - files_before:
        assert writer.poll() is None and time.monotonic() < deadline, writer.communicate()[0][-3000:]
        time.sleep(0.005)
    writer.send_signal(signal.SIGKILL)
    writer.wait()
    assert set(folder.glob("*.parquet")) - files_before  # the killed write left a data file behind

    reopened = Tables(tmp_path / "home")
    assert reopened.open("predictions").version() == before
    assert count(reopened, "SELECT run_id, count(*) FROM predictions GROUP BY ALL") == [("run-1", 5)]
    assert count(reopened, "SELECT run_id FROM runs") == [("run-1",)]
    # its retry commits as a first write, and vacuum removes the file the killed writer left
    reopened.write("run-2", {"predictions": run_rows("run-2")["predictions"],
                             "runs": [{"run_id": "run-2", "status": "completed"}]})
    assert count(reopened, "SELECT run_id, count(*) FROM predictions GROUP BY ALL ORDER BY 1") == [
        ("run-1", 5), ("run-2", 5)]
    done = reopened.compact(retention_hours=0)
    assert done["predictions"]["files_vacuumed"] >= 1
    assert count(reopened, "SELECT run_id, count(*) FROM predictions GROUP BY ALL ORDER BY 1") == [
        ("run-1", 5), ("run-2", 5)]


@pytest.mark.slow
def test_compaction_merges_small_files_and_one_run_reads_few_files(location):
    tables = Tables(*location)
    runs = [f"run-{n:02d}" for n in range(12)]
    for run_id in runs:
        tables.write(run_id, run_rows(run_id, n_predictions=50))
    predictions = tables.open("predictions")
    assert len(predictions.file_uris()) == len(runs)
    before = count(tables, "SELECT * FROM predictions ORDER BY ALL")
    done = tables.compact(retention_hours=0)
    assert done["predictions"]["files_removed"] == len(runs) and done["predictions"]["files_added"] == 1
    assert len(tables.open("predictions").file_uris()) == 1
    assert count(tables, "SELECT * FROM predictions ORDER BY ALL") == before
    # the vacuumed files are gone, so only the compacted version reads; the newest still holds every row
    assert done["predictions"]["files_vacuumed"] == len(runs)
    assert count(tables, "SELECT count(*) FROM predictions WHERE run_id = ?", ["run-03"]) == [(50,)]
    # a retry after compaction still replaces only its own rows
    tables.write("run-03", run_rows("run-03", 2.0, n_predictions=1))
    assert count(tables, "SELECT count(*), count(DISTINCT run_id) FROM predictions") == [(11 * 50 + 1, 12)]


@pytest.mark.integration
def test_a_table_crowded_with_small_files_is_compacted_by_the_next_write(tmp_path, monkeypatch):
    """A write's cost grows with the table's files, so the write that brings a table to its limit merges them; the
    rows stay those of every run, and a retry still replaces only its own."""
    import seqcast.storage.tables as tables_module

    monkeypatch.setattr(tables_module, "COMPACT_AFTER_FILES", 4)
    tables = Tables(tmp_path / "home")
    files = []
    for n in range(9):
        tables.write(f"run-{n}", run_rows(f"run-{n}", n_predictions=10))
        files.append(len(tables.open("predictions").file_uris()))
    assert files == [1, 2, 3, 1, 2, 3, 1, 2, 3]  # the fourth file of each round is merged with the other three
    assert count(tables, "SELECT count(*), count(DISTINCT run_id) FROM predictions") == [(90, 9)]
    tables.write("run-2", run_rows("run-2", 2.0, n_predictions=1))
    assert count(tables, "SELECT count(*), count(DISTINCT run_id) FROM predictions") == [(81, 9)]
    assert count(tables, "SELECT count(*) FROM runs") == [(9,)]


def storage_doc_snippets(bucket: bool = False) -> list[str]:
    """The Python snippets of docs/storage.md's "Reading the tables from outside seqcast", in order: those for a
    local home, or (``bucket``) the one for an ``s3://`` home; never those that say the tests do not run them."""
    page = (REPO_ROOT / "docs" / "storage.md").read_text()
    section = re.split(r"\n##+ ", page.split("### Reading the tables from outside seqcast", 1)[1], maxsplit=1)[0]
    return [block for block in re.findall(r"```python\n(.*?)```", section, re.S)
            if not block.startswith("# not run by the tests") and ("s3://" in block) == bucket]


@pytest.mark.integration
def test_the_tables_are_read_without_seqcast(tmp_path, monkeypatch):
    """The snippets of docs/storage.md, as written, on a home that seqcast's ``Results.record`` wrote (two runs and a
    retry of the first): DuckDB, pandas and Polars read what seqcast's own queries read, and version 0 of ``runs``
    holds the first run only."""
    monkeypatch.setenv("HOME", str(tmp_path))  # the snippets start from Path.home() / ".seqcast"
    results = Results(tmp_path / ".seqcast")
    for run_id, tag in [("run-1", 1.0), ("run-2", 2.0), ("run-1", 3.0)]:
        results.record(run_id, run_rows(run_id, tag, n_predictions=4 + int(tag)))
    snippets = storage_doc_snippets()
    assert len(snippets) >= 4, "the doc's snippets are no longer found"
    found: dict = {}
    for snippet in snippets:
        exec(compile(snippet, "docs/storage.md", "exec"), found)

    assert found["home"] == tmp_path / ".seqcast"
    ours = results.query("SELECT run_id, variant, valid_mse FROM run_scores ORDER BY valid_mse")[1]
    assert [tuple(row) for row in found["valid_mse"]] == ours == [("run-2", "linear", 2.0), ("run-1", "linear", 3.0)]
    assert found["best_run"] == "run-2" and found["n_predictions"] == 6
    assert sorted(found["runs"]["run_id"]) == sorted(found["runs_pl"]["run_id"].to_list()) == ["run-1", "run-2"]
    assert list(found["runs"].columns) == ["run_id", "variant", "status", "finished_at"]
    assert set(found["metrics"]["split"]) == {"valid"} and len(found["metrics"]) == 2 * 2  # (model, naive) x 2 runs
    assert dict(found["valid_pl"].sort("predictor").iter_rows()) == {"model": 2.5, "naive": 5.0}
    assert found["versions"][-1] == (0, "WRITE") and len(found["versions"]) == 3
    assert found["first_runs"]["run_id"].tolist() == ["run-1"]
    assert found["first_runs"]["epochs"].tolist() == [1]  # the first write, before its retry replaced it


@pytest.mark.integration
def test_the_tables_in_a_bucket_are_read_as_documented(s3_process, tmp_path, monkeypatch):
    """docs/storage.md's snippet for an ``s3://`` home, with its endpoint and bucket swapped for the S3 server's,
    reads the runs that ``Results.record`` committed there; the credentials come from the AWS variables alone."""
    import polars as pl
    from deltalake import DeltaTable as documented_delta_table

    for name, value in s3_process.env().items():
        monkeypatch.setenv(name, value)
    url = s3_process.url(f"docs-{tmp_path.name}")
    results = Results(tmp_path / "cache", ObjectStore(url))
    for run_id in ("run-1", "run-2"):
        results.record(run_id, run_rows(run_id))
    (snippet,) = storage_doc_snippets(bucket=True)
    assert "http://minio.internal:9000" in snippet and "s3://forecasts/team-a" in snippet
    snippet = snippet.replace("http://minio.internal:9000", s3_process.endpoint).replace("s3://forecasts/team-a", url)
    found = {"DeltaTable": documented_delta_table, "pl": pl}  # imported by the snippets before it
    exec(compile(snippet, "docs/storage.md", "exec"), found)
    assert sorted(found["runs"]["run_id"]) == sorted(found["runs_pl"]["run_id"].to_list()) == ["run-1", "run-2"]


@pytest.mark.integration
def test_a_home_written_by_the_record_format_migrates_once_whatever_the_tries(tmp_path):
    """A home made by the record writer: committed records (one rewritten by a retry, a champion choice, a scoring
    run), a folder a killed writer left without its marker; migrated twice, the tables hold each record's rows once."""
    records = tmp_path / "old-home" / "records"
    for run_id, rows in [("run-1", run_rows("run-1")), ("run-2", run_rows("run-2", 2.0, dataset_id="ds-other")),
                         ("run-1", run_rows("run-1", 3.0))]:
        write_record(records, run_id, rows)
    now = datetime.now(UTC)
    write_record(records, "choice-1", {"champions": [{"choice_id": "choice-1", "dataset_id": "ds-sample",
                                                      "run_id": "run-1", "variant": "linear", "chosen_at": now}]})
    write_record(records, "score-1", {"forecast_errors": [{"score_run_id": "score-1", "run_id": "run-1",
                                                           "series_id": "s0", "scored_at": now, "error": 0.5}]})
    half = records / "run-9"
    half.mkdir()
    pq.write_table(pa.table({"run_id": ["run-9"]}), half / "runs-abc.parquet")  # no marker: never committed

    tables = Tables(tmp_path / "new-home")
    assert migrate(local_records(records), tables) == (["choice-1", "run-1", "run-2", "score-1"], ["run-9"])
    assert tables.open("runs").version() == 0  # one commit for the batch
    for attempt in range(2):  # again: replaced, not added
        for name in ("runs", "metrics", "predictions", "champions", "forecast_errors", "backtest_forecasts"):
            recorded = record_rows(records, name)
            assert count(tables, f"SELECT count(*) FROM {name}") == [(len(recorded),)], (name, attempt)
        assert count(tables, "SELECT run_id, epochs FROM runs ORDER BY 1") == [("run-1", 3), ("run-2", 2)]
        assert count(tables, "SELECT count(*) FROM datasets") == [(2,)]
        migrate(local_records(records), tables)


@pytest.mark.integration
def test_a_record_older_than_a_column_migrates_with_the_column_null(tmp_path):
    folder = write_record(tmp_path / "records", "run-1", {"runs": [{"run_id": "run-1", "status": "completed",
                                                                       "error": "x"}]})
    (path,) = folder.glob("runs-*.parquet")
    pq.write_table(pq.read_table(path).drop_columns(["error", "code_version"]), path)  # as an older seqcast wrote
    tables = Tables(tmp_path / "home")
    migrate(local_records(tmp_path / "records"), tables)
    assert count(tables, "SELECT run_id, status, error, code_version FROM runs") == [("run-1", "completed", None,
                                                                                      None)]


@pytest.mark.integration
def test_an_open_reader_holds_up_no_writer_and_reads_one_version(tmp_path):
    """What a held DuckDB lock was for the database file: a connection open over the tables while another process
    commits. The writer does not wait; the open connection keeps reading the versions it opened, a new one the new."""
    home = tmp_path / "home"
    tables = Tables(home)
    tables.write("run-1", run_rows("run-1"))
    reader = connect(tables)
    writer = start_writer((str(home), None), """
        tables.write("run-2", run_rows("run-2", 2.0))
        tables.write("run-1", run_rows("run-1", 3.0, n_predictions=1))
    """)
    output, _ = writer.communicate(timeout=WRITER_TIMEOUT_S)
    assert writer.returncode == 0, output[-3000:]
    assert reader.execute("SELECT run_id, count(*) FROM predictions GROUP BY ALL").fetchall() == [("run-1", 5)]
    assert reader.execute("SELECT count(*) FROM leaderboard").fetchall() == [(1,)]
    assert count(tables, "SELECT run_id, count(*) FROM predictions GROUP BY ALL ORDER BY 1") == [
        ("run-1", 1), ("run-2", 5)]


@pytest.mark.slow
def test_a_host_that_is_lost_costs_nothing_another_host_committed(location, tmp_path):
    """Two hosts on one store, one killed in the middle of its runs: every run the other committed is there, and a
    third host with nothing of its own reads all of it; the lost host's retry replaces what it left."""
    survivor = start_writer(location, """
        for n in range(4):
            tables.write(f"a-{n}", run_rows(f"a-{n}"))
    """)
    lost = start_writer(location, """
        import os, signal
        tables.write("b-0", run_rows("b-0"))
        # dies between its detail tables and its own row, as a host that loses power would
        from seqcast.storage.schemas import as_table
        tables._replace("predictions", "b-1", as_table("predictions", run_rows("b-1")["predictions"]))
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    for process in (survivor, lost):
        process.communicate(timeout=WRITER_TIMEOUT_S)
    assert survivor.returncode == 0 and lost.returncode == -signal.SIGKILL
    third = Tables(*location)
    assert count(third, "SELECT run_id FROM runs ORDER BY 1") == [("a-0",), ("a-1",), ("a-2",), ("a-3",), ("b-0",)]
    assert count(third, "SELECT count(*) FROM leaderboard") == [(1,)]
    assert count(third, "SELECT count(*) FROM predictions WHERE run_id = 'b-1'") == [(5,)]  # no runs row: no view
    assert count(third, "SELECT count(*) FROM series_predictions WHERE run_id = 'b-1'") == [(0,)]
    third.write("b-1", run_rows("b-1", 2.0, n_predictions=2))  # its retry, on the third host
    assert count(third, "SELECT count(*), max(y_pred) FROM predictions WHERE run_id = 'b-1'") == [(2, 2.0)]
