"""Results: a durable Parquet record per run (the source of truth), loaded idempotently into DuckDB.

Record layout, ``records/<run_id>/`` under the store's root: one Parquet file per table of ``SCHEMAS`` (``runs``,
``datasets``, ``metrics``, ..., ``backtest_forecasts``), named ``<table>-<write_id>.parquet`` and each written
atomically, then a ``_COMMITTED`` marker naming this write's files with their SHA-256. The marker is replaced in
one rename, so a reader sees either the previous complete write or the new one, never a mix; a folder without
a valid marker is ignored by every reader and loader. A retry of the same run id replaces its own files,
so a run never has two sets of rows. Read a record through :func:`record_files`, never by guessing names.

DuckDB allows one writing process per file: loaders retry a locked database with bounded backoff and,
if it stays locked, leave the record for the next load (any later run, or ``seqcast results sync``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tarfile
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import tenacity

from seqcast.config.names import SAFE_NAME
from seqcast.storage import queries
from seqcast.storage.atomic import atomic_dir, atomic_file
from seqcast.storage.objects import TRANSFER_THREADS, ObjectStore
from seqcast.storage.packs import (
    BUNDLE,
    PACK_MAX,
    PACK_SIZE,
    PACKS,
    bundle,
    bundle_members,
    merge,
    pack,
    pack_key,
    unpack,
)
from seqcast.storage.schemas import (  # noqa: F401  (re-exported: the tables' schemas beside the record)
    JSON_COLUMNS,
    PRIMARY_KEYS,
    RECORD_KEYS,
    RUN_TABLES,
    SCHEMAS,
    SQL_TYPES,
    TABLES,
    TS,
    as_table,
    check_rows,
    checked_tables,
)
from seqcast.storage.views import READ_ONLY_STATEMENTS, VIEWS, fetch, refuse_writes, run_locked_down  # noqa: F401

log = logging.getLogger(__name__)

MARKER = "_COMMITTED"
RECORDS = "records"
# in a cache's records folder (a dot name is never a run id): this machine's writes not packed yet, one file each;
# the packs a mirror has read or this machine made; the merged tables of packs a mirror took whole, until a load
# has used them
UNPACKED = ".unpacked"
SEEN = ".packs"
MERGED = ".merged"
COVERS = "covers.json"
DEFAULT_LOCK_TIMEOUT_S = 30.0


@dataclass
class LoadReport:
    """What a load did: run ids loaded, left waiting in the record, failed (id -> error); lock retries seen."""

    loaded: list[str] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    lock_retries: int = 0
    lock_wait_s: float = 0.0
    fetched: int = 0  # records brought from an object store into this machine's cache first
    from_packs: int = 0  # of those, how many came in packs


class DatabaseLocked(RuntimeError):
    """The results database stayed locked by another process for the whole bounded wait."""


# ---- the durable record -------------------------------------------------------------------------------------------

def write_record(record_root: Path, run_id: str, rows: dict[str, list[dict] | pa.Table]) -> Path:
    """Write one run's rows (table name -> row dicts or Arrow table) as its committed record; return its folder.

    Every name is checked before anything touches the disk. A retry of the same run id writes new files
    under a new write id and switches the marker to them in one rename; the previous write stays the
    valid one until that rename, so a crash at any point leaves one complete write, never a mix.
    """
    tables = checked_tables(run_id, rows)
    # only the tables that hold rows: on an object store each file costs requests to write and to sync
    tables = {name: table for name, table in tables.items() if table.num_rows} or {"runs": tables["runs"]}

    folder = record_root / run_id
    folder.mkdir(parents=True, exist_ok=True)
    write_id = uuid.uuid4().hex
    files, digests = {}, {}
    for name, table in tables.items():
        target = folder / f"{name}-{write_id}.parquet"
        with atomic_file(target) as tmp:
            pq.write_table(table, tmp)
            digests[target.name] = file_sha256(tmp)
        files[name] = target.name
    marker = {"run_id": run_id, "write_id": write_id, "written_at": time.time(), "tables": files,
              "files": digests}
    with atomic_file(folder / MARKER) as tmp:
        tmp.write_text(json.dumps(marker, sort_keys=True))
    _remove_unreferenced(folder, set(digests))
    return folder


def _remove_unreferenced(folder: Path, keep: set[str]) -> None:
    # Earlier writes of this run and temporary files of a crashed write. Writes of one run id are
    # sequential (a flow run retries in its own process), so nothing here is still being written.
    for path in folder.iterdir():
        if path.name != MARKER and path.name not in keep:
            path.unlink(missing_ok=True)


def file_sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def read_marker(folder: Path, verify: bool = True) -> dict | None:
    """Return a record folder's marker if the record is complete (and, with ``verify``, intact), else None."""
    try:
        marker = json.loads((folder / MARKER).read_text())
        # a record holds the tables that existed when it was written: a subset of today's
        if marker["run_id"] != folder.name or not marker["tables"] or not set(marker["tables"]) <= set(TABLES):
            return None
        for name, digest in marker["files"].items():
            path = folder / name
            if not path.is_file() or (verify and file_sha256(path) != digest):
                return None
        return marker
    except (OSError, ValueError, KeyError, TypeError):
        return None


