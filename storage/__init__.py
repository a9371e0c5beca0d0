"""One interface over seqcast's state at one location: datasets, models, records and the results database.

    store = Store(root)
    store.datasets.find(dataset_id)          # Parquet splits + manifest
    store.models.save(run_id, model, manifest)  # .keras + manifest, plots
    store.records.write(run_id, rows)        # the durable results record
    store.results.query(sql)                 # DuckDB, loaded from the records
    store.tables.write(run_id, rows)         # the results as Delta tables (one commit per table per run)

Rows and manifests name files by paths relative to the root, so a record written on one machine means the same
on another. Every SQL statement of seqcast lives in this package.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from seqcast.storage.datasets import Datasets
from seqcast.storage.models import Models
from seqcast.storage.objects import ObjectStore
from seqcast.storage.results import DEFAULT_LOCK_TIMEOUT_S, Records, Results
from seqcast.storage.tables import Tables


@dataclass(frozen=True)
class Store:
    """seqcast's state at SEQCAST_HOME, in four parts.

    ``root`` is a local folder: the home itself, or with ``remote`` (an object store) this machine's scratch cache of
    it. ``db``: the results database file, by default ``results.duckdb`` under ``root``.
    """

    root: Path
    lock_timeout_s: float = DEFAULT_LOCK_TIMEOUT_S
    remote: ObjectStore | None = None
    db: Path | None = None

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
    def records(self) -> Records:
        return Records(self.root, self.remote)

    @property
    def results(self) -> Results:
        return Results(self.root, self.lock_timeout_s, self.remote, self.db)

    @property
    def tables(self) -> Tables:
        """The results as Delta tables under ``tables/`` of the location (the object store's, with one)."""
        return Tables.of_store(self.root, self.remote)
