"""Results as Delta Lake tables: ``tables/<name>`` under the store's location, one per table of ``SCHEMAS``.

Any engine that reads Delta (DuckDB, Polars, pandas through ``deltalake``, Spark, Trino) reads these tables without
seqcast. A run's rows reach each table in one commit of that table's transaction log, so a reader sees a table at
one version: all of that run's rows in it or none. A retried run replaces its own rows in the same single commit (an
overwrite of the rows whose record key is the run id: Delta's replace-where); rows of other runs are untouched. The
log's per-file statistics of the record key tell whether any file may hold the run's rows: a run's first write finds
none and is a plain append, which reads no data and never conflicts with other writers; only a retry pays for
finding its earlier rows.

A run's own row (``runs``, ``backtests``, ``champions``) is committed after its other tables: every view joins the
details to that row, so a writer that dies between two tables leaves nothing the views show, and its retry replaces
what it left. Writers in several processes or hosts commit concurrently; a commit that loses a race to a conflicting
one (a retry's replace-where, a new dataset row) is tried again on the newer version.

Tables are not partitioned. A run's rows of one table are one commit's files, so a partition per run would add a
folder per run and keep compaction from merging runs, and most tables have no column but the run id to split on
(``predictions`` lacks the dataset). Readers find one run's files by the per-file statistics of the record key in
the log, which :meth:`Tables.compact` keeps narrow by Z-ordering each table on that key.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import tenacity
from deltalake import DeltaTable, write_deltalake
from deltalake.exceptions import CommitFailedError, TableNotFoundError

from seqcast.config.names import check_name
from seqcast.storage.objects import ObjectStore
from seqcast.storage.schemas import SCHEMAS, TABLES, checked_tables, record_key

# A table's rows of one run: row dicts, an Arrow table, or an Arrow dataset (a run's staged per-shard files,
# seqcast.storage.staged) that its commit streams instead of holding in memory
Rows = list[dict] | pa.Table | pads.Dataset

log = logging.getLogger(__name__)

TABLES_FOLDER = "tables"
# committed last, in this order: the views join every other table's rows to these
OWN_ROWS = ("backtests", "champions", "runs")
# a conflicting commit is tried again on the newer version; writers finishing together spread their tries
COMMIT_ATTEMPTS = 12
DEFAULT_RETENTION_HOURS = 168
# A commit reads every live file's statistics, so a run's write costs more with each small file earlier runs left:
# a table that holds this many files has them merged right after a write (the weekly maintenance also orders them)
COMPACT_AFTER_FILES = 64
STREAM_BATCH_ROWS = 1 << 18  # rows a streamed commit holds at a time


def delta_options(remote: ObjectStore | None) -> dict[str, str] | None:
    """delta-rs storage options for the store's object store (None for a local folder).

    Only where to connect: the credentials stay in the standard AWS variables, which delta-rs reads itself.
    ``conditional_put=etag`` makes a commit an atomic put-if-absent of the log entry, which S3 and its
    compatible stores support, so concurrent writers need no lock table.
    """
    if remote is None:
        return None
    options = {"conditional_put": "etag"}
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    if endpoint:
        options["endpoint"] = endpoint
        if urlparse(endpoint).scheme == "http":
            options["allow_http"] = "true"
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if region:
        options["region"] = region
    return options


class Tables:
    """The Delta tables of one store: a run's rows in, one commit per table; maintenance; the open tables.

    ``location`` is a local folder or an ``s3://bucket/prefix`` URL; the tables live under ``<location>/tables``.
    An instance keeps the tables it opened and brings them up to date before each use, so a process writing many
    runs reads each log once and then only its new entries.
    """

    def __init__(self, location: str | Path, storage_options: dict[str, str] | None = None):
        self.location = str(location).rstrip("/")
        self.storage_options = storage_options
        self._open: dict[str, DeltaTable] = {}

    @classmethod
    def of_store(cls, root: Path, remote: ObjectStore | None = None) -> Tables:
        """The tables of a store: under its object store when it has one, else under its local root."""
        return cls(remote.url if remote is not None else root, delta_options(remote))

    def uri(self, name: str) -> str:
        return f"{self.location}/{TABLES_FOLDER}/{name}"

    def open(self, name: str) -> DeltaTable | None:
        """The table at its newest version, or None while no run has written to it."""
        table = self._open.get(name)
        if table is not None:
            table.update_incremental()
            return table
        try:
            table = DeltaTable(self.uri(name), storage_options=self.storage_options)
        except TableNotFoundError:
            return None
        self._open[name] = table
        return table

    def open_all(self) -> dict[str, DeltaTable | None]:
        """Every table of ``SCHEMAS`` at its newest version (None for those no run has written), read side by side."""
        with ThreadPoolExecutor(len(TABLES)) as pool:
            return dict(zip(TABLES, pool.map(self.open, TABLES)))

    def write(self, run_id: str, rows: dict[str, Rows]) -> dict[str, int]:
        """Commit one run's rows (table name -> row dicts or Arrow table); return table -> version committed.

        Every name is checked before anything is written. A table the run wrote before and holds no rows for now
        loses the earlier rows; ``datasets`` rows are shared by content, so only a dataset id not yet there is
        added.
        """
        tables = _checked(run_id, rows)
        datasets = tables.pop("datasets")
        opened = self.open_all()  # every log read side by side once; a commit that loses a race reads its own again
        # a table that does not exist holds no rows of this run: nothing to replace there
        todo = [name for name in tables if _count(tables[name]) or opened[name] is not None]
        versions: dict[str, int] = {}
        if datasets.num_rows:
            versions.update(self._retrying("datasets", lambda: self._add_datasets(datasets)))

        def replace(name: str) -> dict[str, int]:
            tries = iter([opened[name]])
            return self._retrying(name, lambda: self._replace(name, run_id, tables[name], next(tries, None)))

        # each table's commit is its own: the details go side by side, the run's own row after all of them
        with ThreadPoolExecutor(len(TABLES)) as pool:
            for found in pool.map(replace, [name for name in todo if name not in OWN_ROWS]):
                versions.update(found)
        for name in OWN_ROWS:
            if name in todo:
                versions.update(replace(name))
        with ThreadPoolExecutor(len(TABLES)) as pool:
            list(pool.map(self._compact_if_crowded, [*todo, *(["datasets"] if datasets.num_rows else [])]))
        return versions

    def _compact_if_crowded(self, name: str) -> None:
        """Merge the table's small files once it holds ``COMPACT_AFTER_FILES`` files. The run's rows are committed
        already, so a compaction that loses a race to another writer's is left to the next write. The table object
        is the one this write committed through, at its own commit's version: counting its files reads no log."""
        table = self._open.get(name)
        if table is None or len(table.file_uris()) < COMPACT_AFTER_FILES:
            return
        try:
            table.optimize.compact()
        except Exception as exc:  # delta-rs raises its own errors for a lost race or a store that refused
            log.info("compaction of %s left to a later write: %s", name, exc)

    def write_many(self, runs: dict[str, dict[str, list[dict] | pa.Table]]) -> list[str]:
        """Commit many runs' rows with one commit per table for all the runs no table holds yet; return their ids.

        For bulk loads (a migration): the runs a table already holds rows of are written one by one, as
        :meth:`write` does, so a repeated load replaces instead of adding.
        """
        checked = {run_id: _checked(run_id, rows) for run_id, rows in runs.items()}
        existing = {name: table for name, table in self.open_all().items() if table is not None}
        known = set().union(*(_may_hold(table, name, list(checked)) for name, table in existing.items()))
        for run_id in sorted(known):
            self.write(run_id, runs[run_id])
        fresh = [run_id for run_id in checked if run_id not in known]
        if not fresh:
            return []
        datasets = pa.concat_tables([checked[run_id].pop("datasets") for run_id in fresh])
        if datasets.num_rows:
            self._retrying("datasets", lambda: self._add_datasets(datasets))
        for name in [*(name for name in TABLES if name not in OWN_ROWS and name != "datasets"), *OWN_ROWS]:
            writers = [run_id for run_id in fresh if checked[run_id][name].num_rows]
            if not writers:
                continue
            rows = pa.concat_tables([checked[run_id][name] for run_id in writers])
            self._retrying(name, lambda name=name, rows=rows: self._append(name, rows))
        return fresh

    def _append(self, name: str, rows: pa.Table, table: DeltaTable | None = None) -> dict[str, int]:
        table = table or self.open(name)
        if table is None:  # the first rows create the table
            write_deltalake(self.uri(name), _stream(rows), mode="append", storage_options=self.storage_options)
            table = self.open(name)
        else:
            write_deltalake(table, _stream(rows), mode="append", schema_mode=_schema_mode(table, rows))
        return {name: table.version()}

    def _retrying(self, name: str, commit: Callable[[], dict[str, int]]) -> dict[str, int]:
        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception(_lost_race), stop=tenacity.stop_after_attempt(COMMIT_ATTEMPTS),
            wait=tenacity.wait_random_exponential(multiplier=0.05, max=2.0), reraise=True,
            before_sleep=lambda state: log.debug("commit to %s lost a race (try %d): %s", name,
                                                 state.attempt_number, state.outcome.exception()))
        return retrying(commit)

    def _replace(self, name: str, run_id: str, rows: pa.Table, table: DeltaTable | None = None) -> dict[str, int]:
        """One commit that makes ``rows`` the run's rows of the table: an append the first time, else a
        replace-where on the record key (a delete when no rows are left). ``table``: the table just read, if any."""
        table = table or self.open(name)
        written = table is not None and bool(_may_hold(table, name, [run_id]))
        if not written:
            return self._append(name, rows, table) if _count(rows) else {}
        # run ids are plain names (check_name), so the literal cannot break out of the predicate
        if _count(rows):
            write_deltalake(table, _stream(rows), mode="overwrite", predicate=f"{record_key(name)} = '{run_id}'",
                            schema_mode=_schema_mode(table, rows))
        else:
            table.delete(f"{record_key(name)} = '{run_id}'")
        return {name: table.version()}  # a commit through the table object moves it to the version committed

    def _add_datasets(self, rows: pa.Table) -> dict[str, int]:
        """Append the dataset rows whose id the table lacks (a dataset id names its content: the first row stays)."""
        table = self.open("datasets")
        if table is not None:  # one row per dataset: small enough to read whole
            have = table.to_pyarrow_dataset().to_table(columns=["dataset_id"]).column(0)
            rows = rows.filter(pc.invert(pc.is_in(rows.column("dataset_id"), have)))
        if not rows.num_rows:
            return {}
        first = {}  # a run's few dataset rows: the first of each id
        for index, dataset_id in enumerate(rows.column("dataset_id").to_pylist()):
            first.setdefault(check_name("datasets.dataset_id", dataset_id), index)
        rows = rows.take(sorted(first.values()))
        ids = ", ".join(f"'{dataset_id}'" for dataset_id in first)
        if table is None:
            # created empty, so that even the first rows go in by a merge: an append that created the table would,
            # on losing the race to create it, be committed after the winner's rows as well
            DeltaTable.create(self.uri("datasets"), SCHEMAS["datasets"], mode="ignore",
                              storage_options=self.storage_options)
            table = self.open("datasets")
        # a merge reads the ids it inserts, so two writers adding the same new dataset conflict and the loser finds
        # the row on its next try instead of adding a second one
        (table.merge(rows, predicate=f"t.dataset_id = s.dataset_id AND t.dataset_id IN ({ids})",
                     source_alias="s", target_alias="t")
         .when_not_matched_insert_all().execute())
        return {"datasets": self.open("datasets").version()}

    def compact(self, retention_hours: int = DEFAULT_RETENTION_HOURS) -> dict[str, dict]:
        """Rewrite each table's small files into large ones ordered by its record key, then delete the files no
        version younger than ``retention_hours`` reads (and those of writers that died before their commit);
        return table -> what was done."""
        done = {}
        for name, table in self.open_all().items():
            if table is None:
                continue
            key = record_key(name) if record_key(name) in SCHEMAS[name].names else None
            if len(table.file_uris()) < 2:  # nothing to merge: rewriting one file would only cost a version
                optimized = {}
            else:
                optimized = table.optimize.z_order([key]) if key else table.optimize.compact()
            removed = table.vacuum(retention_hours=retention_hours, dry_run=False, enforce_retention_duration=False,
                                   full=True)
            table.create_checkpoint()
            table.cleanup_metadata()
            done[name] = {"files_added": optimized.get("numFilesAdded", 0),
                          "files_removed": optimized.get("numFilesRemoved", 0), "files_vacuumed": len(removed),
                          "version": table.version()}
        return done


