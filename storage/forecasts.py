"""Forecasts of the predict flow: a durable Parquet record first, then the DuckDB ``forecasts`` table.

The rows go through the results record (``records/<run_id>/forecasts-<write_id>.parquet`` + ``_COMMITTED``) and its
lock-retrying loader, so a locked database never loses a forecast: ``seqcast results sync`` loads it later.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import duckdb

from seqcast.storage.atomic import atomic_file
from seqcast.storage.results import LoadReport, Results


def write_forecasts(results: Results, run_id: str, rows: list[dict],
                    export: Path | None = None) -> tuple[Path, LoadReport]:
    """Commit the forecast rows of one predict run, copy them to ``export`` (atomically), load them into DuckDB.

    Rows: run_id, model_run_id, dataset_id, series_id, timestamp, step, value, lo_80, hi_80, lo_95, hi_95,
    interval_run_id (the last five may be absent: NULL). Returns the committed
    Parquet file and the load report.
    """
    results.records.write(run_id, {"forecasts": rows})
    parquet = results.records.files(run_id)["forecasts"]
    if export is not None:
        with atomic_file(Path(export)) as tmp:
            shutil.copyfile(parquet, tmp)
    try:
        return parquet, results.load([run_id])
    except duckdb.Error as exc:  # e.g. a damaged file: the forecasts are committed; `results rebuild` restores it
        return parquet, LoadReport(failed={run_id: str(exc)})
