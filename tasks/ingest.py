"""Ingest stages: read and validate a long-format file, cut leak-free windows, persist them as a dataset.

A file (or a benchmark) is ingested in three stages that never hold the whole input: :func:`partition_input`
streams it into one temporary file per shard (the series whose id hashes to the shard, whole);
:func:`ingest_shard`, one task per shard, checks, regularises, pads and indexes its series and writes the shard's
final file; :func:`publish_shards` reports every refusal as the whole input's, or combines the shards' indexes,
hashes and statistics into the dataset, published in one rename. :func:`prepare` does the same in memory, in one
piece, for callers that want the windows at once.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from seqcast.data.build import dataset_spec, fail_scaling
from seqcast.data.checks import fail_together, first_timestamp_cell
from seqcast.data.ingest import (
    PARTS,
    SINGLE_SERIES_ID,
    VALUES_SCHEMA,
    IngestError,
    IngestParams,
    PreparedDataset,
    Series,
    benchmark_frame,
    build_dataset,
    fail,
    long_frame,
    scaling_problems,
    with_file_columns,
)
from seqcast.data.regular import Panel, regular_panel, segment_reduce, update_data_hash
from seqcast.data.scaling import Scaler, global_scaler, moments
from seqcast.storage import shards, sources
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


def write_prepared(prepared: PreparedDataset, n_shards: int | None = None) -> DatasetRef:
    """Write a prepared dataset to the store: its series whole in ``n_shards`` shards (default: by its number of
    series), the per-series index and the scaler; windows are cut from them when read."""
    return current_store().datasets.write_sharded(prepared.dataset_id, prepared.spec, prepared.series,
                                                  prepared.values, prepared.shapes, n_shards,
                                                  manifest_extra={"scaling": prepared.scaler.to_dict()})


# ---- streaming ingest ---------------------------------------------------------------------------------------------

STAGED_INDEX, STAGED_PANEL = "index-{:05d}.parquet", "panel-{:05d}.parquet"


def input_batches(params: IngestParams) -> Iterator[pa.Table]:
    """The input as Arrow tables of ``series_id, timestamp, value, row``, a batch of rows at a time (a benchmark,
    built in memory, in one); IngestError naming the problem for a file that cannot be read."""
    if params.benchmark is not None:
        yield pa.Table.from_pandas(benchmark_frame(params.benchmark), preserve_index=False)
        return
    try:
        yield from sources.read_long_batches(params.source, params.id_column, params.time_column,
                                             params.value_column, SINGLE_SERIES_ID)
    except sources.SourceError as exc:
        if exc.listed:
            fail(exc.problems)
        raise IngestError(str(exc)) from None


def count_series(params: IngestParams) -> int | None:
    """How many distinct series ids the input holds, which picks the default number of shards; None when it cannot
    say (the file is then refused, or ingested in one shard). DuckDB counts them streaming over the file."""
    if params.benchmark is not None:
        return int(benchmark_frame(params.benchmark)["series_id"].nunique())
    if params.id_column is None:
        return 1
    path = str(Path(params.source).resolve()).replace("'", "''")
    reader = f"read_csv('{path}', all_varchar = true, header = true)" if sources.is_csv(Path(params.source)) \
        else f"read_parquet('{path}')"
    try:
        with duckdb.connect(config={"memory_limit": "1GB"}) as con:
            return con.execute(f'SELECT count(DISTINCT "{params.id_column}") FROM {reader}').fetchone()[0]
    except duckdb.Error:
        return None


def _noting_first_timestamp(batches: Iterator[pa.Table], found: list) -> Iterator[pa.Table]:
    """``batches`` as they come, noting in ``found`` the first text timestamp cell pandas would infer a format from."""
    for batch in batches:
        column = batch.column("timestamp")
        if not found and (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
            cell = first_timestamp_cell(column.to_pylist())
            if cell is not None:
                found.append(cell)
        yield batch


def partition_file(params: IngestParams, work: str) -> dict:
    """Stream the input into one temporary file per shard under ``work``, each series whole in the shard its id
    hashes to; return the number of shards, the rows of each, and the input's first text timestamp cell."""
    n_shards = params.shards or shards.default_shards(count_series(params) or 1)
    first: list = []
    rows = shards.partition(_noting_first_timestamp(input_batches(params), first), Path(work) / "parts", n_shards)
    return {"work": work, "n_shards": n_shards, "rows": rows.tolist(), "first_timestamp": first[0] if first else None}


