"""One interface over seqcast's state at one location: datasets, models, records and the results database.

    store = Store(root)
    store.datasets.find(dataset_id)          # Parquet splits + manifest
    store.models.save(run_id, model, manifest)  # .keras + manifest, plots
    store.records.write(run_id, rows)        # the durable results record
    store.results.query(sql)                 # DuckDB, loaded from the records

Rows and manifests name files by paths relative to the root, so a record written on one machine means the same
on another. Every SQL statement of seqcast lives in this package.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from storage.datasets import Datasets
from storage.models import Models
from storage.results import DEFAULT_LOCK_TIMEOUT_S, Records, Results


@dataclass(frozen=True)
class Store:
    """seqcast's state under ``root`` (SEQCAST_HOME), in four parts."""

    root: Path
    lock_timeout_s: float = DEFAULT_LOCK_TIMEOUT_S

    @property
    def datasets(self) -> Datasets:
        return Datasets(self.root)

    @property
    def models(self) -> Models:
        return Models(self.root)

    @property
    def records(self) -> Records:
        return Records(self.root)

    @property
    def results(self) -> Results:
        return Results(self.root, self.lock_timeout_s)
