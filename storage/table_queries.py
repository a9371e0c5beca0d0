"""SQL over the Delta tables: an in-memory DuckDB connection with every table registered as an Arrow dataset.

Each table of ``SCHEMAS`` is registered under its own name from ``DeltaTable.to_pyarrow_dataset()``, with the
views of :mod:`seqcast.storage.views` over them, so seqcast's named queries (:mod:`seqcast.storage.queries`) and a
user's ``seqcast sql`` read them by the tables' own names. The datasets carry each file's statistics, so
DuckDB's filters (``WHERE run_id = ?``) skip the files that cannot hold a match. A connection reads each table at
the version it was opened at, and nothing through it can write a table: there is no database file to lock, so
readers never wait for writers.
"""

from __future__ import annotations

from pathlib import Path

import duckdb

from seqcast.storage.schemas import SCHEMAS
from seqcast.storage.tables import Tables
from seqcast.storage.views import VIEWS, fetch, refuse_writes, run_locked_down

# the store's own folders a user's query may read files from (relative paths resolve against the store's root)
STORE_FOLDERS = ("datasets", "models")


def connect(tables: Tables) -> duckdb.DuckDBPyConnection:
    """An in-memory connection with every table (an empty one for a table no run has written yet) and view."""
    con = duckdb.connect()
    for name, table in tables.open_all().items():
        schema = SCHEMAS[name]
        if table is None:
            con.register(name, schema.empty_table())
            continue
        # the table's own schema, plus any column of today's schema that no write has added yet (NULL)
        dataset = table.to_pyarrow_dataset()
        missing = [field for field in schema if field.name not in dataset.schema.names]
        if missing:
            dataset = table.to_pyarrow_dataset(schema=_with(dataset.schema, missing))
        con.register(name, dataset)
    con.execute(VIEWS)
    return con


def _with(schema, fields):
    for field in fields:
        schema = schema.append(field)
    return schema


def query(tables: Tables, sql: str, params: list | None = None,
          home: Path | None = None) -> tuple[list[str], list[tuple]]:
    """Run one query over the tables and return (column names, rows); relative file paths resolve against
    ``home``."""
    con = connect(tables)
    try:
        return fetch(con, sql, params, home)
    finally:
        con.close()


def read_only_query(tables: Tables, sql: str, home: Path) -> tuple[list[str], list[tuple]]:
    """Run one statement of a user's SQL that writes nothing anywhere: not a table, not a file.

    Only queries run (ValueError names a refused statement); they may read the store's own files (paths relative
    to ``home`` resolve against it), and the connection's configuration is locked before the statement runs.
    """
    refuse_writes(sql)
    con = connect(tables)
    try:
        return run_locked_down(con, sql, home, STORE_FOLDERS)
    finally:
        con.close()
