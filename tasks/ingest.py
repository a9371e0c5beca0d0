"""Ingest stages: read and validate a long-format file, cut leak-free windows, persist them as a dataset."""

from __future__ import annotations

import pyarrow.parquet as pq
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from seqcast.ingest import (
    IngestParams,
    PreparedDataset,
    Series,
    build_dataset,
    read_long,
    validate_series,
)
from seqcast.settings import datasets_dir
from storage.atomic import atomic_file
from storage.datasets import DatasetRef, write_dataset


@task(name="read-series", cache_policy=NO_CACHE)
def read_series(params: IngestParams) -> list[Series]:
    """Read the file and validate every series; raise IngestError naming the series and row."""
    series = validate_series(read_long(params), params, params.window_length)
    get_run_logger().info("read %d series from %s", len(series), params.source)
    return series


@task(name="cut-windows", cache_policy=NO_CACHE)
def cut_windows(series: list[Series], params: IngestParams) -> PreparedDataset:
    """Split each series chronologically and window every part; fit the scaler on the training parts."""
    prepared = build_dataset(series, params)
    get_run_logger().info("%s: %s windows (train/valid/test)", prepared.dataset_id,
                          "/".join(str(len(prepared.splits[p])) for p in ("train", "valid", "test")))
    return prepared


@task(name="persist-dataset", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=[1, 5])
def persist_ingested(prepared: PreparedDataset) -> DatasetRef:
    """Write the windows, the per-series table and the scaler atomically under the content-hashed id."""
    ref = write_dataset(datasets_dir(), prepared.dataset_id, prepared.spec, prepared.splits, prepared.extra,
                        tables={"series": prepared.series}, manifest_extra={"scaling": prepared.scaler.to_dict()})
    get_run_logger().info("persisted %s at %s", ref.dataset_id, ref.path)
    refresh_latest_windows(ref, prepared)
    return ref


def refresh_latest_windows(ref: DatasetRef, prepared: PreparedDataset) -> None:
    """Rewrite the series table of a dataset ingested before 2026-11-29 whose latest windows differ from today's.

    The same file and parameters give the same dataset id, so ingesting again reuses the existing folder; only the
    series table's ``latest`` windows changed meaning (they now end at the series' last step, or are null where
    values are missing there), and predict refuses the old ones.
    """
    path = ref.path / "series.parquet"
    stored = pq.read_table(path, columns=["latest_end", "latest"])
    if stored.equals(prepared.series.select(["latest_end", "latest"])):
        return
    with atomic_file(path) as tmp:
        pq.write_table(prepared.series, tmp, compression="zstd")
    get_run_logger().info("%s: rewrote the latest windows of its series table (ingested before 2026-11-29)",
                          ref.dataset_id)
