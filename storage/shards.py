"""Sharded datasets: every series stored once, whole, in one of K shards picked by a stable hash of its id.

Layout under ``datasets/<dataset_id>/``:

- ``series.parquet``: the index, one row per series in series id order: the ingest's per-series columns plus
  ``shard``, ``offset`` (its first row in the shard's file) and ``length`` (its steps), and where its validation
  and test parts start (``valid_start``, ``test_start``, steps from its first);
- ``values.parquet/shard-00000.parquet`` ...: one file per shard, every step of its series (``series_id, step,
  timestamp, value, part, padded``) sorted by (series id, step). The folder reads as one table in pyarrow
  (``pq.read_table``) and DuckDB (``read_parquet('values.parquet/*.parquet')``).

Windows are not stored: readers cut them from the values (``seqcast.data.windows``). The content hash combines one
digest per series in series id order, so it does not depend on the number of shards.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import xxhash

VALUES_DIR = "values.parquet"
INDEX = "series.parquet"
LAYOUT = "shards"
SERIES_PER_SHARD = 20_000  # 2-4 shards per worker at 100k series, few tiny task runs at 1M
ROW_GROUP_ROWS = 1 << 20  # a row group is read whole: about 1M steps bound a reader's memory per group


@dataclass(frozen=True)
class Shard:
    """One shard as its readers get it: its index rows and its values, both in series id order.

    ``values`` rows of series ``i`` of ``index`` are ``offset[i]`` to ``offset[i] + length[i] - 1``.
    """

    number: int
    index: pa.Table
    values: pa.Table

    def long_frame(self, observed_only: bool = True):
        """The shard in the long format of Nixtla's libraries: pandas ``unique_id, ds, y`` sorted by id and time.

        ``observed_only`` leaves out the steps ingest padded on the left.
        """
        values = self.values
        if observed_only:
            values = values.filter(pc.invert(values.column("padded")))
        return pa.table({"unique_id": values.column("series_id"), "ds": values.column("timestamp"),
                         "y": values.column("value")}).to_pandas()


def default_shards(n_series: int) -> int:
    """How many shards ``n_series`` series get: about ``SERIES_PER_SHARD`` each, at least one."""
    return max(1, -(-n_series // SERIES_PER_SHARD))


def shard_of(series_ids, n_shards: int) -> np.ndarray:
    """Each series id's shard: a stable hash of the id (XXH3-64 of its UTF-8 bytes) modulo ``n_shards``."""
    return np.fromiter((xxhash.xxh3_64_intdigest(str(sid).encode()) % n_shards for sid in series_ids),
                       dtype=np.int64, count=len(series_ids))


def shard_file(number: int) -> str:
    return f"shard-{number:05d}.parquet"


def content_hash(series_ids, lengths: np.ndarray, valid_start: np.ndarray, test_start: np.ndarray,
                 values: pa.Table) -> str:
    """XXH3-128 over one digest per series, series in the given (id) order; ``values`` holds them in that order.

    Each series' digest covers its id, part boundaries, values (float64), timestamps and padding, so the hash
    names the content, whatever number of shards holds it.
    """
    return combined_hash(series_digests(series_ids, lengths, valid_start, test_start, values))


def series_digests(series_ids, lengths: np.ndarray, valid_start: np.ndarray, test_start: np.ndarray,
                   values: pa.Table) -> pa.Array:
    """Each series' XXH3-128 digest (16 bytes) for :func:`content_hash`; ``values`` holds the series in order."""
    value = np.ascontiguousarray(values.column("value").to_numpy(), dtype=np.float64)
    stamps = np.ascontiguousarray(values.column("timestamp").cast(pa.int64()).to_numpy())
    padded = np.ascontiguousarray(values.column("padded").to_numpy(zero_copy_only=False), dtype=np.uint8)
    found, stop = [], 0
    for sid, length, valid, test in zip(series_ids, np.asarray(lengths).tolist(), np.asarray(valid_start).tolist(),
                                        np.asarray(test_start).tolist(), strict=True):
        start, stop = stop, stop + length
        one = xxhash.xxh3_128(f"{sid}\0{length}\0{valid}\0{test}\0".encode())
        one.update(value[start:stop].view(np.uint8))
        one.update(stamps[start:stop].view(np.uint8))
        one.update(padded[start:stop])
        found.append(one.digest())
    return pa.array(found, pa.binary(16))


