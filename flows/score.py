"""The score flow: read a file of actuals -> match the stored forecasts -> record ``forecast_errors``."""

from __future__ import annotations

import uuid

from prefect import flow, get_run_logger
from prefect.runtime import flow_run

from seqcast.data.ingest import MissingPolicy
from seqcast.forecasting.live import ScoreParams
from seqcast.tasks.record import record_results
from seqcast.tasks.score import read_actuals, score_actuals


def run_name() -> str:
    """Name flow runs after the file they score, e.g. ``score · sales-may.csv``."""
    source = str((flow_run.parameters or {}).get("source") or "?")
    return f"score · {source.replace(chr(92), '/').rsplit('/', 1)[-1]}"


@flow(name="score", flow_run_name=run_name, log_prints=True)
def score(
    source: str,
    id_column: str | None = "series_id",
    time_column: str = "timestamp",
    value_column: str = "value",
    freq: str | None = None,
    missing: MissingPolicy = "fail",
    forecast_run_id: str | None = None,
    dataset_id: str | None = None,
) -> dict:
    """Score the stored forecasts whose actual values the file holds; record them in DuckDB ``forecast_errors``
    as this run's record. Scoring again with a longer file scores the new steps and rescores the old ones; the
    ``live_errors`` view keeps each step's latest score."""
    params = ScoreParams(**locals())  # validated before any work
    run_id = str(flow_run.id or uuid.uuid4())
    reader = params.reader()
    series = read_actuals(reader)
    rows = score_actuals(series, reader, run_id, params.forecast_run_id, params.dataset_id)
    record_results(run_id, {"forecast_errors": rows})
    forecast_runs = sorted({r["run_id"] for r in rows})
    get_run_logger().info("%d forecast step(s) of %d forecast run(s) scored", len(rows), len(forecast_runs))
    return {"run_id": run_id, "n_errors": len(rows), "n_series": len({r["series_id"] for r in rows}),
            "forecast_run_ids": forecast_runs, "last_actual": max(r["timestamp"] for r in rows)}
