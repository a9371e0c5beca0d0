"""The results store through seqcast's own flows and commands: real OS processes on one home, a reader that holds
the tables open, the read-only ``seqcast sql``, hostile names, the documented lineage query, the migration of a
home written by the record format, and the maintenance flow.

Flow runs use the ``naive`` variant on tiny data (no TensorFlow import), so six of them fit on two cores.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from seqcast.app.cli import main as cli
from seqcast.storage import migrate
from seqcast.storage.objects import ObjectStore
from seqcast.storage.results import Results
from seqcast.storage.schemas import TABLES
from seqcast.storage.table_queries import connect
from seqcast.storage.tables import Tables
from seqcast.tasks.rows import with_stored_scores
from tests.conftest import REPO_ROOT
from tests.legacy_records import LEGACY_HOME, record_rows, upload_records, write_record
from tests.test_tables import run_rows

pytestmark = pytest.mark.integration  # storage: real files, real processes, a real Prefect API

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


def rows(home: Path, sql: str, params=None) -> list[tuple]:
    return Results(home).query(sql, params)[1]


def snapshot(home: Path) -> dict[str, list[tuple]]:
    """Every table's rows, in a canonical order."""
    return {t: rows(home, f"SELECT * FROM {t} ORDER BY ALL") for t in TABLES}


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
    run_ids = [r for (r,) in rows(home, "SELECT run_id FROM runs")]
    assert len(run_ids) == len(set(run_ids)) == N_CONCURRENT
    per_run = dict(rows(home, "SELECT run_id, count(*) FROM metrics GROUP BY run_id"))
    assert per_run == {r: METRICS_PER_RUN for r in run_ids}
    assert rows(home, "SELECT count(*) FROM (SELECT DISTINCT run_id, predictor, split, metric, horizon_step "
                      "FROM metrics)") == [(N_CONCURRENT * METRICS_PER_RUN,)]
    assert rows(home, "SELECT count(*), count(DISTINCT (run_id, series_index)) FROM predictions") == \
        [(N_CONCURRENT * PREDICTIONS_PER_RUN,) * 2]
    assert rows(home, "SELECT count(*) FROM datasets") == [(N_CONCURRENT,)]  # one dataset per seed
    assert rows(home, "SELECT count(*) FROM leaderboard") == [(N_CONCURRENT,)]
    assert not (home / "records").exists() and not (home / "results.duckdb").exists()


