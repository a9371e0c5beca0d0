"""Bring the results of a home written by the record format (``records/<run_id>/`` with a ``_COMMITTED`` marker) into
the Delta tables.

Only what a record's marker vouches for is read: a folder without a valid marker was never committed, and its files
are left alone. A record written before a column existed reads that column as NULL. Migrating again replaces each
run's rows instead of adding them, so a migration cut short is simply run once more.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from seqcast.config.names import SAFE_NAME
from seqcast.storage.schemas import SCHEMAS
from seqcast.storage.tables import Tables

log = logging.getLogger(__name__)

MARKER = "_COMMITTED"
BATCH = 500  # records per commit of each table: one commit per record would cost a log entry per run and table


def committed_record(folder: Path) -> dict[str, Path] | None:
    """Table name -> Parquet file of a committed record, or None when the folder holds no committed record."""
    try:
        marker = json.loads((folder / MARKER).read_text())
        if marker["run_id"] != folder.name or not set(marker["tables"]) <= set(SCHEMAS):
            return None
        files = {name: folder / file for name, file in marker["tables"].items()}
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return files if all(path.is_file() for path in files.values()) else None


def read_record(files: dict[str, Path]) -> dict[str, pa.Table]:
    """A record's tables, each with every column of today's schema (NULL where the record predates it)."""
    tables = {}
    for name, path in files.items():
        table = pq.read_table(path)
        for field in SCHEMAS[name]:
            if field.name not in table.column_names:
                table = table.append_column(field, pa.nulls(table.num_rows, field.type))
        tables[name] = table
    return tables


def migrate(record_root: Path, tables: Tables) -> tuple[list[str], list[str]]:
    """Write every committed record under ``record_root`` into ``tables``; return (run ids migrated, folders
    skipped because they hold no committed record)."""
    migrated, skipped, batch = [], [], {}
    folders = sorted(path for path in record_root.iterdir() if path.is_dir() and SAFE_NAME.match(path.name)) \
        if record_root.is_dir() else []
    for folder in folders:
        files = committed_record(folder)
        if files is None:
            skipped.append(folder.name)
            continue
        batch[folder.name] = read_record(files)
        if len(batch) >= BATCH:
            tables.write_many(batch)
            migrated += batch
            batch = {}
    if batch:
        tables.write_many(batch)
        migrated += batch
    if skipped:
        log.warning("%d record folder(s) hold no committed record and were not migrated: %s", len(skipped),
                    ", ".join(skipped[:5]))
    return migrated, skipped
