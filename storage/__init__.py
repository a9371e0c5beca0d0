"""One interface over seqcast's state at one location: datasets, models and the results tables.

    store = Store(root)
    store.datasets.find(dataset_id)          # Parquet splits + manifest
    store.models.save(run_id, model, manifest)  # .keras + manifest, plots
    store.staged.write(run_id, table, shard, rows)  # a shard task's rows, until the run's commit
    store.results.record(run_id, rows)       # the run's rows: one Delta commit per table
    store.results.query(sql)                 # DuckDB over the Delta tables

Rows and manifests name files by paths relative to the root, so a record written on one machine means the same
on another. Every SQL statement of seqcast lives in this package.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from seqcast.storage.datasets import Datasets
from seqcast.storage.models import Models
from seqcast.storage.objects import ObjectStore
from seqcast.storage.results import Results
from seqcast.storage.staged import Staged


@dataclass(frozen=True)
class Store:
    """seqcast's state at SEQCAST_HOME, in three parts.

    ``root`` is a local folder: the home itself, or with ``remote`` (an object store) this machine's scratch cache of
    it (datasets and models; the results tables are read and written in the object store itself).
    """

    root: Path
    remote: ObjectStore | None = None

    @property
    def location(self) -> str:
        """Where the state lives, as users name it: the local folder or the object store's URL."""
        return self.remote.url if self.remote is not None else str(self.root)

    @property
    def datasets(self) -> Datasets:
        return Datasets(self.root, self.remote)

    @property
    def models(self) -> Models:
        return Models(self.root, self.remote)

    @property
    def staged(self) -> Staged:
        """Runs' per-shard rows of their large tables, waiting for the run's commit."""
        return Staged(self.root, self.remote)

    @cached_property
    def results(self) -> Results:
        """The results tables, kept open for the life of this store object."""
        return Results(self.root, self.remote)
