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

from collections.abc import Iterator
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
    value = np.ascontiguousarray(values.column("value").to_numpy(), dtype=np.float64)
    stamps = np.ascontiguousarray(values.column("timestamp").cast(pa.int64()).to_numpy())
    padded = np.ascontiguousarray(values.column("padded").to_numpy(zero_copy_only=False), dtype=np.uint8)
    digest, stop = xxhash.xxh3_128(), 0
    for sid, length, valid, test in zip(series_ids, lengths.tolist(), valid_start.tolist(), test_start.tolist(),
                                        strict=True):
        start, stop = stop, stop + length
        one = xxhash.xxh3_128(f"{sid}\0{length}\0{valid}\0{test}\0".encode())
        one.update(value[start:stop].view(np.uint8))
        one.update(stamps[start:stop].view(np.uint8))
        one.update(padded[start:stop])
        digest.update(one.digest())
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