def _checked(run_id: str, rows: dict[str, Rows]) -> dict[str, pa.Table | pads.Dataset]:
    """Every table's rows of one run as Arrow tables of its schema, or the staged dataset given for it (checked
    when it was staged: here only its schema); ValueError for a bad name or row."""
    staged = {name: found for name, found in rows.items() if isinstance(found, pads.Dataset)}
    tables = checked_tables(run_id, {name: found for name, found in rows.items() if name not in staged})
    for name, dataset in staged.items():
        if not dataset.schema.equals(SCHEMAS[name]):
            raise ValueError(f"staged rows of {name} have the schema {dataset.schema}, not the table's")
    return {**tables, **staged}


def _count(rows: pa.Table | pads.Dataset) -> int:
    return rows.num_rows if isinstance(rows, pa.Table) else rows.count_rows()


def _stream(rows: pa.Table | pads.Dataset) -> pa.Table | pa.RecordBatchReader:
    """What a commit writes: a table as it is, a staged dataset one batch at a time, read anew on every try."""
    return rows if isinstance(rows, pa.Table) else rows.scanner(batch_size=STREAM_BATCH_ROWS).to_reader()


def _may_hold(table: DeltaTable, name: str, run_ids: list[str]) -> set[str]:
    """The run ids of which some file of the table may hold rows, by the log's per-file minimum and maximum of the
    record key (no data is read); every one when a file lacks those statistics."""
    key = record_key(name)
    actions = pa.table(table.get_add_actions(flatten=True))
    if not actions.num_rows or not run_ids:
        return set()
    if f"min.{key}" not in actions.column_names:
        return set(run_ids)
    keyed = pc.less(actions.column(f"null_count.{key}"), actions.column("num_records"))  # all-NULL files hold none
    low = actions.column(f"min.{key}").filter(keyed)
    high = actions.column(f"max.{key}").filter(keyed)
    if low.null_count or high.null_count:
        return set(run_ids)
    ids = np.array(sorted(run_ids), dtype=object)
    # each file's [min, max] covers a run of the sorted ids: mark where each span starts and ends
    marks = np.zeros(len(ids) + 1, np.int64)
    np.add.at(marks, np.searchsorted(ids, low.to_numpy(zero_copy_only=False), "left"), 1)
    np.add.at(marks, np.searchsorted(ids, high.to_numpy(zero_copy_only=False), "right"), -1)
    return set(ids[np.cumsum(marks)[:-1] > 0])


def _schema_mode(table: DeltaTable, rows: pa.Table) -> str | None:
    """``merge`` when the rows bring a column the table lacks (a table made by an older seqcast), else None."""
    have = {field.name for field in table.schema().fields}
    return "merge" if set(rows.schema.names) - have else None


def _lost_race(exc: BaseException) -> bool:
    # delta-rs names a lost race in the message of a CommitFailedError (or a generic DeltaError for a table that
    # another writer created first)
    if isinstance(exc, CommitFailedError):
        return True
    text = str(exc).lower()
    return "conflict" in text or "already exists" in text
