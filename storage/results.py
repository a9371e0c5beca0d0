"""Results: a durable Parquet record per run (the source of truth), loaded idempotently into DuckDB.

Record layout, ``$SEQCAST_HOME/records/<run_id>/``: one Parquet file per table (``runs``, ``datasets``,
``metrics``, ``history``, ``predictions``), each written atomically, then a ``_COMMITTED`` marker naming
them with their SHA-256. A folder without a valid marker is ignored by every reader and loader.
A retry of the same run id replaces its own files, so a run never has two sets of rows.

DuckDB allows one writing process per file: loaders retry a locked database with bounded backoff and,
if it stays locked, leave the record for the next load (``seqcast results sync``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from storage.atomic import atomic_file

log = logging.getLogger(__name__)

MARKER = "_COMMITTED"
TS = pa.timestamp("us", tz="UTC")

SCHEMAS: dict[str, pa.Schema] = {
    "datasets": pa.schema([
        ("dataset_id", pa.string()), ("kind", pa.string()), ("spec", pa.string()), ("n_series", pa.int64()),
        ("n_steps", pa.int32()), ("horizon", pa.int32()), ("n_train", pa.int64()), ("n_valid", pa.int64()),
        ("n_test", pa.int64()), ("path", pa.string()), ("content_hash", pa.string()), ("created_at", TS),
    ]),
    "runs": pa.schema([
        ("run_id", pa.string()), ("flow_run_id", pa.string()), ("variant", pa.string()), ("family", pa.string()),
        ("dataset_id", pa.string()), ("horizon", pa.int32()), ("params", pa.string()), ("model_path", pa.string()),
        ("status", pa.string()), ("started_at", TS), ("finished_at", TS), ("duration_s", pa.float64()),
        ("train_seconds", pa.float64()), ("epochs", pa.int32()), ("n_params", pa.int64()),
        ("base_run_id", pa.string()), ("learning_curve_path", pa.string()), ("forecast_plot_path", pa.string()),
        ("code_version", pa.string()), ("record_path", pa.string()),
    ]),
    "metrics": pa.schema([
        ("run_id", pa.string()), ("predictor", pa.string()), ("split", pa.string()), ("metric", pa.string()),
        ("horizon_step", pa.int32()), ("value", pa.float64()),
    ]),
    "history": pa.schema([
        ("run_id", pa.string()), ("epoch", pa.int32()), ("loss", pa.float64()), ("val_loss", pa.float64()),
        ("last_time_step_mse", pa.float64()), ("val_last_time_step_mse", pa.float64()), ("seconds", pa.float64()),
    ]),
    "predictions": pa.schema([
        ("run_id", pa.string()), ("split", pa.string()), ("series_index", pa.int64()), ("horizon_step", pa.int32()),
        ("y_true", pa.float64()), ("y_pred", pa.float64()),
    ]),
    "forecasts": pa.schema([  # written by the predict flow (storage/forecasts.py)
        ("run_id", pa.string()), ("model_run_id", pa.string()), ("dataset_id", pa.string()),
        ("series_id", pa.string()), ("timestamp", pa.timestamp("us")), ("step", pa.int32()), ("value", pa.float64()),
    ]),
}
TABLES = tuple(SCHEMAS)
_SQL_TYPES = {"string": "VARCHAR", "int64": "BIGINT", "int32": "INTEGER", "double": "DOUBLE",
              "timestamp[us, tz=UTC]": "TIMESTAMPTZ", "timestamp[us]": "TIMESTAMP"}
_KEYS = {"datasets": "dataset_id", "runs": "run_id"}
_JSON_COLUMNS = {"spec", "params"}

VIEWS = """
CREATE OR REPLACE VIEW latest_runs AS
SELECT * FROM runs WHERE status = 'completed'
QUALIFY row_number() OVER (PARTITION BY variant, dataset_id ORDER BY finished_at DESC) = 1;

CREATE OR REPLACE VIEW run_scores AS
SELECT r.run_id, r.variant, r.family, r.dataset_id, r.horizon, r.epochs, r.n_params, r.train_seconds,
       r.finished_at,
       max(m.value) FILTER (WHERE m.predictor = 'model' AND m.split = 'valid') AS valid_mse,
       max(m.value) FILTER (WHERE m.predictor = 'model' AND m.split = 'test') AS test_mse,
       max(m.value) FILTER (WHERE m.predictor = 'naive' AND m.split = 'valid') AS naive_valid_mse,
       max(m.value) FILTER (WHERE m.predictor = 'naive' AND m.split = 'test') AS naive_test_mse