def record_files(folder: Path, marker: dict | None = None) -> dict[str, Path]:
    """Return table name -> Parquet file of a committed record; raise FileNotFoundError if it is not committed."""
    marker = marker or read_marker(folder, verify=False)
    if marker is None:
        raise FileNotFoundError(f"no committed record in {folder}")
    return {name: folder / file for name, file in marker["tables"].items()}


def committed_records(record_root: Path) -> dict[str, Path]:
    """Return run_id -> folder for every committed record (markers only: cheap enough to call on every run)."""
    return {run_id: folder for run_id, (folder, _) in _committed_markers(record_root).items()}


def _committed_markers(record_root: Path) -> dict[str, tuple[Path, dict]]:
    if not record_root.is_dir():
        return {}
    found = {}
    for folder in sorted(record_root.iterdir()):
        if folder.is_dir() and SAFE_NAME.match(folder.name):
            marker = read_marker(folder, verify=False)
            if marker is not None:
                found[folder.name] = (folder, marker)
    return found


# ---- DuckDB -------------------------------------------------------------------------------------------------------

def ensure_schema(con: duckdb.DuckDBPyConnection) -> None:
    """Create the tables and views if missing, and add the columns a table made by an older seqcast lacks.

    An added column is NULL in the rows already there, as it is when an older record (whose Parquet lacks the
    column) loads ``BY NAME``; so older databases and records keep loading, and only a changed column type needs
    ``seqcast results rebuild``.
    """
    for name, schema in SCHEMAS.items():
        cols = []
        for f in schema:
            sql_type = "JSON" if f.name in JSON_COLUMNS else SQL_TYPES[str(f.type)]
            key = " PRIMARY KEY" if PRIMARY_KEYS.get(name) == f.name else ""
            cols.append((f.name, f"{sql_type}{key}"))
        con.execute(f"CREATE TABLE IF NOT EXISTS {name} ({', '.join(f'{c} {t}' for c, t in cols)})")
        have = {row[0] for row in con.execute("SELECT column_name FROM information_schema.columns WHERE "
                                              "table_name = ? AND table_schema = current_schema()", [name]).fetchall()}
        for column, sql_type in cols:
            if column not in have:  # names and types: SCHEMAS' constants, never input
                con.execute(f"ALTER TABLE {name} ADD COLUMN {column} {sql_type.removesuffix(' PRIMARY KEY')}")
    con.execute("CREATE TABLE IF NOT EXISTS loaded_records (run_id VARCHAR PRIMARY KEY, write_id VARCHAR, "
                "written_at DOUBLE, record_path VARCHAR, files JSON)")
    con.execute(VIEWS)


def _is_lock_error(exc: Exception) -> bool:
    return isinstance(exc, duckdb.IOException) and "lock" in str(exc).lower()


def _connect(db_path: Path, read_only: bool, timeout_s: float | None, report: LoadReport | None):
    """Open the database, retrying a lock held by another process with jittered, doubling sleeps (max 1 s).

    The jitter keeps many runs that finished together from retrying in lockstep.
    """
    timeout_s = DEFAULT_LOCK_TIMEOUT_S if timeout_s is None else timeout_s

    def count_retry(state: tenacity.RetryCallState) -> None:
        if report is not None:
            report.lock_retries += 1

    retrying = tenacity.Retrying(
        retry=tenacity.retry_if_exception(_is_lock_error), stop=tenacity.stop_after_delay(timeout_s),
        wait=tenacity.wait_random_exponential(multiplier=0.05, max=1.0), before_sleep=count_retry, reraise=True)
    started = time.monotonic()
    try:
        return retrying(duckdb.connect, str(db_path), read_only=read_only)
    except duckdb.IOException as exc:
        if not _is_lock_error(exc):
            raise
        raise DatabaseLocked(f"results database {db_path} stayed locked by another process for "
                             f"{timeout_s:g} s (SEQCAST_DB_LOCK_TIMEOUT): {exc}") from exc
    finally:
        if report is not None:
            report.lock_wait_s = time.monotonic() - started


def connect_writer(db_path: Path, timeout_s: float | None = None,
                   report: LoadReport | None = None) -> duckdb.DuckDBPyConnection | None:
    """Open the database read-write, retrying a lock held by another process; None if it stays locked."""
    db_path.parent.mkdir(parents=True, exist_ok=True)
    try:
        return _connect(db_path, False, timeout_s, report)
    except DatabaseLocked:
        return None


LOAD_BATCH = 500  # records loaded in one transaction, one INSERT per table: far faster than one record at a time


