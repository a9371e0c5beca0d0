"""Maintenance of the results tables: compaction and vacuum, and the migration from the record format."""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE

from seqcast.storage.home import current_store

MAINTENANCE_KEY = "seqcast-results-maintenance"


@task(name="compact-results", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=[10, 60])
def compact_results(retention_hours: int) -> list[dict]:
    """Merge each results table's small files (ordered by its run key) and delete the files no version younger than
    ``retention_hours`` reads; return one row per table, also published as a table artifact.

    Safe beside writers: a compaction is a commit like any other, and a reader keeps the version it opened. A retry
    finds less to do.
    """
    results = current_store().results
    done = [{"table": name, **found} for name, found in results.compact(retention_hours).items()]
    create_table_artifact(done, key=MAINTENANCE_KEY,
                          description=f"results tables in {results.location}: files merged and vacuumed")
    get_run_logger().info("compacted %d table(s) in %s: %d files merged into %d, %d vacuumed", len(done),
                          results.location, sum(r["files_removed"] for r in done),
                          sum(r["files_added"] for r in done), sum(r["files_vacuumed"] for r in done))
    return done