FROM runs r JOIN metrics m USING (run_id)
WHERE r.status = 'completed' AND m.metric = 'mse' AND m.horizon_step IS NULL
GROUP BY ALL;

CREATE OR REPLACE VIEW leaderboard AS
SELECT variant, dataset_id, horizon, run_id, valid_mse, test_mse, naive_valid_mse,
       valid_mse / naive_valid_mse AS ratio_to_naive, epochs, n_params, train_seconds, finished_at
FROM run_scores
QUALIFY row_number() OVER (PARTITION BY variant, dataset_id ORDER BY valid_mse, finished_at DESC) = 1
ORDER BY dataset_id, valid_mse;

CREATE OR REPLACE VIEW horizon_errors AS
SELECT r.variant, r.dataset_id, r.run_id, m.split, m.horizon_step,
       max(m.value) FILTER (WHERE m.metric = 'mse') AS mse,
       max(m.value) FILTER (WHERE m.metric = 'mae') AS mae,
       max(m.value) FILTER (WHERE m.metric = 'rmse') AS rmse
FROM runs r JOIN metrics m USING (run_id)
WHERE r.status = 'completed' AND m.predictor = 'model' AND m.horizon_step IS NOT NULL
GROUP BY ALL;
"""


def lock_timeout_s() -> float:
    return float(os.environ.get("SEQCAST_DB_LOCK_TIMEOUT", "30"))


@dataclass
class LoadReport:
    """What a load did: run ids loaded, run ids left waiting in the record, lock retries seen."""

    loaded: list[str] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)
    lock_retries: int = 0


# ---- the durable record -------------------------------------------------------------------------------------------

def write_record(record_root: Path, run_id: str, rows: dict[str, list[dict]]) -> Path:
    """Write one run's rows (table name -> list of row dicts) as its committed record; return its folder."""
    unknown = set(rows) - set(SCHEMAS)
    if unknown:
        raise ValueError(f"unknown result tables {sorted(unknown)}; tables: {', '.join(TABLES)}")
    folder = record_root / run_id
    folder.mkdir(parents=True, exist_ok=True)
    (folder / MARKER).unlink(missing_ok=True)  # a retry invalidates the previous set before replacing it
    digests = {}
    for name, schema in SCHEMAS.items():
        table = pa.Table.from_pylist(rows.get(name, []), schema=schema)
        target = folder / f"{name}.parquet"
        with atomic_file(target) as tmp:
            pq.write_table(table, tmp)
        digests[target.name] = _sha256(target)
    marker = {"run_id": run_id, "files": digests, "written_at": time.time()}
    with atomic_file(folder / MARKER) as tmp:
        tmp.write_text(json.dumps(marker, sort_keys=True))
    return folder


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def read_marker(folder: Path) -> dict | None:
    """Return a record folder's marker if the record is complete and intact, else None."""
    try:
        marker = json.loads((folder / MARKER).read_text())
        for name, digest in marker["files"].items():
            if _sha256(folder / name) != digest:
                return None
        return marker
    except (OSError, ValueError, KeyError, TypeError):
        return None


def committed_records(record_root: Path) -> dict[str, Path]:
    """Return run_id -> folder for every committed, intact record."""
    if not record_root.is_dir():
        return {}
    found = {}
    for folder in sorted(record_root.iterdir()):
        if folder.is_dir() and not folder.name.startswith(".") and read_marker(folder) is not None:
            found[folder.name] = folder
    return found


# ---- DuckDB -------------------------------------------------------------------------------------------------------

def ensure_schema(con: duckdb.DuckDBPyConnection) -> None:
    """Create the tables and views if missing."""
    for name, schema in SCHEMAS.items():
        cols = []
        for f in schema:
            sql_type = "JSON" if f.name in _JSON_COLUMNS else _SQL_TYPES[str(f.type)]
            key = " PRIMARY KEY" if _KEYS.get(name) == f.name else ""
            cols.append(f"{f.name} {sql_type}{key}")
        con.execute(f"CREATE TABLE IF NOT EXISTS {name} ({', '.join(cols)})")
    con.execute("CREATE TABLE IF NOT EXISTS loaded_records (run_id VARCHAR PRIMARY KEY, written_at DOUBLE)")
    con.execute(VIEWS)