def _load_many(con: duckdb.DuckDBPyConnection, batch: list[tuple[str, Path, dict]], loaded: dict[str, str],
               files: dict[str, list[str]] | None = None) -> None:
    """Load records (run id, folder, marker) in one transaction, from their own files or from ``files`` (table ->
    Parquet files holding exactly their rows: a pack's merged tables). A run the database holds an earlier write of
    loses its rows from every table first (a record holds only the tables it has rows in)."""
    if files is None:
        files = {}
        for _, folder, marker in batch:
            for name, path in record_files(folder, marker).items():
                files.setdefault(name, []).append(str(path))
    reloaded = [run_id for run_id, _, _ in batch if run_id in loaded]
    con.execute("BEGIN TRANSACTION")
    try:
        if reloaded:
            for name in RUN_TABLES:  # name and key: constants of this module, never input
                con.execute(f"DELETE FROM {name} WHERE {RECORD_KEYS.get(name, 'run_id')} IN (SELECT unnest(?))",
                            [reloaded])
        for name, paths in files.items():
            source = "read_parquet(?, union_by_name = true)"  # older records may lack newer columns: NULL
            if name == "datasets":  # content-addressed: the first load of a dataset id is as good as any
                con.execute(f"INSERT INTO datasets BY NAME SELECT * FROM {source} "
                            f"WHERE dataset_id NOT IN (SELECT dataset_id FROM datasets) "
                            f"QUALIFY row_number() OVER (PARTITION BY dataset_id) = 1", [paths])
                continue
            con.execute(f"INSERT INTO {name} BY NAME SELECT * FROM {source}", [paths])
        # one statement over lists: executemany costs a statement per record
        con.execute("INSERT OR REPLACE INTO loaded_records (run_id, write_id, written_at, record_path, files) "
                    "SELECT unnest(?), unnest(?), unnest(?), unnest(?), unnest(?)", [
                        [run_id for run_id, _, _ in batch],
                        [marker["write_id"] for _, _, marker in batch],
                        [float(marker["written_at"]) for _, _, marker in batch],
                        [f"{RECORDS}/{run_id}" for run_id, _, _ in batch],
                        [json.dumps({name: f"{RECORDS}/{run_id}/{file}" for name, file in marker["tables"].items()})
                         for run_id, _, marker in batch]])
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise


def _merged_sets(record_root: Path) -> list[tuple[Path, dict[str, str], dict[str, Path]]]:
    """The merged tables a mirror left in the cache: (folder, run id -> write id covered, table -> file)."""
    found = []
    for folder in sorted((record_root / MERGED).glob("[0-9a-f]*")):
        try:
            covers = json.loads((folder / COVERS).read_text())
        except (OSError, ValueError):
            continue
        found.append((folder, covers, {path.stem: path for path in folder.glob("*.parquet")}))
    return found


def _batches(changed: list[tuple[str, Path, dict]], merged_sets) -> Iterator[tuple[list, dict[str, list[str]]]]:
    """Batches of at most about ``LOAD_BATCH`` records with the files to load them from: a merged set's tables for
    the records it covers, when it covers writes all loaded now and every table they have; each record's own files
    for the rest."""
    pending = {run_id: (run_id, folder, marker) for run_id, folder, marker in changed}
    units = []
    for _, covers, tables in merged_sets:
        records = [pending.get(run_id) for run_id in covers]
        if not covers or any(r is None or r[2]["write_id"] != covers[r[0]] for r in records) \
                or {name for r in records for name in r[2]["tables"]} != set(tables):
            continue
        units.append(([pending.pop(r[0]) for r in records], {name: [str(path)] for name, path in tables.items()}))
    for record in pending.values():
        units.append(([record], {name: [str(path)] for name, path in record_files(record[1], record[2]).items()}))
    batch, files = [], {}
    for records, unit_files in units:
        batch += records
        for name, paths in unit_files.items():
            files.setdefault(name, []).extend(paths)
        if len(batch) >= LOAD_BATCH:
            yield batch, files
            batch, files = [], {}
    if batch:
        yield batch, files


def _load_into(con: duckdb.DuckDBPyConnection, records: dict[str, Path], report: LoadReport,
               only_new: bool, record_root: Path | None = None) -> None:
    """Load the records; with ``record_root``, from the merged tables a mirror left there where they serve."""
    merged_sets = _merged_sets(record_root) if record_root is not None else []
    ensure_schema(con)
    loaded = dict(con.execute("SELECT run_id, write_id FROM loaded_records").fetchall())
    changed = []
    for run_id, folder in records.items():
        marker = read_marker(folder, verify=False)
        if marker is not None and only_new and loaded.get(run_id) == marker["write_id"]:
            continue  # loaded already: its files are not read again
        marker = read_marker(folder, verify=True)
        if marker is None:
            report.failed[run_id] = f"{folder} has no committed, intact record"
        else:
            changed.append((run_id, folder, marker))
    for batch, files in _batches(changed, merged_sets):
        try:
            _load_many(con, batch, loaded, files)
            report.loaded += [run_id for run_id, _, _ in batch]
        except (OSError, duckdb.Error):  # one bad record fails its batch: load them one by one
            for run_id, folder, _ in batch:
                _load_alone(con, run_id, folder, loaded, report)
    for folder, _, _ in merged_sets:  # loaded from, or of no use any more
        shutil.rmtree(folder, ignore_errors=True)
    for run_id, error in report.failed.items():
        log.warning("run %s was not loaded and stays in the record: %s (a database made by another version of "
                    "seqcast is recreated from the records by `seqcast results rebuild`)", run_id, error)


