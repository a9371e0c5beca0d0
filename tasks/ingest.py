"""Ingest stages: read and validate a long-format file, cut leak-free windows, persist them as a dataset."""

from __future__ import annotations

import duckdb
import pandas as pd
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from seqcast.data.ingest import (
    SINGLE_SERIES_ID,
    IngestError,
    IngestParams,
    PreparedDataset,
    Series,
    build_dataset,
    fail,
    long_frame,
    with_file_columns,
)
from seqcast.data.regular import Panel, regular_panel
from seqcast.storage import sources
from seqcast.storage.datasets import DatasetRef
from seqcast.storage.home import current_store


def read_file(params: IngestParams) -> pd.DataFrame:
    """The long-format file of ``params`` as ``series_id, timestamp, value, row``; IngestError naming the problem."""
    try:
        return sources.read_long(params.source, params.id_column, params.time_column, params.value_column,
                                 SINGLE_SERIES_ID)
    except sources.SourceError as exc:
        if exc.listed:
            fail(exc.problems)
        raise IngestError(str(exc)) from None


def recognised_columns(params: IngestParams) -> IngestParams:
    """``params`` reading a file in the long format of Nixtla's libraries (``unique_id, ds, y``) when they name the
    default columns and the file has those instead (:func:`seqcast.data.ingest.with_file_columns`), so that the
    dataset's spec records the columns really read."""
    if params.source is None:
        return params
    try:
        return with_file_columns(params, sources.file_columns(params.source))
    except sources.SourceError:
        return params  # a file that cannot be read is refused with its own message when it is read


def read_panel(params: IngestParams, min_length: int) -> Panel:
    """Read the file (or the benchmark) and validate every series (IngestError naming the series and row)."""
    params = recognised_columns(params)
    return regular_panel(long_frame(params, read_file), params, min_length)


def read_validated(params: IngestParams, min_length: int) -> list[Series]:
    """Read the file (or the benchmark) and validate every series, one :class:`Series` each."""
    return read_panel(params, min_length).series()


def forecasts_stored() -> bool:
    """Whether the results store may hold forecasts that a file's actuals could score (True when it cannot say)."""
    try:
        return current_store().results.has_forecasts()
    except (OSError, duckdb.Error):
        return True  # score_actuals decides, and logs why it scored nothing


def prepare(params: IngestParams) -> PreparedDataset:
    """Read, validate and index a file (or a benchmark); raise IngestError before anything is written."""
    return build_dataset(read_panel(params, params.min_length), params)


@task(name="read-series", cache_policy=NO_CACHE)
def read_series(params: IngestParams) -> Panel:
    """Read the file (or the benchmark) and validate every series; raise IngestError naming the series and row."""
    panel = read_panel(params, params.min_length)
    get_run_logger().info("read %d series from %s", len(panel.ids), params.origin)
    return panel


@task(name="cut-windows", cache_policy=NO_CACHE)
def cut_windows(series: Panel, params: IngestParams) -> PreparedDataset:
    """Split each series chronologically, pad the short ones and fit the scaler on the training parts."""
    prepared = build_dataset(series, params)
    get_run_logger().info("%s: %s windows (train/valid/test)", prepared.dataset_id,
                          "/".join(str(prepared.shapes[p][0]) for p in ("train", "valid", "test")))
    return prepared


@task(name="persist-ingested-dataset", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=[1, 5])
def persist_ingested(prepared: PreparedDataset, n_shards: int | None = None) -> DatasetRef:
    """Write the series in shards, the per-series index and the scaler atomically under the content-hashed id."""
    ref = write_prepared(prepared, n_shards)
    get_run_logger().info("persisted %s at %s", ref.dataset_id, ref.path)
    return ref


def write_prepared(prepared: PreparedDataset, n_shards: int | None = None) -> DatasetRef:
    """Write a prepared dataset to the store: its series whole in ``n_shards`` shards (default: by its number of
    series), the per-series index and the scaler; windows are cut from them when read."""
    return current_store().datasets.write_sharded(prepared.dataset_id, prepared.spec, prepared.series,
                                                  prepared.values, prepared.shapes, n_shards,
                                                  manifest_extra={"scaling": prepared.scaler.to_dict()})
