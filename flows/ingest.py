"""The ingest flow: read -> validate -> window -> persist -> record, for a long-format file or a benchmark."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from prefect import flow
from prefect.runtime import flow_run

from seqcast.data.ingest import Benchmark, IngestParams, MissingPolicy, ShortSeries, Split
from seqcast.data.scaling import ScalingMode
from seqcast.storage.home import current_store
from seqcast.tasks.ingest import cut_windows, forecasts_stored, persist_ingested, read_series, recognised_columns
from seqcast.tasks.record import record_results
from seqcast.tasks.score import score_actuals


def run_name() -> str:
    """Name flow runs after the file or benchmark they ingest, e.g. ``ingest · sales.csv``, ``ingest · m3-other``."""
    parameters = flow_run.parameters or {}
    source = str(parameters.get("source") or parameters.get("benchmark") or "?")
    return f"ingest · {source.replace(chr(92), '/').rsplit('/', 1)[-1]}"


@flow(name="ingest", flow_run_name=run_name, log_prints=True)
def ingest(
    source: str | None = None,
    benchmark: Benchmark | None = None,
    name: str | None = None,
    id_column: str | None = "series_id",
    time_column: str = "timestamp",
    value_column: str = "value",
    freq: str | None = None,
    missing: MissingPolicy = "fail",
    n_steps: int | None = None,
    horizon: int | None = None,
    split: Split | None = None,
    valid_fraction: float | None = None,
    test_fraction: float | None = None,
    short_series: ShortSeries | None = None,
    scaling: ScalingMode = "series",
    shards: int | None = None,
) -> dict:
    """Turn a long-format CSV/Parquet file, or a benchmark's series, into a windowed dataset; record its spec in
    DuckDB ``datasets``, and score the stored forecasts whose actuals the file holds (``forecast_errors``). Options
    left None take the input's defaults (see ``IngestParams``)."""
    params = IngestParams(**locals())  # validated before any work
    params = recognised_columns(params)
    started_at = datetime.now(UTC)
    panel = read_series(params)
    prepared = cut_windows(panel, params)
    dataset = persist_ingested(prepared, params.shards)
    run_id = str(flow_run.id or uuid.uuid4())
    # a newer file of forecast series holds their actuals: this run scores those forecasts as `seqcast score` does
    # (with none stored, there is nothing to match, and the series need not be taken one by one)
    errors = score_actuals(panel.series(), params, run_id, actuals_dataset_id=dataset.dataset_id, strict=False) \
        if params.source is not None and forecasts_stored() else []
    # the dataset's row travels through the results record like a training run's, so a rebuild keeps it
    record_results(run_id, {"datasets": [current_store().datasets.row(dataset, started_at)],
                                     "forecast_errors": errors})
    shapes = dataset.manifest["shapes"]
    return {"dataset_id": dataset.dataset_id, "path": str(dataset.path), "n_series": prepared.spec["n_series"],
            "frequency": prepared.spec["frequency"], "n_steps": params.n_steps, "horizon": params.horizon,
            "n_train": shapes["train"][0], "n_valid": shapes["valid"][0], "n_test": shapes["test"][0],
            "forecast_errors": len(errors)}