@task(name="partition-input", cache_policy=NO_CACHE)
def partition_input(params: IngestParams, work: str) -> dict:
    """Stream the input into one temporary file per shard (:func:`partition_file`)."""
    staged = partition_file(params, work)
    get_run_logger().info("read %d rows from %s into %d shard(s)", sum(staged["rows"]), params.origin,
                          staged["n_shards"])
    return staged


def shard_frame(work: Path, number: int) -> pd.DataFrame:
    """A shard's rows of the input as ``series_id, timestamp, value, row`` (raw cells, as the whole file's read)."""
    return pq.read_table(work / "parts" / shards.part_file(number)).to_pandas()


def ingest_part(staged: dict, number: int, params: IngestParams) -> dict:
    """Check, regularise, pad and index the series of shard ``number``; write its final shard file and, for the
    reduce, its index rows (with each series' digest) and its series as regularised (for the data hash).

    Returns the shard's counts, its windows per part and (global scaling) the moments of its training values; a
    refusal is returned as its problems, stage and sort keys, to be reported with the other shards'.
    """
    work = Path(staged["work"])
    dataset = work / "dataset"
    if not staged["rows"][number]:
        pq.write_table(VALUES_SCHEMA.empty_table(), dataset / shards.VALUES_DIR / shards.shard_file(number))
        return {"number": number, "n_series": 0, "windows": dict.fromkeys(PARTS, 0), "moments": (0, 0.0, 0.0)}
    try:
        panel = regular_panel(shard_frame(work, number), params, params.min_length, staged["first_timestamp"])
        prepared = build_dataset(panel, params, check_scaling=params.scaling != "global")
    except IngestError as exc:
        return {"number": number, "problems": exc.problems, "keys": exc.keys, "stage": exc.stage}
    index, values = prepared.series, prepared.values
    lengths = index.column("length").to_numpy()
    offsets = np.cumsum(lengths) - lengths
    pq.write_table(values, dataset / shards.VALUES_DIR / shards.shard_file(number),
                   row_group_size=shards.ROW_GROUP_ROWS, compression="zstd")
    digests = shards.series_digests(index.column("series_id").to_pylist(), lengths,
                                    index.column("valid_start").to_numpy(), index.column("test_start").to_numpy(),
                                    values)
    value = values.column("value").to_numpy()
    low = segment_reduce(np.fmin, value, offsets, offsets + lengths, np.nan)
    high = segment_reduce(np.fmax, value, offsets, offsets + lengths, np.nan)
    staged_index = index.append_column("shard", pa.array(np.full(len(lengths), number, dtype=np.int64))) \
        .append_column("offset", pa.array(offsets)).append_column("digest", digests) \
        .append_column("low", pa.array(low)).append_column("high", pa.array(high))
    pq.write_table(staged_index, work / STAGED_INDEX.format(number))
    # small row groups: the reduce reads every shard's file at once, a row group of each in memory
    pq.write_table(pa.table({"ns": panel.stamps.astype("datetime64[ns]").view(np.int64), "value": panel.values}),
                   work / STAGED_PANEL.format(number), row_group_size=shards.MERGED_ROWS, compression="none",
                   use_dictionary=False, write_statistics=False)
    training = pc.and_(pc.equal(values.column("part"), "train"), pc.invert(values.column("padded")))
    return {"number": number, "n_series": index.num_rows,
            "windows": {part: shape[0] for part, shape in prepared.shapes.items()},
            "moments": moments(value[training.to_numpy(zero_copy_only=False)]) if params.scaling == "global"
            else (0, 0.0, 0.0)}


@task(name="ingest-shard", task_run_name="ingest-shard-{number}", cache_policy=NO_CACHE, retries=1,
      retry_delay_seconds=1)
