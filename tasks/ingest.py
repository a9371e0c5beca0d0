"""Ingest stages: read and validate a long-format file, cut leak-free windows, persist them as a dataset."""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from seqcast.data.ingest import (
    IngestParams,
    PreparedDataset,
    Series,
    build_dataset,
    read_long,
    validate_series,
)
from seqcast.storage.datasets import DatasetRef
from seqcast.storage.home import current_store


@task(name="read-series", cache_policy=NO_CACHE)
def read_series(params: IngestParams) -> list[Series]:
    """Read the file (or the benchmark) and validate every series; raise IngestError naming the series and row."""
    series = validate_series(read_long(params), params, params.min_length)
    get_run_logger().info("read %d series from %s", len(series), params.origin)
    return series


@task(name="cut-windows", cache_policy=NO_CACHE)
def cut_windows(series: list[Series], params: IngestParams) -> PreparedDataset:
    """Split each series chronologically and window every part; fit the scaler on the training parts."""
    prepared = build_dataset(series, params)
    get_run_logger().info("%s: %s windows (train/valid/test)", prepared.dataset_id,
                          "/".join(str(len(prepared.splits[p])) for p in ("train", "valid", "test")))
    return prepared


@task(name="persist-ingested-dataset", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=[1, 5])
def persist_ingested(prepared: PreparedDataset) -> DatasetRef:
    """Write the windows, the per-series and per-step tables and the scaler atomically under the content-hashed id."""
    ref = write_prepared(prepared)
    get_run_logger().info("persisted %s at %s", ref.dataset_id, ref.path)
    return ref


def write_prepared(prepared: PreparedDataset) -> DatasetRef:
    """Write a prepared dataset to the store: its windows, its ``series`` and ``values`` tables and its scaler."""
    return current_store().datasets.write(prepared.dataset_id, prepared.spec, prepared.splits, prepared.extra,
                                          tables={"series": prepared.series, "values": prepared.values},
                                          manifest_extra={"scaling": prepared.scaler.to_dict()})
