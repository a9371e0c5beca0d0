"""Stage 5: write the run's durable Parquet record, then load it into DuckDB."""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from seqcast.settings import records_dir, results_db
from storage.results import LoadReport, load_records, write_record


@task(name="record-results", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=[1, 5])
def record_results(run_id: str, rows: dict[str, list[dict]]) -> LoadReport:
    """Commit the run's rows to ``records/<run_id>/`` and upsert them into ``results.duckdb``."""
    logger = get_run_logger()
    folder = write_record(records_dir(), run_id, rows)
    report = load_records(results_db(), {run_id: folder})
    if report.pending:
        logger.warning("results of %s are safe in %s but not yet in DuckDB (database locked); "
                       "run `seqcast results sync` once it is free", run_id, folder)
    else:
        logger.info("results of %s recorded in %s", run_id, results_db())
    return report