def _load_alone(con: duckdb.DuckDBPyConnection, run_id: str, folder: Path, loaded: dict[str, str],
                report: LoadReport) -> None:
    # A retry of that run may replace the files between reading the marker and loading them;
    # reading the marker once more then finds the new, complete write.
    for attempt in (1, 2):
        marker = read_marker(folder, verify=True)
        if marker is None:
            report.failed[run_id] = f"{folder} has no committed, intact record"
            return
        try:
            _load_many(con, [(run_id, folder, marker)], loaded)
        except (OSError, duckdb.Error) as exc:
            if attempt == 2:
                report.failed[run_id] = f"{type(exc).__name__}: {exc}"
            continue
        report.failed.pop(run_id, None)
        report.loaded.append(run_id)
        return


def load_records(db_path: Path, records: dict[str, Path], timeout_s: float | None = None,
                 only_new: bool = False) -> LoadReport:
    """Upsert the given records into DuckDB; if the database stays locked, report them as pending."""
    return _load(db_path, lambda: records, timeout_s, only_new)


def sync(record_root: Path, db_path: Path, timeout_s: float | None = None) -> LoadReport:
    """Load every committed record that the database does not hold yet (or holds an older write of).

    Cheap when there is nothing to do: it reads the small markers and compares write ids, and verifies
    and loads only the records that changed. The record folder is listed once the lock is held, so a
    run that waited for the lock also loads whatever other runs committed while it waited.
    """
    return _load(db_path, lambda: committed_records(record_root), timeout_s, only_new=True, record_root=record_root)


def _load(db_path: Path, list_records, timeout_s: float | None, only_new: bool,
          record_root: Path | None = None) -> LoadReport:
    report = LoadReport()
    con = connect_writer(db_path, timeout_s, report)
    if con is None:
        report.pending = sorted(list_records())
        log.warning("results database %s stayed locked by another process (%d lock retries in %.1f s); "
                    "%d record(s) wait until the next run or `seqcast results sync`",
                    db_path, report.lock_retries, report.lock_wait_s, len(report.pending))
        return report
    try:
        _load_into(con, list_records(), report, only_new, record_root)
    finally:
        con.close()  # closing releases the file lock for the next writer or reader
    if report.lock_retries:
        log.info("results database %s was busy: %d lock retries, %.1f s waited", db_path, report.lock_retries,
                 report.lock_wait_s)
    return report


def pending_records(record_root: Path, db_path: Path, timeout_s: float | None = None) -> list[str]:
    """Return the run ids whose committed record is not (or not in its latest write) in the database."""
    markers = _committed_markers(record_root)
    if not db_path.exists():
        return sorted(markers)
    try:
        loaded = dict(query(db_path, "SELECT run_id, write_id FROM loaded_records", timeout_s=timeout_s)[1])
    except duckdb.CatalogException:  # a database file nothing has loaded into yet
        loaded = {}
    return sorted(r for r, (_, marker) in markers.items() if loaded.get(r) != marker["write_id"])


def rebuild(record_root: Path, db_path: Path, timeout_s: float | None = None) -> LoadReport:
    """Recreate the database from the record alone in a new file, then swap it in with one rename.

    The live database is held locked while the new one is built and until it has been swapped in, so no writer
    loads into a file that is about to be replaced; a record committed meanwhile is simply loaded by the next
    sync, and a writer that waited for the lock opens the new file.
    """
    report = LoadReport()
    live = None
    if db_path.exists():
        try:
            live = _connect(db_path, False, timeout_s, report)
        except DatabaseLocked:
            report.pending = sorted(committed_records(record_root))
            return report
        except duckdb.Error as exc:  # a damaged database is what rebuild is for: replace it regardless
            log.warning("replacing unreadable results database %s: %s", db_path, exc)
    tmp = db_path.with_name(f".rebuild-{os.getpid()}-{db_path.name}")
    tmp.parent.mkdir(parents=True, exist_ok=True)  # SEQCAST_DB may name a folder that does not exist yet
    tmp.unlink(missing_ok=True)
    try:
        con = duckdb.connect(str(tmp))
        try:
            _load_into(con, committed_records(record_root), report, only_new=False, record_root=record_root)
        finally:
            con.close()
        # A write-ahead log is named after the path, not the file: one left by the old file would be replayed
        # onto the new file (which DuckDB refuses), and closing the old file with a log would delete the new
        # file's. So fold it into the old file first, and keep the old file from checkpointing as it closes.
        if live is not None:
            try:
                live.execute("CHECKPOINT")
                live.execute("PRAGMA disable_checkpoint_on_shutdown")
            except duckdb.Error as exc:  # damaged, yet it opened: let it go like one that did not open
                log.warning("replacing damaged results database %s: %s", db_path, exc)
                live.close()
                live = None
        if live is None:  # an unreadable file's log goes with it (what it held is in the record)
            Path(str(db_path) + ".wal").unlink(missing_ok=True)
        os.replace(tmp, db_path)  # still holding the old file's lock: no writer can slip in before the swap
    finally:
        if live is not None:
            live.close()
        tmp.unlink(missing_ok=True)
        Path(str(tmp) + ".wal").unlink(missing_ok=True)
    return report


