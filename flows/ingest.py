"""The ingest flow: read -> validate -> window -> persist -> record, for a user's own long-format file."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from prefect import flow
from prefect.logging.handlers import PrefectConsoleHandler
from prefect.runtime import flow_run

from seqcast.ingest import IngestError, IngestParams, MissingPolicy
from seqcast.scaling import ScalingMode
from storage.datasets import dataset_row
from tasks.ingest import cut_windows, persist_ingested, read_series
from tasks.record import record_results


def run_name() -> str:
    """Name flow runs after the file they ingest, e.g. ``ingest · sales.csv``."""
    source = str((flow_run.parameters or {}).get("source", "?"))
    return f"ingest · {source.replace(chr(92), '/').rsplit('/', 1)[-1]}"


class _RefusalWithoutTraceback(logging.Filter):
    """Keep the line but drop the traceback of a console record about an IngestError: bad input, not a bug."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], IngestError):
            # the API handler (on the run loggers) has already sent the full record; only the console's copy changes
            record.exc_info, record.exc_text = None, None
        return True


@contextmanager
def refusals_without_traceback() -> Iterator[None]:
    """While inside, Prefect's console shows a refused file's IngestError as one line, with no traceback."""
    handlers = [h for h in logging.getLogger().handlers if isinstance(h, PrefectConsoleHandler)]
    quiet = _RefusalWithoutTraceback()
    for handler in handlers:
        handler.addFilter(quiet)
    try:
        yield
    finally:
        for handler in handlers:
            handler.removeFilter(quiet)


@flow(name="ingest", flow_run_name=run_name, log_prints=True)
def ingest(
    source: str,
    name: str | None = None,
    id_column: str | None = "series_id",
    time_column: str = "timestamp",
    value_column: str = "value",
    freq: str | None = None,
    missing: MissingPolicy = "fail",
    n_steps: int = 28,
    horizon: int = 7,
    valid_fraction: float = 0.15,
    test_fraction: float = 0.15,
    scaling: ScalingMode = "series",
) -> dict:
    """Turn a long-format CSV/Parquet file into a windowed dataset; record its spec in DuckDB ``datasets``."""
    params = IngestParams(**locals())  # validated before any work
    started_at = datetime.now(UTC)
    series = read_series(params)
    prepared = cut_windows(series, params)
    dataset = persist_ingested(prepared)
    # the dataset's row travels through the results record like a training run's, so a rebuild keeps it
    run_id = str(flow_run.id or uuid.uuid4())
    report = record_results(run_id, {"datasets": [dataset_row(dataset, started_at)]})
    shapes = dataset.manifest["shapes"]
    return {"dataset_id": dataset.dataset_id, "path": str(dataset.path), "n_series": prepared.spec["n_series"],
            "frequency": prepared.spec["frequency"], "n_steps": params.n_steps, "horizon": params.horizon,
            "n_train": shapes["train"][0], "n_valid": shapes["valid"][0], "n_test": shapes["test"][0],
            "in_duckdb": run_id in report.loaded}
