"""Bring the results of a home written by the record format into the Delta tables (``seqcast results migrate``).

The record format kept each run in ``records/<run_id>/``: one Parquet file per table and a ``_COMMITTED`` marker
naming them; on an object store, one tar bundle per write (``records/<run_id>/<write_id>.tar``) beside the marker.
Only what a marker vouches for is read: a folder without a valid marker was never committed, and is left alone.
A record written before a column existed reads that column as NULL. Migrating again replaces each run's rows
instead of adding them, so a migration cut short is simply run once more. The records are only read: deleting
them (and ``results.duckdb``) is left to the user once the tables are checked.
"""

from __future__ import annotations

import io
import json
import logging
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from seqcast.config.names import SAFE_NAME
from seqcast.storage.objects import ObjectStore
from seqcast.storage.schemas import SCHEMAS
from seqcast.storage.tables import Tables

log = logging.getLogger(__name__)

RECORDS = "records"
MARKER = "_COMMITTED"
BUNDLE = ".tar"
BATCH = 500  # records per commit of each table: one commit per record would cost a log entry per run and table

Rows = dict[str, pa.Table]


def _marker_tables(marker: dict, run_id: str) -> dict[str, str] | None:
    """A valid marker's table -> file name, or None."""
    try:
        if marker["run_id"] != run_id or not set(marker["tables"]) <= set(SCHEMAS):
            return None
        return {name: str(file) for name, file in marker["tables"].items()}
    except (KeyError, TypeError, AttributeError):
        return None


def committed_record(folder: Path) -> dict[str, Path] | None:
    """Table name -> Parquet file of a committed record, or None when the folder holds no committed record."""
    try:
        names = _marker_tables(json.loads((folder / MARKER).read_text()), folder.name)
    except (OSError, ValueError):
        return None
    files = {name: folder / file for name, file in (names or {}).items()}
    return files if names is not None and all(path.is_file() for path in files.values()) else None


def _with_every_column(name: str, table: pa.Table) -> pa.Table:
    for field in SCHEMAS[name]:
        if field.name not in table.column_names:
            table = table.append_column(field, pa.nulls(table.num_rows, field.type))
    return table


def read_record(files: dict[str, Path | bytes]) -> Rows:
    """A record's tables (from files, or from their bytes), each with every column of today's schema (NULL where
    the record predates it)."""
    return {name: _with_every_column(name, pq.read_table(io.BytesIO(source) if isinstance(source, bytes) else source))
            for name, source in files.items()}


def local_records(record_root: Path) -> Iterator[tuple[str, Rows | None]]:
    """(run id, its tables) of every record folder under ``record_root``; None for one that holds no committed
    record."""
    folders = sorted(path for path in record_root.iterdir() if path.is_dir() and SAFE_NAME.match(path.name)) \
        if record_root.is_dir() else []
    for folder in folders:
        files = committed_record(folder)
        yield folder.name, None if files is None else read_record(files)


def stored_records(remote: ObjectStore) -> Iterator[tuple[str, Rows | None]]:
    """(run id, its tables) of every record an object store holds: the bundle its marker names; None for a run
    whose marker or bundle is missing or damaged."""
    runs = sorted({key.split("/")[1] for key in remote.list(RECORDS)
                   if key.count("/") == 2 and SAFE_NAME.match(key.split("/")[1])})
    for run_id in runs:
        yield run_id, _stored_record(remote, run_id)


def _stored_record(remote: ObjectStore, run_id: str) -> Rows | None:
    try:
        marker = json.loads(remote.get_bytes(f"{RECORDS}/{run_id}/{MARKER}") or b"null")
        names = _marker_tables(marker, run_id) if marker else None
        content = remote.get_bytes(f"{RECORDS}/{run_id}/{marker['write_id']}{BUNDLE}") if names else None
        if content is None:
            return None
        with tarfile.open(fileobj=io.BytesIO(content), mode="r:") as tar:
            members = {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}
        return read_record({name: members[file] for name, file in names.items()})
    except (OSError, ValueError, KeyError, TypeError, tarfile.TarError) as exc:
        log.warning("record %s of %s is not readable: %s", run_id, remote.url, exc)
        return None


def migrate(records: Iterator[tuple[str, Rows | None]], tables: Tables,
            complete: Callable[[Rows], Rows] = lambda rows: rows,
            progress: Callable[[int], None] | None = None) -> tuple[list[str], list[str]]:
    """Write every committed record into ``tables``, ``BATCH`` runs per commit of each table; return (run ids
    migrated, run ids skipped because they hold no committed record).

    ``complete`` adds what a record of an older release lacks (the scores it did not store) before it is written;
    ``progress`` hears the number of runs migrated so far after each batch.
    """
    migrated, skipped, batch = [], [], {}

    def flush() -> None:
        tables.write_many(batch)
        migrated.extend(batch)
        batch.clear()
        if progress is not None:
            progress(len(migrated))

    for run_id, rows in records:
        if rows is None:
            skipped.append(run_id)
            continue
        batch[run_id] = complete(rows)
        if len(batch) >= BATCH:
            flush()
    if batch:
        flush()
    if skipped:
        log.warning("%d record(s) hold no committed write and were not migrated: %s", len(skipped),
                    ", ".join(skipped[:5]))
    return migrated, skipped