def query(db_path: Path, sql: str, params: list | None = None, timeout_s: float | None = None,
          home: Path | None = None):
    """Run one query on a read-only connection and return (column names, rows); the file is closed after.

    A read-only connection shares the file lock with other readers but not with a writer, so it is held
    only for this one query; a writer busy loading is waited for with the writers' bounded backoff.
    With ``home``, relative file paths (those the tables store) resolve against it.
    """
    if not db_path.exists():
        raise FileNotFoundError(f"no results database at {db_path}; run `seqcast run` first, or `seqcast results "
                                f"sync` to load what other machines recorded")
    try:
        con = _connect(db_path, True, timeout_s, None)
    except DatabaseLocked as exc:
        raise DatabaseLocked(f"{exc}. A process holds it read-write (a flow loading results, or an open "
                             f"DuckDB shell); query again once it is closed.") from None
    try:
        return fetch(con, sql, params, home)
    finally:
        con.close()


STORE_FOLDERS = ("datasets", "models", RECORDS)


def read_only_query(db_path: Path, sql: str, home: Path, timeout_s: float | None = None):
    """Run one statement of a user's SQL that writes nothing anywhere: not the database, not a file.

    The connection is read-only, may read only the store's own files (paths relative to ``home`` resolve against
    it), and its configuration is locked before the statement runs. ValueError names a refused statement.
    """
    refuse_writes(sql)
    if not db_path.exists():
        raise FileNotFoundError(f"no results database at {db_path}; run `seqcast run` first, or `seqcast results "
                                f"sync` to load what other machines recorded")
    con = _connect(db_path, True, timeout_s, None)
    try:
        return run_locked_down(con, sql, home, STORE_FOLDERS)
    finally:
        con.close()


