"""Staged outputs: the rows of a run's large tables, written shard by shard as its shard tasks finish, and committed
with the run's other rows in one commit per table.

A shard task writes its rows of each table as one Parquet file, ``staged/<run_id>/<table>/shard-NNNNN.parquet``
under the store's location (the local home, or inside the object store, so that tasks on several hosts stage into
one place). A file appears whole or not at all (a rename locally; an upload is visible only once complete), so a
shard whose file exists is done: a retried task or flow run skips it, and a shard task that is killed and run again
replaces its own file, never adds a second. :meth:`Staged.dataset` reads every shard's file of a table as one Arrow
dataset, which :meth:`seqcast.storage.tables.Tables.write` streams into the table's commit without holding it in
memory. Once the run is recorded, its staged files are deleted.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from seqcast.config.names import check_name
from seqcast.storage.atomic import atomic_file
from seqcast.storage.objects import ObjectStore
from seqcast.storage.schemas import SCHEMAS, as_table, check_rows
from seqcast.storage.shards import shard_file

STAGED_FOLDER = "staged"
PARTS_FOLDER = "_parts"  # not a table name: tables are plain names without a leading underscore
ROW_GROUP_ROWS = 1 << 20  # a committing reader streams one row group at a time


class Staged:
    """The staged per-shard rows of the store's runs: local under its root, or in its object store."""

    def __init__(self, root: Path, remote: ObjectStore | None = None):
        if remote is not None:
            self.fs, self.base = remote.fs, f"{remote.base}/{STAGED_FOLDER}"
        else:
            self.fs, self.base = pafs.LocalFileSystem(), str(Path(root).resolve() / STAGED_FOLDER)
        self.local = remote is None

    def _folder(self, run_id: str, table: str) -> str:
        check_name("run id", run_id)
        if table not in SCHEMAS:
            raise ValueError(f"unknown result table {table!r}")
        return f"{self.base}/{run_id}/{table}"

    def write(self, run_id: str, table: str, shard: int, rows: pa.Table | list[dict]) -> int:
        """Stage one shard's rows of ``table`` (exactly its schema, every row of ``run_id``), replacing what the shard
        staged before; return the number of rows. ValueError for rows that do not fit, before anything is written."""
        rows = as_table(table, rows)
        check_rows(run_id, {table: rows})
        folder = self._folder(run_id, table)
        self.fs.create_dir(folder, recursive=True)
        self._put(f"{folder}/{shard_file(shard)}",
                  lambda path: pq.write_table(rows, path, filesystem=self.fs, row_group_size=ROW_GROUP_ROWS))
        return rows.num_rows

    def read(self, run_id: str, table: str, shard: int) -> pa.Table:
        """One shard's staged rows of ``table``, for a later stage of the run that completes them."""
        return pq.read_table(f"{self._folder(run_id, table)}/{shard_file(shard)}", filesystem=self.fs,
                             schema=SCHEMAS[table])

    def write_part(self, run_id: str, shard: int, summary: dict) -> None:
        """Stage what a shard task returns (JSON), after its rows: a shard whose part is staged is done."""
        target = self._part_path(run_id, shard)
        self.fs.create_dir(target.rsplit("/", 1)[0], recursive=True)
        data = json.dumps(summary).encode()

        def write(path: str) -> None:
            with self.fs.open_output_stream(path) as out:
                out.write(data)

        self._put(target, write)

    def part(self, run_id: str, shard: int) -> dict | None:
        """What the shard's task staged with :meth:`write_part`, or None while it has not finished."""
        try:
            with self.fs.open_input_stream(self._part_path(run_id, shard)) as f:
                return json.loads(f.read())
        except FileNotFoundError:
            return None

    def _part_path(self, run_id: str, shard: int) -> str:
        check_name("run id", run_id)
        return f"{self.base}/{run_id}/{PARTS_FOLDER}/shard-{shard:05d}.json"

    def _put(self, target: str, write: Callable[[str], None]) -> None:
        """Write a file whole or not at all: an object store shows an object once its upload completes; a local
        file is written beside its place and renamed into it (``atomic_file``)."""
        if not self.local:
            write(target)
            return
        with atomic_file(Path(target)) as tmp:
            write(str(tmp))

    def shards(self, run_id: str, table: str) -> set[int]:
        """The shards whose rows of ``table`` are staged for the run."""
        selector = pafs.FileSelector(self._folder(run_id, table), allow_not_found=True)
        return {int(info.base_name[len("shard-"):-len(".parquet")]) for info in self.fs.get_file_info(selector)
                if info.base_name.startswith("shard-") and info.base_name.endswith(".parquet")}

    def dataset(self, run_id: str, table: str) -> ds.Dataset | None:
        """Every staged shard's rows of ``table`` as one dataset of the table's schema, shard after shard; None when
        nothing is staged."""
        found = sorted(self.shards(run_id, table))
        if not found:
            return None
        folder = self._folder(run_id, table)
        return ds.dataset([f"{folder}/{shard_file(n)}" for n in found], schema=SCHEMAS[table], format="parquet",
                          filesystem=self.fs)

    def discard(self, run_id: str) -> None:
        """Delete everything the run staged (after its commit, or when it starts over)."""
        check_name("run id", run_id)
        folder = f"{self.base}/{run_id}"
        if self.fs.get_file_info(folder).type == pafs.FileType.Directory:
            self.fs.delete_dir(folder)