def combined_hash(digests: pa.Array | pa.ChunkedArray) -> str:
    """The content hash of series whose :func:`series_digests` are ``digests``, in series id order."""
    digest = xxhash.xxh3_128()
    for chunk in (digests.chunks if isinstance(digests, pa.ChunkedArray) else [digests]):
        if len(chunk):  # a fixed-size binary array's data buffer holds its values back to back
            digest.update(chunk.buffers()[1][chunk.offset * 16:(chunk.offset + len(chunk)) * 16])
    return "xxh3_128:" + digest.hexdigest()


def _ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """The row numbers ``starts[i] .. starts[i] + lengths[i] - 1``, one range after another."""
    total = int(lengths.sum())
    before = np.cumsum(lengths) - lengths
    return np.repeat(starts - before, lengths) + np.arange(total)


def write_shards(folder: Path, index: pa.Table, values: pa.Table, n_shards: int) -> pa.Table:
    """Write ``values`` (series after series, in ``index`` order, which is series id order) as ``n_shards`` files
    under ``folder / VALUES_DIR``; return the index with each series' ``shard`` and ``offset``."""
    if n_shards < 1:
        raise ValueError(f"a dataset has at least 1 shard; got {n_shards}")
    ids = index.column("series_id").to_pylist()
    lengths = index.column("length").to_numpy().astype(np.int64)
    starts = np.cumsum(lengths) - lengths
    shards = shard_of(ids, n_shards)
    offsets = np.zeros(len(ids), dtype=np.int64)
    (folder / VALUES_DIR).mkdir()

    def write(number: int) -> None:
        rows = np.flatnonzero(shards == number)
        offsets[rows] = np.cumsum(lengths[rows]) - lengths[rows]
        part = values.take(_ranges(starts[rows], lengths[rows])) if len(rows) else values.schema.empty_table()
        pq.write_table(part, folder / VALUES_DIR / shard_file(number), row_group_size=ROW_GROUP_ROWS,
                       compression="zstd")

    with ThreadPoolExecutor(2) as pool:  # pyarrow's take and write release the GIL; two shards in memory at most
        list(pool.map(write, range(n_shards)))
    return index.append_column("shard", pa.array(shards)).append_column("offset", pa.array(offsets))


def read_index(path: Path, columns: list[str] | None = None) -> pa.Table:
    return pq.read_table(path / INDEX, columns=columns)


def read_shard(path: Path, number: int, columns: list[str] | None = None) -> pa.Table:
    return pq.read_table(path / VALUES_DIR / shard_file(number), columns=columns)


def read_values(path: Path, n_shards: int, columns: list[str] | None = None, index: pa.Table | None = None
                ) -> pa.Table:
    """Every shard's values, series after series in series id order (the index's)."""
    index = read_index(path) if index is None else index
    tables = [read_shard(path, number, columns) for number in range(n_shards)]
    if n_shards == 1:
        return tables[0]
    sizes = np.array([t.num_rows for t in tables], dtype=np.int64)
    base = np.cumsum(sizes) - sizes
    starts = base[index.column("shard").to_numpy()] + index.column("offset").to_numpy()
    return pa.concat_tables(tables).take(_ranges(starts, index.column("length").to_numpy().astype(np.int64)))


def one_shard(path: Path, number: int, n_shards: int, columns: list[str] | None = None) -> Shard:
    """Shard ``number`` alone: its index rows and its values."""
    if not 0 <= number < n_shards:
        raise ValueError(f"no shard {number}: the dataset at {path} has shards 0 to {n_shards - 1}")
    index = read_index(path)
    return Shard(number, index.filter(pc.equal(index.column("shard"), number)), read_shard(path, number, columns))


def iter_shards(path: Path, n_shards: int, index: pa.Table | None = None, columns: list[str] | None = None
                ) -> Iterator[Shard]:
    """Every shard in turn, one in memory at a time."""
    index = read_index(path) if index is None else index
    shard_column = index.column("shard")
    for number in range(n_shards):
        rows = index.filter(pc.equal(shard_column, number))
        yield Shard(number, rows, read_shard(path, number, columns))


# ---- streaming ingest: the input's rows partitioned by shard, and per-shard files read back in series id order ----

def part_file(number: int) -> str:
    return f"part-{number:05d}.parquet"


def batch_shards(series_ids: pa.Array | pa.ChunkedArray, n_shards: int) -> np.ndarray:
    """Each row's shard (:func:`shard_of` of its id as text), each distinct id hashed once; a missing id: 0."""
    if isinstance(series_ids, pa.ChunkedArray):
        series_ids = series_ids.combine_chunks()
    if pa.types.is_null(series_ids.type) or not len(series_ids):
        return np.zeros(len(series_ids), dtype=np.int64)
    encoded = series_ids if pa.types.is_dictionary(series_ids.type) else series_ids.dictionary_encode()
    texts = encoded.dictionary.cast(pa.string()).to_pylist()
    codes = np.r_[shard_of(texts, n_shards), 0]  # a missing id (index -1) takes the last: shard 0
    return codes[pc.fill_null(encoded.indices, -1).to_numpy(zero_copy_only=False)]


