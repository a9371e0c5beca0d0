"""Stage 5: commit the run's rows to the results tables."""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from seqcast.storage.home import current_store


@task(name="record-results", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=[1, 5])
def record_results(run_id: str, rows: dict[str, list[dict]]) -> dict[str, int]:
    """Commit the run's rows to the results tables, one Delta commit per table; return table -> version.

    A retry (of this task, or of the whole flow run) replaces the run's rows in the same commit, so a run never has
    two sets. The datasets the rows name are flushed to disk first (persisting published them unsynced), so a
    committed row never names a dataset that a crash could still cut short.
    """
    logger, store = get_run_logger(), current_store()
    for row in rows.get("datasets", []):
        store.datasets.sync(row["dataset_id"])
    versions = store.results.record(run_id, rows)
    logger.info("results of %s recorded in %s (%d tables)", run_id, store.results.location, len(versions))
    return versions
