"""Stage 5: write the run's durable Parquet record, then load it (and any record still waiting) into DuckDB."""

from __future__ import annotations

import duckdb
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from seqcast.storage.home import current_store
from seqcast.storage.results import LoadReport


@task(name="record-results", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=[1, 5])
def record_results(run_id: str, rows: dict[str, list[dict]]) -> LoadReport:
    """Commit the run's rows to ``records/<run_id>/``, then sync every committed record into ``results.duckdb``.

    Syncing rather than loading only this run means results left waiting by an earlier run that found the
    database locked arrive with the next run, without anyone running ``seqcast results sync``.
    A database that stays locked does not fail the run: its results are safe in the record.
    The datasets the rows name are flushed to disk first (persisting published them unsynced), so a committed
    record never names a dataset that a crash could still cut short.
    """
    logger, store = get_run_logger(), current_store()
    for row in rows.get("datasets", []):
        store.datasets.sync(row["dataset_id"])
    folder = store.records.write(run_id, rows)
    results = store.results
    try:
        report = results.sync()
    except duckdb.Error as exc:  # e.g. a damaged file: the results are committed, so the run is not failed
        logger.error("results of %s are safe in %s, but %s could not be loaded (%s); run `seqcast results "
                     "rebuild` to recreate it from the records", run_id, folder, results.path, exc)
        return LoadReport(failed={run_id: str(exc)})
    if report.lock_retries:
        logger.info("results database was busy: %d lock retries, %.1f s waited", report.lock_retries,
                    report.lock_wait_s)
    if run_id in report.pending or run_id in report.failed:
        logger.warning("results of %s are safe in %s but not yet in DuckDB (%s); they load with the next run "
                       "or `seqcast results sync`", run_id, folder,
                       report.failed.get(run_id, f"database locked for {report.lock_wait_s:.0f} s, "
                                                 f"{report.lock_retries} lock retries"))
    else:
        others = [r for r in report.loaded if r != run_id]
        logger.info("results of %s recorded in %s%s", run_id, results.path,
                    f"; also loaded {len(others)} waiting run(s)" if others else "")
    return report