class Records:
    """The records part of a store: ``records/<run_id>/``, the source of truth the results database loads.

    With an object store, a record is written to this machine's cache and uploaded as one bundle object, then its
    marker, so other machines see it only once it is complete; :meth:`mirror` brings into the cache what other
    machines committed. Bundles are also packed (:mod:`seqcast.storage.packs`): every ``PACK_SIZE`` records a machine
    writes, and the records a sync had to fetch one by one, go up once more as one pack, which a later sync of
    another machine fetches in one request.
    """

    def __init__(self, home: Path, remote: ObjectStore | None = None):
        self.root = home / RECORDS
        self.remote = remote
        self._unpacked = self.root / UNPACKED
        self._seen = self.root / SEEN

    def write(self, run_id: str, rows: dict[str, list[dict] | pa.Table]) -> Path:
        folder = write_record(self.root, run_id, rows)
        if self.remote is not None:
            write_id = self._upload(folder)
            self._pack_own(run_id, write_id)
        return folder

    def _upload(self, folder: Path) -> str:
        """Upload a committed record as one bundle object of its files and marker, then the marker on its own;
        return its write id."""
        marker = read_marker(folder, verify=False)
        prefix, write_id = f"{RECORDS}/{folder.name}", marker["write_id"]
        self.remote.put_bytes(f"{prefix}/{write_id}{BUNDLE}", bundle(folder, [*marker["files"], MARKER]))
        self.remote.put_file(folder / MARKER, f"{prefix}/{MARKER}")
        # earlier writes of this run: the marker no longer names them
        current = {f"{prefix}/{write_id}{BUNDLE}", f"{prefix}/{MARKER}"}
        self.remote.delete(sorted(set(self.remote.list(prefix)) - current))
        return write_id

    def _pack_own(self, run_id: str, write_id: str) -> None:
        """Note this write as unpacked; once ``PACK_SIZE`` of this machine's writes wait, pack them.

        Runs on one machine share its cache: each claims the notes it packs by renaming them away, so two runs
        never pack the same write, and a run that dies mid-pack leaves its writes loose, which costs requests only.
        """
        with atomic_file(self._unpacked / write_id, durable=False) as tmp:
            tmp.write_text(run_id)
        waiting = sorted(self._unpacked.glob("[0-9a-f]*"))
        if len(waiting) < PACK_SIZE:
            return
        claim = self.root / ".packing" / uuid.uuid4().hex
        claim.mkdir(parents=True)
        try:
            writes = []
            for note in waiting:
                try:
                    note.rename(claim / note.name)
                except FileNotFoundError:  # another run of this machine claimed it first
                    continue
                writes.append(((claim / note.name).read_text(), note.name))
            self._upload_pack(writes)
        finally:
            shutil.rmtree(claim, ignore_errors=True)

    def _upload_pack(self, writes: list[tuple[str, str]]) -> None:
        """Upload one pack of these (run id, write id) records from the cache: those still the current write there.

        A pack is a copy for faster syncs, so failing to store one is logged and the records stay as they are.
        """
        bundles, files = {}, {}
        try:
            for run_id, write_id in writes:
                folder = self.root / run_id
                marker = read_marker(folder, verify=False)
                if marker is not None and marker["write_id"] == write_id:
                    bundles[(run_id, write_id)] = bundle(folder, [*marker["files"], MARKER])
                    for name, path in record_files(folder, marker).items():
                        files.setdefault(name, []).append(path)
            if len(bundles) > 1:
                key = pack_key(bundles)
                self.remote.put_bytes(key, pack(bundles, merge(files)))
                self._note_seen([key])  # made from this cache: a mirror here has nothing to take from it
        except (OSError, ValueError) as exc:  # a retry replaced a record meanwhile, or the store refused
            log.warning("a pack of %d records was not stored in %s (the records stay one object each): %s",
                        len(bundles), self.remote.url, exc)

    def mirror(self) -> tuple[int, int]:
        """Bring the records other machines committed (or rewrote) since the last mirror into the cache; return
        how many came, and how many of them in packs.

        The packs are listed first, then ``records/``: a pack holds only writes uploaded before it, so every
        current write in a listed pack shows in the listing after it. The listing tells which records to fetch
        (an object is named by its write id, so a cached record whose write is the one stored costs no request);
        packs not seen before bring what they hold of those, and the rest comes one object each, then goes up
        as packs for the next machine.
        """
        if self.remote is None:
            return 0, 0
        packs = sorted(set(self.remote.list(PACKS)) - self._seen_packs())
        stored: dict[str, set[str]] = {}
        for key in self.remote.list(RECORDS):
            parts = key.split("/")
            if len(parts) == 3 and SAFE_NAME.match(parts[1]):
                stored.setdefault(parts[1], set()).add(parts[2])
        todo: dict[str, str | None] = {}
        for run_id, names in stored.items():
            if MARKER not in names:
                continue  # not committed yet
            writes = {name.removesuffix(BUNDLE) for name in names if name.endswith(BUNDLE)}
            cached = read_marker(self.root / run_id, verify=False)
            if cached is None or writes != {cached["write_id"]}:
                # one write stored: the marker, uploaded after it, names it; several: the marker says which
                todo[run_id] = writes.pop() if len(writes) == 1 else None
        if not todo:
            self._note_seen(packs)  # all they hold is cached or superseded already
            return 0, 0
        unpacked = self._from_packs(packs, todo)
        self._note_seen(packs)
        loose = list(todo.items())
        with ThreadPoolExecutor(TRANSFER_THREADS) as pool:
            brought = [run_id for (run_id, _), ok in zip(loose, pool.map(lambda job: self._fetch(*job), loose)) if ok]
            groups = [brought[i:i + PACK_MAX] for i in range(0, len(brought), PACK_MAX)] if len(brought) >= PACK_SIZE \
                else []
            list(pool.map(lambda group: self._upload_pack([(r, self._write_id(r)) for r in group]), groups))
        log.info("brought %d record(s) from %s: %d from %d pack(s), %d one by one (now in %d new pack(s))",
                 unpacked + len(brought), self.remote.url, unpacked, len(packs), len(brought), len(groups))
        return unpacked + len(brought), unpacked

    def _from_packs(self, packs: list[str], todo: dict[str, str | None]) -> int:
        """Take from these packs the writes ``todo`` wants (removing them from it); return how many. A pack taken
        whole leaves its merged tables for the load."""
        count = 0
        with ThreadPoolExecutor(min(TRANSFER_THREADS, len(packs) or 1)) as pool:
            for key, data in zip(packs, pool.map(self.remote.get_bytes, packs)):
                if data is None:
                    continue  # gone since the listing: its records come one by one
                try:
                    bundles, tables = unpack(data)
                except tarfile.TarError as exc:
                    log.warning("pack %s of %s was skipped: %s", key, self.remote.url, exc)
                    continue
                taken = {}
                for (run_id, write_id), content in bundles.items():
                    if todo.get(run_id) == write_id and self._extract(run_id, content):
                        del todo[run_id]
                        taken[run_id] = write_id
                if tables and taken and len(taken) == len(bundles):
                    with atomic_dir(self.root / MERGED / Path(key).stem) as tmp:
                        for name, content in tables.items():
                            (tmp / f"{name}.parquet").write_bytes(content)
                        (tmp / COVERS).write_text(json.dumps(taken))
                count += len(taken)
        return count

    def _seen_packs(self) -> set[str]:
        return {f"{PACKS}/{path.name}" for path in self._seen.glob("*")} if self._seen.is_dir() else set()

    def _note_seen(self, packs: list[str]) -> None:
        self._seen.mkdir(parents=True, exist_ok=True)
        for key in packs:
            (self._seen / key.removeprefix(f"{PACKS}/")).touch()

    def _write_id(self, run_id: str) -> str | None:
        marker = read_marker(self.root / run_id, verify=False)
        return marker and marker["write_id"]

    def _fetch(self, run_id: str, write_id: str | None = None) -> bool:
        """Copy one committed record into the cache; False when it changed or went while being copied (the next
        mirror takes it)."""
        prefix = f"{RECORDS}/{run_id}"
        try:
            if write_id is None:
                data = self.remote.get_bytes(f"{prefix}/{MARKER}")
                if data is None:
                    return False
                write_id = json.loads(data)["write_id"]
            content = self.remote.get_bytes(f"{prefix}/{write_id}{BUNDLE}")
        except (OSError, ValueError, KeyError) as exc:
            log.warning("record %s was not brought from %s this time: %s", run_id, self.remote.url, exc)
            return False
        return content is not None and self._extract(run_id, content)

    def _extract(self, run_id: str, content: bytes) -> bool:
        """Write a bundle into the cache, its files first and its marker last."""
        folder = self.root / run_id
        try:
            files = bundle_members(content)
            marker = json.loads(files[MARKER])
            names = [*marker["files"], MARKER]  # only the names its marker vouches for: nothing else is written
            # A cached copy, fetched again if lost, so nothing is synced to disk. A record new to the cache appears
            # whole in one rename of its folder; one the cache holds an older write of gets the new files first
            # and the marker last.
            if not folder.exists():
                with atomic_dir(folder) as tmp:
                    for name in names:
                        (tmp / name).write_bytes(files[name])
                return True
            for name in names:
                with atomic_file(folder / name, durable=False) as tmp:
                    tmp.write_bytes(files[name])
        except (OSError, ValueError, KeyError, tarfile.TarError) as exc:
            log.warning("record %s from %s was not written to the cache: %s", run_id, self.remote.url, exc)
            return False
        _remove_unreferenced(folder, set(marker["files"]))
        return True

    def committed(self) -> dict[str, Path]:
        self.mirror()
        return committed_records(self.root)

    def files(self, run_id: str) -> dict[str, Path]:
        if self.remote is not None and read_marker(self.root / run_id, verify=False) is None:
            self._fetch(run_id)
        return record_files(self.root / run_id)

    def rows(self, table: str) -> list[dict]:
        """Every committed record's rows of ``table``, read from the record alone (no database needed)."""
        found = []
        for folder in self.committed().values():
            files = record_files(folder)
            if table in files:  # a record holds only the tables it has rows in
                found += pq.read_table(files[table]).to_pylist()
        return found