def test_a_run_completes_while_a_reader_holds_the_tables_open(prefect_server, tmp_path):
    """A user's open session over the tables (a real process holding a connection) holds up no run: the run
    commits, the open session keeps reading the version it opened, and a new query sees the run at once."""
    home = tmp_path / "seqcast-home"
    rc, output = finish(start_flow(prefect_server, home, seed=7))
    assert rc == 0, output[-3000:]
    holder = subprocess.Popen(
        [sys.executable, "-c", (
            "import sys; from pathlib import Path; from seqcast.storage.results import Results; "
            "from seqcast.storage.table_queries import connect; "
            f"con = connect(Results(Path({str(home)!r})).tables); print('held', flush=True); sys.stdin.readline(); "
            "print(con.execute('SELECT count(*) FROM runs').fetchone()[0], flush=True)")],
        cwd=REPO_ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        rc, output = finish(start_flow(prefect_server, home, seed=8))
        assert rc == 0, output[-3000:]
        assert rows(home, "SELECT count(*) FROM runs") == [(2,)]
        holder.stdin.write("\n")
        holder.stdin.flush()
        assert holder.stdout.readline().strip() == "1"  # the version it opened
    finally:
        holder.communicate(timeout=60)
    assert holder.returncode == 0


def test_sql_is_read_only(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SEQCAST_HOME", str(tmp_path))
    Results(tmp_path).record("r1", run_rows("r1"))
    assert cli(["sql", "SELECT run_id FROM runs", "--format", "csv"]) == 0
    assert capsys.readouterr().out.split() == ["run_id", "r1"]
    for statement, refused in [("DELETE FROM runs", "DELETE"), ("COPY runs TO 'x.csv'", "COPY"),
                               ("ATTACH 'other.duckdb'", "ATTACH")]:
        assert cli(["sql", statement]) == 2
        assert f"{refused} statements are refused: seqcast sql only reads" in capsys.readouterr().err
    assert rows(tmp_path, "SELECT count(*) FROM runs") == [(1,)]
    assert not (tmp_path / "x.csv").exists()


HOSTILE = ["x'; DROP TABLE runs; --", 'ds"; DROP TABLE datasets; --', "a;b", "../escape", "-- comment"]


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_names_are_rejected_and_tables_stay_intact(tmp_path, monkeypatch, capsys, name):
    monkeypatch.setenv("SEQCAST_HOME", str(tmp_path))
    results = Results(tmp_path)
    results.record("good", run_rows("good"))
    before = snapshot(tmp_path)

    assert cli(["run", "--variant", name]) == 2
    assert "not a plain name" in capsys.readouterr().err
    assert cli(["run", "--variant", "iterative_10", "--base-run-id", name]) == 2
    assert "base_run_id" in capsys.readouterr().err
    for bad_rows, run_id, message in [
        (run_rows("r2", dataset_id=name), "r2", "dataset_id"),
        (run_rows("r3", variant=name), "r3", "runs.variant"),
        (run_rows("good"), name, "run id"),
    ]:
        with pytest.raises(ValueError, match=f"{message} .* is not a plain name"):
            results.record(run_id, bad_rows)
    assert snapshot(tmp_path) == before


def test_documented_lineage_query_reaches_data_model_run_and_code(concurrent_runs):
    """The lineage query of docs/results.md, run as documented, leads to files that exist and to the Prefect run."""
    home, _ = concurrent_runs
    results_doc = (REPO_ROOT / "docs" / "results.md").read_text()
    lineage_sql = results_doc.split("### Lineage", 1)[1].split("```sql", 1)[1].split("```", 1)[0]
    found = Results(home).frame(lineage_sql.replace("'linear'", "'naive'"))
    assert len(found) == 1  # LIMIT 1: the best of the six
    row = found.iloc[0].to_dict()
    assert row["flow_run_id"] in {r for (r,) in rows(home, "SELECT flow_run_id FROM runs")}
    assert row["code_version"].startswith("0.1.0")
    # paths are relative to SEQCAST_HOME, so a row means the same on any machine that has the home
    assert row["dataset_folder"] == f"datasets/{row['dataset_id']}"
    manifest = json.loads((home / row["dataset_folder"] / "dataset.json").read_text())
    assert manifest["content_hash"] == row["dataset_hash"]
    assert row["n_predictions"] == PREDICTIONS_PER_RUN
    assert row["model_path"] is None  # the naive variant has no model; trained variants name their .keras file


def expected_counts() -> dict[str, int]:
    """Every table's and view's row count in the results database the record format's release loaded from the
    legacy home (``row_counts.json``, written by that release)."""
    return json.loads((LEGACY_HOME / "row_counts.json").read_text())


def test_a_home_written_by_the_last_release_migrates_by_one_command(tmp_path, monkeypatch, capsys):
    """``seqcast results migrate`` on a home that release wrote: every table and view holds what that release's
    database held, run by run as its records say; a second migration replaces instead of adding."""
    home = tmp_path / "home"
    (home / "records").parent.mkdir()
    subprocess.run(["cp", "-r", str(LEGACY_HOME / "records"), str(home / "records")], check=True)
    monkeypatch.setenv("SEQCAST_HOME", str(home))
    for attempt in range(2):
        assert cli(["results", "migrate"]) == 0
        assert "migrated 8 run(s)" in capsys.readouterr().out
        counts = {name: rows(home, f"SELECT count(*) FROM {name}")[0][0] for name in expected_counts()}
        assert counts == expected_counts(), attempt
    for table in ("runs", "backtests", "forecasts", "champions", "forecast_errors"):
        found = sorted(json.dumps(r, sort_keys=True, default=str) for r in Results(home).frame(
            f"SELECT * FROM {table}").to_dict("records"))
        recorded = sorted(json.dumps(r, sort_keys=True, default=str) for r in record_rows(home / "records", table))
        assert len(found) == len(recorded) > 0, table
    # a forecast the champion made, with the interval its backtest calibrated: the tables join as the views expect
    (champion,) = rows(home, "SELECT run_id, backtest_run_id FROM current_champions")
    assert rows(home, "SELECT count(*) FROM backtests WHERE run_id = ?", [champion[1]]) == [(1,)]
    assert cli(["results", "migrate", str(tmp_path / "nowhere")]) == 2
    assert "holds no records/ folder: nothing to migrate" in capsys.readouterr().err


def test_records_from_before_the_stored_scores_get_them_when_migrated(tmp_path):
    """Records of a release that computed scores in its views (no split or backtest score tables) migrate with the
    scores computed as a run records them today: equal to the same runs' stored scores."""
    old = tmp_path / "old" / "records"
    for folder in sorted((LEGACY_HOME / "records").iterdir()):
        files = migrate.committed_record(folder)
        kept = {name: table for name, table in migrate.read_record(files).items()
                if name not in ("split_scores", "backtest_cutoff_scores", "backtest_level_scores")}
        write_record(old, folder.name, kept)
    today, before = Tables(tmp_path / "today"), Tables(tmp_path / "before")
    migrate.migrate(migrate.local_records(LEGACY_HOME / "records"), today)
    migrate.migrate(migrate.local_records(old), before, with_stored_scores)
    for table in ("split_scores", "backtest_cutoff_scores", "backtest_level_scores", "benchmark_scores",
                  "backtest_scores", "backtest_interval_scores"):
        sql = f"SELECT * FROM {table} ORDER BY ALL"
        stored, rescored = connect(today).execute(sql).fetchall(), connect(before).execute(sql).fetchall()
        assert stored and rescored == stored, table


def test_a_home_on_s3_written_by_the_last_release_migrates(s3_server, tmp_path, monkeypatch, capsys):
    """The same home as that release kept it on an object store (one bundle per write beside its marker), migrated
    from the bucket into tables in the bucket; a run whose marker names no stored bundle is left out."""
    url = f"s3://{s3_server.bucket}/legacy-{tmp_path.name}"
    for name, value in s3_server.env().items():
        monkeypatch.setenv(name, value)
    remote = ObjectStore(url)
    uploaded = upload_records(LEGACY_HOME / "records", remote)
    broken = uploaded[0]
    remote.delete([key for key in remote.list(f"records/{broken}") if key.endswith(".tar")])
    monkeypatch.setenv("SEQCAST_HOME", url)
    monkeypatch.setenv("SEQCAST_CACHE", str(tmp_path / "cache"))
    assert cli(["results", "migrate"]) == 0
    out = capsys.readouterr().out
    assert f"migrated {len(uploaded) - 1} run(s)" in out and "1 record(s) without a committed write" in out
    from seqcast.storage.home import current_store

    results = current_store().results
    assert results.location == f"{url}/tables"
    assert results.query("SELECT count(*) FROM runs")[1] == [(expected_counts()["runs"],)]


def test_the_maintenance_flow_compacts_every_table_and_its_deployment_matches_prefect_yaml(prefect_harness, tmp_path,
                                                                                          monkeypatch, capsys):
    from seqcast.deployments.maintenance import maintenance_deployment, maintenance_spec

    monkeypatch.setenv("SEQCAST_HOME", str(tmp_path))
    results = Results(tmp_path)
    for n in range(4):
        results.record(f"run-{n}", run_rows(f"run-{n}"))
    before = snapshot(tmp_path)
    assert len(results.tables.open("predictions").file_uris()) == 4
    assert cli(["results", "compact", "--retention-hours", "0"]) == 0
    printed = capsys.readouterr().out
    assert "predictions" in printed and "files_vacuumed" in printed
    assert len(Results(tmp_path).tables.open("predictions").file_uris()) == 1
    assert snapshot(tmp_path) == before  # the same rows, in fewer files
    assert len(list((tmp_path / "tables" / "predictions").glob("*.parquet"))) == 1  # the merged-away files vacuumed

    spec = maintenance_spec()
    (declared,) = [d for d in yaml.safe_load((REPO_ROOT / "prefect.yaml").read_text())["deployments"]
                   if d["entrypoint"] == spec.entrypoint]
    assert (declared["name"], declared["parameters"], tuple(declared["tags"])) == (spec.name, spec.parameters,
                                                                                  spec.tags)
    assert declared["schedules"][0]["cron"] == spec.cron == "0 23 * * 6"  # Saturday 23:00, before Sunday's 01:00
    deployment = maintenance_deployment()
    assert deployment.name == "weekly" and deployment.parameters == {"retention_hours": 168}
    assert os.path.exists(REPO_ROOT / spec.entrypoint.split(":")[0])