def partition(batches: Iterable[pa.Table], folder: Path, n_shards: int) -> np.ndarray:
    """Write the rows of ``batches`` (a ``series_id`` column and any others) to ``folder / part_file(k)`` by the
    shard of their id, each shard's rows in the order read; return the rows per shard. A shard without rows gets
    no file.

    One batch is in memory at a time, and each shard's file holds one row group per batch it got rows of.
    """
    folder.mkdir(parents=True, exist_ok=True)
    counts = np.zeros(n_shards, dtype=np.int64)
    writers: dict[int, pq.ParquetWriter] = {}
    try:
        for batch in batches:
            shard = batch_shards(batch.column("series_id"), n_shards)
            order = np.argsort(shard, kind="stable")
            bounds = np.searchsorted(shard[order], np.arange(n_shards + 1))
            grouped = batch.take(order)
            for number in np.flatnonzero(np.diff(bounds)).tolist():
                if number not in writers:
                    # read back once, soon: fast to write beats small (ids repeat, the rest is numbers)
                    writers[number] = pq.ParquetWriter(folder / part_file(number), grouped.schema,
                                                       compression="none", use_dictionary=["series_id"],
                                                       write_statistics=False)
                writers[number].write_table(grouped.slice(bounds[number], bounds[number + 1] - bounds[number]))
            counts += np.diff(bounds)
    finally:
        for writer in writers.values():
            writer.close()
    return counts


class _InOrder:
    """A Parquet file's columns read front to back as numpy arrays, ``n`` rows at a time, one row group at a time
    (``iter_batches`` would read the whole file ahead)."""

    def __init__(self, path: Path, columns: list[str]):
        self.file = pq.ParquetFile(path)
        self.columns = columns
        self.group = 0
        self.held: dict[str, np.ndarray] | None = None

    def take(self, n: int) -> dict[str, np.ndarray]:
        while self.held is None or len(self.held[self.columns[0]]) < n:
            table = self.file.read_row_group(self.group, columns=self.columns)
            self.group += 1
            group = {c: table.column(c).to_numpy() for c in self.columns}
            self.held = group if self.held is None else {c: np.concatenate([self.held[c], group[c]])
                                                         for c in self.columns}
        taken = {c: a[:n] for c, a in self.held.items()}
        self.held = {c: a[n:] for c, a in self.held.items()}
        return taken


MERGED_SERIES = 1 << 14  # series merged into id order at a time: 16k series of M3 monthly are 2M rows
MERGED_ROWS = 1 << 16  # the row groups of files to be merged: what is in memory of each at a time


def in_id_order(files: dict[int, Path], shard: np.ndarray, lengths: np.ndarray, columns: list[str],
                series_per_piece: int | None = None) -> Iterator[tuple[int, int, dict[str, np.ndarray]]]:
    """Merge per-shard files into series id order: ``(first, stop, columns)`` for consecutive pieces of the series,
    each column (numeric) as a numpy array of the piece's rows.

    Series ``i`` (in id order) lives in ``files[shard[i]]`` with ``lengths[i]`` rows, and each file holds its
    series in id order, so the series of a piece are a run of consecutive rows of each file: every file is read
    once, front to back, and a piece of series (plus a row group of each file) is in memory at a time.
    """
    readers = {number: _InOrder(path, columns) for number, path in files.items()}
    lengths = np.asarray(lengths, dtype=np.int64)
    series_per_piece = series_per_piece or MERGED_SERIES
    for first in range(0, len(shard), series_per_piece):
        stop = min(len(shard), first + series_per_piece)
        shards, sizes = shard[first:stop], lengths[first:stop]
        starts, blocks, base = np.empty(stop - first, dtype=np.int64), [], 0
        for number in np.unique(shards).tolist():
            rows = np.flatnonzero(shards == number)
            block = readers[number].take(int(sizes[rows].sum()))
            starts[rows] = base + np.cumsum(sizes[rows]) - sizes[rows]
            base += len(block[columns[0]])
            blocks.append(block)
        order = _ranges(starts, sizes)
        yield first, stop, {c: np.concatenate([b[c] for b in blocks])[order] for c in columns}
