"""The ingest flow: partition -> check and index each shard -> publish -> record, for a long-format file or a
benchmark; the input is streamed, and only a shard or two is in memory at a time."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from prefect import flow
from prefect.runtime import flow_run

from seqcast.data.ingest import Benchmark, IngestParams, MissingPolicy, ShortSeries, Split
from seqcast.data.scaling import ScalingMode
from seqcast.flows.execution import available_cores
from seqcast.storage.home import current_store
from seqcast.tasks.ingest import (
    forecasts_stored,
    ingest_shard,
    partition_input,
    publish_shards,
    recognised_columns,
    shard_series,
)
from seqcast.tasks.progress import Progress
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
    run_id = str(flow_run.id or uuid.uuid4())
    datasets = current_store().datasets
    with datasets.staging() as work:  # removed however the ingest ends
        staged = partition_input(params, str(work))
        outcomes = ingest_each_shard(staged, params)
        dataset, spec = publish_shards(staged, outcomes, params)
        # a newer file of forecast series holds their actuals: this run scores those forecasts as `seqcast score`
        # does, shard by shard (with none stored, there is nothing to match)
        errors = []
        if params.source is not None and forecasts_stored():
            index = datasets.read_table(dataset, "series").select(["series_id", "frequency", "n_steps_total", "shard"])
            for number in range(staged["n_shards"]):
                errors += score_actuals(shard_series(staged, number, index), params, run_id,
                                        actuals_dataset_id=dataset.dataset_id, strict=False)
    # the dataset's row travels through the results record like a training run's, so a rebuild keeps it
    record_results(run_id, {"datasets": [datasets.row(dataset, started_at)], "forecast_errors": errors})
    shapes = dataset.manifest["shapes"]
    return {"dataset_id": dataset.dataset_id, "path": str(dataset.path), "n_series": spec["n_series"],
            "frequency": spec["frequency"], "n_steps": params.n_steps, "horizon": params.horizon,
            "n_train": shapes["train"][0], "n_valid": shapes["valid"][0], "n_test": shapes["test"][0],
            "forecast_errors": len(errors)}


def ingest_each_shard(staged: dict, params: IngestParams) -> list[dict]:
    """Run :func:`ingest_shard` for every shard on the flow's task runner, as many at once as there are cores (so
    that a shard or two per core is in memory), reporting shards done of total."""
    n_shards = staged["n_shards"]
    progress = Progress("ingest", n_shards, unit="shards")
    running, outcomes = [], []
    for number in range(n_shards):
        if len(running) >= available_cores():
            outcomes.append(running.pop(0).result())
            progress(len(outcomes))
        running.append(ingest_shard.submit(staged, number, params))
    for future in running:
        outcomes.append(future.result())
        progress(len(outcomes))
    return outcomes
