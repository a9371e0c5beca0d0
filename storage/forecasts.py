"""Forecasts of the predict flow: the ``forecasts`` table first, then the user's own Parquet file, if asked for."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq

from seqcast.storage.atomic import atomic_file
from seqcast.storage.results import Results
from seqcast.storage.schemas import as_table


def write_forecasts(results: Results, run_id: str, rows: list[dict], export: Path | None = None) -> None:
    """Commit the forecast rows of one predict run, then write them to ``export`` (atomically: a reader never
    sees half a file).

    Rows: run_id, model_run_id, dataset_id, series_id, timestamp, step, value, lo_80, hi_80, lo_95, hi_95,
    interval_run_id (the last five may be absent: NULL).
    """
    results.record(run_id, {"forecasts": rows})
    if export is not None:
        with atomic_file(Path(export)) as tmp:
            pq.write_table(as_table("forecasts", rows), tmp)