def connect_writer(db_path: Path, timeout_s: float | None = None,
                   report: LoadReport | None = None) -> duckdb.DuckDBPyConnection | None:
    """Open the database read-write, retrying a lock held by another process; None if it stays locked."""
    timeout_s = lock_timeout_s() if timeout_s is None else timeout_s
    db_path.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + timeout_s
    delay = 0.05
    while True:
        try:
            return duckdb.connect(str(db_path))
        except duckdb.IOException as exc:
            if "lock" not in str(exc).lower() or time.monotonic() >= deadline:
                if "lock" in str(exc).lower():
                    return None
                raise
            if report is not None:
                report.lock_retries += 1
            time.sleep(min(delay, max(0.0, deadline - time.monotonic())) * (0.5 + random.random()))
            delay = min(delay * 2, 2.0)


def _load_one(con: duckdb.DuckDBPyConnection, run_id: str, folder: Path, marker: dict) -> None:
    con.execute("BEGIN TRANSACTION")
    try:
        for name in TABLES:
            if f"{name}.parquet" not in marker["files"]:
                continue  # a record written before this table existed
            path = str(folder / f"{name}.parquet")
            key = _KEYS.get(name, "run_id")
            if name == "datasets":
                con.execute(f"INSERT INTO datasets BY NAME SELECT * FROM read_parquet(?) "
                            f"WHERE {key} NOT IN (SELECT {key} FROM datasets)", [path])
                continue
            con.execute(f"DELETE FROM {name} WHERE run_id = ?", [run_id])
            con.execute(f"INSERT INTO {name} BY NAME SELECT * FROM read_parquet(?)", [path])
        con.execute("INSERT OR REPLACE INTO loaded_records VALUES (?, ?)", [run_id, marker["written_at"]])
        con.execute("COMMIT")
    except Exception:
        con.execute("ROLLBACK")
        raise


def load_records(db_path: Path, records: dict[str, Path], timeout_s: float | None = None,
                 only_new: bool = False) -> LoadReport:
    """Upsert the given records into DuckDB; if the database stays locked, report them as pending."""
    report = LoadReport()
    con = connect_writer(db_path, timeout_s, report)
    if con is None:
        report.pending = sorted(records)
        log.warning("results database %s is locked by another process; %d run(s) wait in the record "
                    "until the next load or `seqcast results sync`", db_path, len(records))
        return report
    try:
        ensure_schema(con)
        loaded = dict(con.execute("SELECT run_id, written_at FROM loaded_records").fetchall())
        for run_id, folder in records.items():
            marker = read_marker(folder)
            if marker is None:
                continue
            if only_new and loaded.get(run_id) == marker["written_at"]:
                continue
            _load_one(con, run_id, folder, marker)
            report.loaded.append(run_id)
    finally:
        con.close()
    return report


def sync(record_root: Path, db_path: Path, timeout_s: float | None = None) -> LoadReport:
    """Load every committed record that the database does not hold yet (or holds an older write of)."""
    return load_records(db_path, committed_records(record_root), timeout_s, only_new=True)


def rebuild(record_root: Path, db_path: Path) -> LoadReport:
    """Recreate the database from the record alone, then swap it in atomically."""
    tmp = db_path.with_name(f".rebuild-{os.getpid()}-{db_path.name}")
    tmp.unlink(missing_ok=True)
    try:
        report = load_records(tmp, committed_records(record_root), timeout_s=0)
        os.replace(tmp, db_path)
        Path(str(tmp) + ".wal").unlink(missing_ok=True)
    finally:
        tmp.unlink(missing_ok=True)
    return report


def query(db_path: Path, sql: str, params: list | None = None):
    """Run one query on a read-only connection and return (column names, rows); the file is closed after."""
    if not db_path.exists():
        raise FileNotFoundError(f"no results database at {db_path}; run `seqcast run` first")
    con = duckdb.connect(str(db_path), read_only=True)
    try:
        cursor = con.execute(sql, params or [])
        columns = [d[0] for d in cursor.description] if cursor.description else []
        return columns, cursor.fetchall()
    finally:
        con.close()