def ingest_shard(staged: dict, number: int, params: IngestParams) -> dict:
    """Check, regularise, pad and index one shard's series, and write its shard file (:func:`ingest_part`)."""
    return ingest_part(staged, number, params)


def publish_parts(staged: dict, outcomes: list[dict], params: IngestParams) -> tuple[DatasetRef, dict]:
    """Refuse the input with every shard's problems as the whole input's, or publish the dataset the shards make:
    the index in series id order, the content and data hashes (computed as for the whole panel), the scaler."""
    fail_together([IngestError("", o["problems"], o["keys"], o["stage"]) for o in outcomes if "problems" in o])
    work = Path(staged["work"])
    made = [o["number"] for o in outcomes if o["n_series"]]
    index = pa.concat_tables([pq.read_table(work / STAGED_INDEX.format(number)) for number in made])
    index = index.take(pc.sort_indices(index, [("series_id", "ascending")]))
    ids = index.column("series_id").to_pylist()
    if params.scaling == "global":
        scaler = global_scaler([o["moments"] for o in outcomes])
        fail_scaling(scaling_problems(np.array(ids, dtype=object), index.column("low").to_numpy(),
                                      index.column("high").to_numpy(), scaler))
    elif params.scaling == "series":
        scaler = Scaler("series", dict(zip(ids, zip(index.column("mean").to_pylist(), index.column("std").to_pylist(),
                                                    strict=True), strict=True)))
    else:
        scaler = Scaler()
    freqs = index.column("frequency").to_pylist()
    panel_lengths = index.column("n_steps_total").to_numpy()
    digest = hashlib.sha256()
    files = {number: work / STAGED_PANEL.format(number) for number in made}
    for first, stop, rows in shards.in_id_order(files, index.column("shard").to_numpy(), panel_lengths,
                                                ["ns", "value"]):
        update_data_hash(digest, ids[first:stop], freqs[first:stop], panel_lengths[first:stop],
                         rows["ns"].view("datetime64[ns]"), rows["value"])
    dataset_id, spec = dataset_spec(params, ids, freqs, index.column("padded_steps").to_numpy(),
                                    "sha256:" + digest.hexdigest())
    width = params.n_steps + params.horizon
    manifest = {"spec": spec, "layout": shards.LAYOUT, "n_shards": staged["n_shards"],
                "shapes": {part: [sum(o["windows"][part] for o in outcomes), width] for part in PARTS},
                "content_hash": shards.combined_hash(index.column("digest")), "tables": ["series", "values"],
                "scaling": scaler.to_dict()}
    index = index.drop_columns(["digest", "low", "high"])
    ref = current_store().datasets.publish_staged(dataset_id, work / "dataset", index, manifest)
    return ref, spec


@task(name="publish-shards", cache_policy=NO_CACHE)
def publish_shards(staged: dict, outcomes: list[dict], params: IngestParams) -> tuple[DatasetRef, dict]:
    """Refuse the input, or publish the dataset its shards make (:func:`publish_parts`)."""
    ref, spec = publish_parts(staged, outcomes, params)
    get_run_logger().info("persisted %s at %s: %d series in %d shard(s)", ref.dataset_id, ref.path,
                          spec["n_series"], staged["n_shards"])
    return ref, spec


def shard_series(staged: dict, number: int, index: pa.Table) -> list[Series]:
    """The series of shard ``number`` as regularised (before padding and interpolation), one :class:`Series` each;
    ``index``: the published dataset's."""
    rows = index.filter(pc.equal(index.column("shard"), number))
    panel = pq.read_table(Path(staged["work"]) / STAGED_PANEL.format(number))
    stamps = pd.DatetimeIndex(panel.column("ns").to_numpy().view("datetime64[ns]"))
    values = panel.column("value").to_numpy()
    lengths = rows.column("n_steps_total").to_numpy()
    starts = np.cumsum(lengths) - lengths
    return [Series(sid, freq, stamps[a:a + n], values[a:a + n]) for sid, freq, a, n in
            zip(rows.column("series_id").to_pylist(), rows.column("frequency").to_pylist(), starts.tolist(),
                lengths.tolist(), strict=True)]