class Results:
    """The results part of a store: a DuckDB file loaded from the records; every SQL of seqcast runs here.

    ``path`` is a local file (``SEQCAST_DB``): with an object store each machine keeps its own copy, loaded from the
    shared records by :meth:`sync`.
    """

    def __init__(self, home: Path, lock_timeout_s: float = DEFAULT_LOCK_TIMEOUT_S,
                 remote: ObjectStore | None = None, path: Path | None = None):
        self.home = home
        self.path = path or home / "results.duckdb"
        self.records = Records(home, remote)
        self.lock_timeout_s = lock_timeout_s

    def query(self, sql: str, params: list | None = None) -> tuple[list[str], list[tuple]]:
        """Run one read-only query; file paths in it resolve against the store's root."""
        return query(self.path, sql, params, self.lock_timeout_s, home=self.home)

    def frame(self, sql: str, params: list | None = None) -> pd.DataFrame:
        """Run one read-only query of seqcast's own and return its rows as a pandas data frame."""
        columns, rows = self.query(sql, params)
        return pd.DataFrame.from_records(rows, columns=columns)

    def forecast_frame(self, run_id: str) -> pd.DataFrame:
        """A predict run's forecasts: ``series_id, timestamp, value, lo_80, hi_80, lo_95, hi_95``."""
        return self.frame(queries.FORECAST_FRAME, [run_id])

    def backtest_frame(self, run_id: str, levels: list[float]) -> pd.DataFrame:
        """A backtest's forecasts, one row per cutoff, series and step, with ``lo_<level>``/``hi_<level>`` columns
        for each of ``levels`` (NULL where the cutoff had no earlier cutoffs to calibrate on)."""
        long = self.frame(queries.BACKTEST_FRAME, [list(levels), run_id])
        keys = ["series_id", "timestamp", "cutoff_index", "step", "actual", "forecast"]
        out = long[keys].drop_duplicates(subset=["series_id", "cutoff_index", "step"]).reset_index(drop=True)
        for level in levels:
            at = long[long["level"] == level][["series_id", "cutoff_index", "step", "lo", "hi"]]
            name = f"{level:g}"
            out = out.merge(at.rename(columns={"lo": f"lo_{name}", "hi": f"hi_{name}"}),
                            on=["series_id", "cutoff_index", "step"], how="left")
        return out

    def read_only_query(self, sql: str) -> tuple[list[str], list[tuple]]:
        """Run a user's query, which may read the store's files and write nothing (see :func:`read_only_query`)."""
        return read_only_query(self.path, sql, self.home, self.lock_timeout_s)

    def sync(self) -> LoadReport:
        """Load the records the database does not hold yet, first bringing other machines' into the cache."""
        fetched = self.records.mirror()
        report = sync(self.records.root, self.path, self.lock_timeout_s)
        report.fetched, report.from_packs = fetched
        return report

    def rebuild(self) -> LoadReport:
        """Recreate the database from the records alone (all of them, with an object store)."""
        fetched = self.records.mirror()
        report = rebuild(self.records.root, self.path, self.lock_timeout_s)
        report.fetched, report.from_packs = fetched
        return report

    def load(self, run_ids: list[str]) -> LoadReport:
        return load_records(self.path, {r: self.records.root / r for r in run_ids}, self.lock_timeout_s)

    def leaderboard(self, variants: list[str], book_valid_mse: list[float], dataset_ids: list[str]):
        """The best run per variant on these datasets, with the book's figure on the book's data."""
        return self.query(queries.LEADERBOARD, [variants, book_valid_mse, dataset_ids])

    def completed_run(self, run_id: str) -> dict | None:
        """The completed run ``run_id``: its runs row and valid MSE, or None."""
        return _first(self.query(queries.COMPLETED_RUN, [run_id]))

    def best_run(self, dataset_id: str, family: str | None = None, variant: str | None = None,
                 excluded: list[str] = ()) -> dict | None:
        """The scored run of the best valid MSE on a dataset (of a family or variant, none of ``excluded``), or
        None."""
        return _first(self.query(queries.BEST_RUN, [dataset_id, family, family, variant, variant, list(excluded)]))

    def sweep_scores(self, flow_run_ids: list[str]) -> list[dict]:
        """The scores of the runs of these flow run ids (those loaded)."""
        columns, rows = self.query(queries.SWEEP_SCORES, [flow_run_ids])
        return [dict(zip(columns, row)) for row in rows]

    def backtest_scores(self, run_ids: list[str]):
        """The backtests' sMAPE, MASE, OWA and interval scores over all their cutoffs, best sMAPE first."""
        return self.query(queries.BACKTEST_SCORES, [run_ids])

    def run_backtest(self, run_id: str, dataset_id: str, variant: str, horizon: int) -> dict | None:
        """The newest completed backtest on ``dataset_id`` whose cutoff 0 this run forecast, or None."""
        return _first(self.query(queries.RUN_BACKTEST, [dataset_id, run_id, variant, horizon]))

    def backtest_residuals(self, run_id: str) -> dict[str, list]:
        """Every scored forecast of a backtest: series_id, step and scaled_error lists, all its cutoffs."""
        columns, rows = self.query(queries.BACKTEST_RESIDUALS, [run_id])
        return {c: [row[i] for row in rows] for i, c in enumerate(columns)}

    def benchmark_scores(self, run_ids: list[str], split: str = "test") -> list[dict]:
        """The ``benchmark_scores`` rows of these runs on one split (those loaded)."""
        columns, rows = self.query(queries.BENCHMARK_SCORES, [run_ids, split])
        return [dict(zip(columns, row)) for row in rows]

    def series_scores(self, run_ids: list[str], split: str = "test") -> list[dict]:
        """The per-series sMAPE and MASE of these runs on one split, the runs' own and Naive2's."""
        columns, rows = self.query(queries.SERIES_SCORES, [run_ids, split])
        return [dict(zip(columns, row)) for row in rows]

    def champion_candidates(self, dataset_id: str) -> list[dict]:
        """Every completed backtest on the dataset over all its cutoffs (MASE, sMAPE, cutoff set) with the run that
        serves its model; none when the database holds no backtests yet."""
        try:
            columns, rows = self.query(queries.CHAMPION_CANDIDATES, [dataset_id])
        except (FileNotFoundError, duckdb.CatalogException):  # no database, or one made before backtests existed
            return []
        return [dict(zip(columns, row)) for row in rows]

    def sitting_champion(self, dataset_id: str) -> dict | None:
        """The dataset's latest ``champions`` row, or None."""
        try:
            return _first(self.query(queries.SITTING_CHAMPION, [dataset_id]))
        except (FileNotFoundError, duckdb.CatalogException):  # a database made before champions existed
            return None

    def completed_backtest(self, run_id: str) -> dict | None:
        """The completed backtest ``run_id``: variant, dataset, horizon, windows, params (JSON); or None."""
        return _first(self.query(queries.CHAMPION_BACKTEST, [run_id]))
    def stored_forecasts(self, series_ids: list[str], run_id: str | None = None,
                         dataset_id: str | None = None) -> dict[str, list]:
        """The stored forecasts of these series (of one forecast run and/or dataset): column -> list; empty lists
        when the database holds no forecasts yet."""
        columns = ["run_id", "model_run_id", "dataset_id", "series_id", "timestamp", "step", "value", "lo_80",
                   "hi_80", "lo_95", "hi_95"]
        try:
            columns, rows = self.query(queries.STORED_FORECASTS, [series_ids, run_id, run_id, dataset_id,
                                                                  dataset_id])
        except (FileNotFoundError, duckdb.CatalogException):  # no database yet, or one made before forecasts
            rows = []
        return {c: [row[i] for row in rows] for i, c in enumerate(columns)}

    def has_forecasts(self, run_id: str | None = None, dataset_id: str | None = None) -> bool:
        """Whether any forecast is stored (of this forecast run and/or dataset)."""
        try:
            return self.query(queries.FORECASTS_STORED, [run_id, run_id, dataset_id, dataset_id])[1][0][0] > 0
        except (FileNotFoundError, duckdb.CatalogException):
            return False

    def live_vs_backtest(self) -> list[dict]:
        """Every ``live_vs_backtest`` row with its model run's training parameters (JSON), worst ratio first; none
        when the database holds no scored forecasts yet."""
        try:
            columns, rows = self.query(queries.LIVE_VS_BACKTEST)
        except FileNotFoundError:
            return []
        return [dict(zip(columns, row)) for row in rows]

    def live_scores(self, run_ids: list[str]):
        """The live scores of these forecast runs: MASE, MAE and coverage over the actuals scored so far."""
        return self.query(queries.LIVE_SCORES, [run_ids])

    def forecasts(self, run_id: str, limit: int):
        """The first ``limit`` forecast rows of a predict run."""
        return self.query(queries.FORECASTS, [run_id, limit])


def _first(result: tuple[list[str], list[tuple]]) -> dict | None:
    columns, rows = result
    return dict(zip(columns, rows[0])) if rows else None
