"""The results maintenance flow: compact and vacuum the results tables (``seqcast results compact``, and the
``results-maintenance/weekly`` deployment)."""

from __future__ import annotations

from prefect import flow
from pydantic import NonNegativeInt

from seqcast.storage.tables import DEFAULT_RETENTION_HOURS
from seqcast.tasks.maintenance import compact_results


@flow(name="results-maintenance", flow_run_name="compact · keep {retention_hours} h", log_prints=True)
def results_maintenance(retention_hours: NonNegativeInt = DEFAULT_RETENTION_HOURS) -> list[dict]:
    """Merge every results table's small files and delete those that no table version younger than
    ``retention_hours`` reads (time travel reaches back that far). Returns one row per table."""
    return compact_results(retention_hours)
