"""Datasets as Parquet: a synthetic dataset's windows, one file per split; an ingested dataset's series, in shards.

An ingested dataset stores every series once, whole, in shards picked by a hash of its id, beside a per-series
index (``storage/shards.py`` describes the layout); its windows are cut from the series when read, so
:func:`read_split`, :func:`read_split_column` and :class:`Datasets` read both layouts alike. The rest of this
docstring describes the windows layout of synthetic datasets, and of datasets ingested before shards.

Layout under ``datasets/<dataset_id>/``: ``train.parquet``, ``valid.parquet``, ``test.parquet`` and ``dataset.json``
(spec, shapes, content hash). Each split file has one non-null float32 column ``value``: the split's windows one after
another, ``width`` values each, uncompressed, in one row group of 1 MiB pages, so that writing and reading it back cost
little more than copying the array (``bench/speed.py`` measures this against ``np.save`` + ``np.load``). Window ``i``
is rows ``i * width`` to ``(i + 1) * width - 1``; in DuckDB:
``SELECT file_row_number // width AS window, value FROM read_parquet(path, file_row_number = true)``.
Datasets ingested before shards add ``<split>.windows.parquet`` with one row per window (``series_id`` and window
timestamps), a ``series.parquet`` table (one row per series, with its period), a ``values.parquet`` table (every
step of every series: ``series_id``, ``step``, ``timestamp``, ``value``, ``part``, ``padded``) and the scaler in
``dataset.json``, whose ``tables`` lists the tables beside the splits.

The folder is published in one atomic rename, so other processes see all of it or nothing. It is published without
fsync, carrying an empty ``.unsynced`` file: fsyncing first would make persisting cost far more than the training
that follows needs (``bench/speed.py``), and :func:`sync_dataset` flushes it before any results record names the
dataset, usually after the kernel has written the files back during training. A folder that still carries
``.unsynced`` when it is looked up (its run failed, is still training, or the machine went down before the sync) is
checked against its manifest's content hash first: the check reads it all, as training does, and a folder cut short
by a crash is reported as a :class:`DamagedDataset` and rewritten by the next :func:`write_dataset` of the same id.
A sharded dataset is published and checked the same way, against the hash of its series.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import xxhash

from seqcast.data.windows import cut, part_bounds, window_starts
from seqcast.storage import shards
from seqcast.storage.atomic import atomic_dir, fsync_dir, fsync_tree
from seqcast.storage.objects import ObjectStore

SPLITS = ("train", "valid", "test")
MANIFEST = "dataset.json"
UNSYNCED = ".unsynced"  # created first in the folder, removed once sync_dataset has flushed everything else
VALUES = pa.schema([pa.field("value", pa.float32(), nullable=False)])
# float noise does not compress; dictionaries and min/max statistics of 60M values cost more than they give
RAW_VALUES = {"compression": "none", "use_dictionary": False, "write_statistics": False}
# 1 MiB pages of 262,144 values, written 262,144 at a time: Arrow's defaults (pages of at most 20,000 rows, batches
# of 1,024) cut a large split into thousands of pages, which makes writing and reading it measurably slower
# (bench/speed.py). DuckDB and other readers take pages of any size.
PAGE_ROWS = 1 << 18
PAGES = {"max_rows_per_page": PAGE_ROWS, "data_page_size": 4 * PAGE_ROWS, "write_batch_size": PAGE_ROWS}


class DamagedDataset(ValueError):
    """A dataset folder published without fsync whose files no longer match its manifest (e.g. after a crash)."""


@dataclass(frozen=True)
class DatasetRef:
    """A persisted dataset: its id, folder and manifest."""

    dataset_id: str
    path: Path
    manifest: dict


def content_hash(splits: dict[str, np.ndarray]) -> str:
    """XXH3-128 over every split's name, shape and float32 bytes.

    A content hash identifies data, it does not guard against tampering: XXH3 is a small fraction of the cost of
    writing the files, where SHA-256 without hardware support costs more than the write itself (``bench/speed.py``).
    The prefix names the algorithm.
    """
    digest = xxhash.xxh3_128()
    for name in SPLITS:
        array = np.ascontiguousarray(splits[name], dtype=np.float32)
        digest.update(f"{name}:{array.shape}".encode())
        digest.update(array.reshape(-1).view(np.uint8))  # hashed in place (no copy); also for 0 windows
    return "xxh3_128:" + digest.hexdigest()


def write_values(windows: np.ndarray, path: Path) -> None:
    """Write (n, width) windows as one flat ``value`` column; the array is not copied into Arrow.

    The Arrow array wraps the numpy buffer directly: ``pa.array`` would import pandas (0.5 s per process).
    """
    windows = np.ascontiguousarray(windows, dtype=np.float32)
    values = pa.Array.from_buffers(pa.float32(), windows.size, [None, pa.py_buffer(windows)])
    table = pa.Table.from_arrays([values], schema=VALUES.with_metadata({"seqcast.width": str(windows.shape[1])}))
    pq.write_table(table, path, row_group_size=max(1, windows.size), **RAW_VALUES, **PAGES)  # one group: one decode


def _view(values: pa.Array) -> np.ndarray:
    """A non-null float32 Arrow array as a numpy view (``to_numpy`` would import pandas: 0.5 s per process)."""
    return np.frombuffer(values.buffers()[1], np.float32, len(values), values.offset * 4)


def read_values(path: Path, shape: tuple[int, int]) -> np.ndarray:
    """Read a :func:`write_values` file into one (n, width) float32 array.

    The file's one row group is decoded once, straight from the memory-mapped file into the Arrow buffer that the
    returned array views: the one copy a Parquet read needs.
    """
    size = shape[0] * shape[1]
    metadata = pq.read_metadata(path)
    if metadata.num_rows != size:
        raise ValueError(f"{path} holds {metadata.num_rows} values, its manifest says {shape[0]} x {shape[1]}")
    if size == 0:
        return np.empty(shape, dtype=np.float32)
    with pq.ParquetFile(path, memory_map=True) as file:
        column = file.read(use_threads=False).column(0)
    return _view(column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()).reshape(shape)


def dataset_path(root: Path, dataset_id: str) -> Path:
    return root / dataset_id


def find_dataset(root: Path, dataset_id: str) -> DatasetRef | None:
    """Return the persisted dataset ``dataset_id``, or None when it was never (completely) written.

    A folder still marked ``.unsynced`` is checked (it is read whole and hashed) and then synced, so the check runs
    once; one that fails the check raises :class:`DamagedDataset`.
    """
    path = dataset_path(root, dataset_id)
    manifest = path / MANIFEST
    if not manifest.is_file():
        return None
    if not (path / UNSYNCED).exists():
        return DatasetRef(dataset_id, path, json.loads(manifest.read_text()))
    ref = _checked(dataset_id, path)
    sync_dataset(path)
    return ref


def _checked(dataset_id: str, path: Path) -> DatasetRef:
    """The dataset at ``path`` if every file opens and the splits hash to the manifest's content hash."""
    def damaged(problem: str) -> DamagedDataset:
        return DamagedDataset(f"dataset {dataset_id} at {path} is damaged: {problem}. It was published but not yet "
                              f"flushed to disk, so a crash may have cut it short. A synthetic dataset is generated "
                              f"again by the next run that needs it; ingest an ingested one's file again")

    try:
        ref = DatasetRef(dataset_id, path, json.loads((path / MANIFEST).read_text()))
        for file in sorted(path.rglob("*.parquet")):
            if file.is_file():
                pq.read_metadata(file)
        digest = stored_hash(ref) if is_sharded(ref) \
            else content_hash({name: read_split(ref, name) for name in SPLITS})
    except (OSError, ValueError, KeyError, TypeError, pa.ArrowException) as exc:
        raise damaged(f"{type(exc).__name__}: {exc}") from exc
    if digest != ref.manifest["content_hash"]:
        raise damaged(f"its splits hash to {digest}, its manifest says {ref.manifest['content_hash']}")
    return ref


def sync_dataset(path: Path) -> None:
    """Flush a dataset folder published by :func:`write_dataset` to disk, then remove its ``.unsynced`` mark.

    ``record_results`` calls this for every dataset a record names, so no recorded result names a dataset that a
    crash could still cut short. Nothing to do for a folder already synced.
    """
    mark = path / UNSYNCED
    if not mark.exists():
        return
    fsync_tree(path)
    fsync_dir(path.parent)  # the rename that published it
    mark.unlink(missing_ok=True)  # only once everything it vouches for is on disk
    fsync_dir(path)


def discard_dataset(root: Path, dataset_id: str) -> None:
    """Remove a dataset folder (a damaged one), first moving it aside in one rename so no reader sees it half gone."""
    path = dataset_path(root, dataset_id)
    aside = path.with_name(f".tmp-{uuid.uuid4().hex}-{dataset_id}")
    try:
        path.rename(aside)
    except FileNotFoundError:  # another process discarded it first
        return
    shutil.rmtree(aside, ignore_errors=True)


def _intact(root: Path, dataset_id: str) -> DatasetRef | None:
    """The dataset already written under this id (the same content), or None; a damaged copy is discarded so that
    it is written again."""
    try:
        return find_dataset(root, dataset_id)
    except DamagedDataset as exc:
        logging.getLogger(__name__).warning("%s; writing it again", exc)
        discard_dataset(root, dataset_id)
        return None


def write_dataset(root: Path, dataset_id: str, spec: dict, splits: dict[str, np.ndarray],
                  extra: dict[str, dict[str, np.ndarray]] | None = None, tables: dict[str, pa.Table] | None = None,
                  manifest_extra: dict | None = None) -> DatasetRef:
    """Persist ``splits`` (name -> (n, width) array) atomically; reuse an existing copy of the same id.

    ``extra``: split -> column -> per-window values; ``tables``: name -> table written as ``<name>.parquet``
    in the same folder; ``manifest_extra``: further keys of ``dataset.json`` (e.g. ``scaling``).
    The folder is published unsynced (see the module's docstring): :func:`sync_dataset` makes it durable.
    A damaged copy of the same id is replaced.
    """
    existing = _intact(root, dataset_id)
    if existing is not None:
        return existing
    per_window = {name: pa.table(columns) for name, columns in (extra or {}).items() if columns}
    _check_splits(splits, per_window)
    target = dataset_path(root, dataset_id)
    with atomic_dir(target) as tmp, ThreadPoolExecutor(2) as pool:  # pyarrow releases the GIL
        (tmp / UNSYNCED).touch()  # first: a folder in which any other file survived a crash still has its mark
        writes = [pool.submit(write_values, splits[name], tmp / f"{name}.parquet") for name in SPLITS]
        writes += [pool.submit(pq.write_table, columns, tmp / f"{name}.windows.parquet", compression="zstd")
                   for name, columns in per_window.items()]
        writes += [pool.submit(pq.write_table, table, tmp / f"{name}.parquet", compression="zstd")
                   for name, table in (tables or {}).items()]
        digest = pool.submit(content_hash, splits)  # queued last: the thread that wrote the small splits hashes
        for write in writes:
            write.result()  # raises the first failure; atomic_dir then removes the folder
        manifest = {
            "dataset_id": dataset_id,
            "spec": spec,
            "shapes": {name: list(splits[name].shape) for name in SPLITS},
            "content_hash": digest.result(),
            "tables": sorted(tables or {}),
            **(manifest_extra or {}),
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True))
    # ours, or the same content that another process published first; not checked: it was written since the lookup
    return DatasetRef(dataset_id, target, json.loads((target / MANIFEST).read_text()))


def _check_splits(splits: dict[str, np.ndarray], per_window: dict[str, pa.Table]) -> None:
    """Refuse, before anything is written, splits that do not make one dataset."""
    if set(splits) != set(SPLITS):
        raise ValueError(f"a dataset has the splits {', '.join(SPLITS)}; got {', '.join(sorted(splits)) or 'none'}")
    widths = {name: np.shape(splits[name])[1:] for name in SPLITS}
    if any(len(width) != 1 for width in widths.values()) or len(set(widths.values())) != 1:
        raise ValueError(f"every split must be (windows, width) with one width; got shapes "
                         f"{ {name: np.shape(splits[name]) for name in SPLITS} }")
    for name, columns in per_window.items():
        if name not in SPLITS:
            raise ValueError(f"per-window columns for unknown split {name!r}; splits: {', '.join(SPLITS)}")
        if columns.num_rows != len(splits[name]):
            raise ValueError(f"{name} split: per-window columns hold {columns.num_rows} rows for "
                             f"{len(splits[name])} windows")


def is_sharded(ref: DatasetRef) -> bool:
    """Whether the dataset stores its series whole in shards (``storage/shards.py``), not its windows."""
    return ref.manifest.get("layout") == shards.LAYOUT


def stored_hash(ref: DatasetRef) -> str:
    """The content hash of a sharded dataset, computed from its files."""
    index = shards.read_index(ref.path)
    values = shards.read_values(ref.path, ref.manifest["n_shards"], ["value", "timestamp", "padded"], index)
    return shards.content_hash(index.column("series_id").to_pylist(), *(
        index.column(c).to_numpy() for c in ("length", "valid_start", "test_start")), values)


def write_sharded_dataset(root: Path, dataset_id: str, spec: dict, index: pa.Table, values: pa.Table,
                          shapes: dict[str, list[int]], n_shards: int | None = None,
                          manifest_extra: dict | None = None) -> DatasetRef:
    """Persist series stored whole (``storage/shards.py``) atomically; reuse an existing copy of the same id.

    ``index``: one row per series in series id order, with ``length``, ``valid_start`` and ``test_start``;
    ``values``: every step of every series (``series_id, step, timestamp, value, part, padded``), series after
    series in the index's order; ``shapes``: split -> [windows, width]. ``n_shards`` defaults to
    :func:`shards.default_shards`. Published unsynced, as :func:`write_dataset`.
    """
    existing = _intact(root, dataset_id)
    if existing is not None:
        return existing
    lengths = index.column("length").to_numpy()
    if int(lengths.sum()) != values.num_rows:
        raise ValueError(f"the index of {dataset_id} counts {int(lengths.sum())} steps, its values hold "
                         f"{values.num_rows}")
    n_shards = shards.default_shards(index.num_rows) if n_shards is None else n_shards
    target = dataset_path(root, dataset_id)
    with atomic_dir(target) as tmp:
        (tmp / UNSYNCED).touch()
        digest = shards.content_hash(index.column("series_id").to_pylist(), lengths,
                                     index.column("valid_start").to_numpy(), index.column("test_start").to_numpy(),
                                     values)
        pq.write_table(shards.write_shards(tmp, index, values, n_shards), tmp / shards.INDEX, compression="zstd")
        manifest = {"dataset_id": dataset_id, "spec": spec, "layout": shards.LAYOUT, "n_shards": n_shards,
                    "shapes": shapes, "content_hash": digest, "tables": ["series", "values"],
                    **(manifest_extra or {})}
        # not indented: json encodes in C only without indent, and the scaler holds two numbers per series
        (tmp / MANIFEST).write_text(json.dumps(manifest, sort_keys=True))
    return DatasetRef(dataset_id, target, json.loads((target / MANIFEST).read_text()))


@contextlib.contextmanager
def staging_folder(root: Path) -> Iterator[Path]:
    """A new temporary folder under ``root`` for an ingest's work (its shards, written before the dataset's id is
    known), removed on leaving, whether the ingest published a dataset from it or failed.

    Its ``dataset`` subfolder is the dataset being made (``values.parquet/`` first, carrying ``.unsynced``):
    :func:`publish_staged` publishes it in one rename, so nothing half-written is ever seen under a dataset's id.
    """
    folder = root / f".tmp-{uuid.uuid4().hex}-ingest"
    created = [parent for parent in folder.parents if not parent.exists()]  # nearest first
    (folder / "dataset" / shards.VALUES_DIR).mkdir(parents=True)
    (folder / "dataset" / UNSYNCED).touch()  # first, as write_dataset's
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        for parent in created:  # a refused input leaves no trace, not even the store's empty folders
            try:
                parent.rmdir()
            except OSError:  # holds the published dataset, or something another process wrote
                break


def publish_staged(root: Path, dataset_id: str, staged: Path, index: pa.Table, manifest: dict) -> DatasetRef:
    """Publish the dataset made in ``staged`` (its shards written under ``values.parquet/``) as ``dataset_id``: the
    index (``series.parquet``) and the manifest are written beside the shards, then the folder is renamed into
    place. An intact dataset of the same id (the same content) is kept, and ``staged`` left to its remover.
    """
    existing = _intact(root, dataset_id)
    if existing is not None:
        return existing
    pq.write_table(index, staged / shards.INDEX, compression="zstd")
    # not indented: json encodes in C only without indent, and the scaler holds two numbers per series
    (staged / MANIFEST).write_text(json.dumps({"dataset_id": dataset_id, **manifest}, sort_keys=True))
    target = dataset_path(root, dataset_id)
    try:
        os.rename(staged, target)
    except OSError:
        if not target.is_dir():  # another process published the same content first: theirs is kept
            raise
    return DatasetRef(dataset_id, target, json.loads((target / MANIFEST).read_text()))


def _cuts(ref: DatasetRef, split: str, columns: list[str]) -> tuple[pa.Table, pa.Table, np.ndarray, np.ndarray]:
    """A sharded dataset's index, its values (shard after shard), and where ``split``'s windows start in them."""
    index = shards.read_index(ref.path)
    tables = [shards.read_shard(ref.path, n, columns) for n in range(ref.manifest["n_shards"])]
    values = pa.concat_tables(tables)
    sizes = np.array([t.num_rows for t in tables], dtype=np.int64)
    offsets = (np.cumsum(sizes) - sizes)[index.column("shard").to_numpy()] + index.column("offset").to_numpy()
    lengths = index.column("length").to_numpy()
    bounds = part_bounds(lengths, index.column("valid_start").to_numpy(),
                                 index.column("test_start").to_numpy(), split)
    spec = ref.manifest["spec"]
    starts, rows = window_starts(values.column("value").to_numpy(), offsets, *bounds, spec["n_steps"],
                                         spec["horizon"])
    return index, values, starts, rows


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; splits: {', '.join(SPLITS)}")


def read_split(ref: DatasetRef, split: str) -> np.ndarray:
    """Read one split back as its (n, n_steps + horizon) float32 array."""
    _check_split(split)
    if is_sharded(ref):
        _, values, starts, _ = _cuts(ref, split, ["value"])
        return cut(values.column("value").to_numpy(), starts, tuple(ref.manifest["shapes"][split])[1])
    return read_values(ref.path / f"{split}.parquet", tuple(ref.manifest["shapes"][split]))


def read_split_column(ref: DatasetRef, split: str, column: str) -> np.ndarray:
    """Read one per-window column of a split (e.g. ``series_id`` of an ingested dataset) as a numpy array."""
    _check_split(split)
    if is_sharded(ref):
        index, values, starts, rows = _cuts(ref, split, ["value", "timestamp"])
        spec = ref.manifest["spec"]
        stamps = values.column("timestamp").to_numpy()
        found = {"series_id": lambda: index.column("series_id").to_numpy(zero_copy_only=False)[rows],
                 "window_start": lambda: stamps[starts],
                 "target_start": lambda: stamps[starts + spec["n_steps"]],
                 "window_end": lambda: stamps[starts + spec["n_steps"] + spec["horizon"] - 1]}
        if column not in found:
            raise ValueError(f"no per-window column {column!r}; columns: {', '.join(found)}")
        return found[column]()
    table = pq.read_table(ref.path / f"{split}.windows.parquet", columns=[column])
    return table.column(column).to_numpy(zero_copy_only=False)


def dataset_row(ref: DatasetRef, created_at, path: str) -> dict:
    """The dataset's row of the results ``datasets`` table, from its manifest; ``path`` relative to the store's root.

    A synthetic dataset has one series per window; an ingested one records its number of series.
    """
    spec, shapes = ref.manifest["spec"], ref.manifest["shapes"]
    kind = spec.get("kind", "synthetic")
    n_series = spec["n_series"] if kind == "ingested" else sum(s[0] for s in shapes.values())
    return {
        "dataset_id": ref.dataset_id, "kind": kind, "spec": json.dumps(spec),
        "n_series": n_series, "n_steps": spec["n_steps"], "horizon": spec["horizon"],
        "n_train": shapes["train"][0], "n_valid": shapes["valid"][0], "n_test": shapes["test"][0],
        "path": path, "content_hash": ref.manifest["content_hash"], "created_at": created_at,
    }


class Datasets:
    """The datasets part of a store: ``datasets/<dataset_id>/`` under the store's root."""

    def __init__(self, home: Path, remote: ObjectStore | None = None):
        self.home = home
        self.root = home / "datasets"
        self.remote = remote  # with an object store, ``root`` is this machine's cache of it

    @property
    def where(self) -> str:
        """Where the datasets live, as users name it (the folder, or the object store's URL)."""
        return f"{self.remote.url}/datasets" if self.remote is not None else str(self.root)

    def _key(self, dataset_id: str, name: str = "") -> str:
        return f"datasets/{dataset_id}/{name}"

    def find(self, dataset_id: str) -> DatasetRef | None:
        """The persisted dataset, or None; a damaged unsynced one raises :class:`DamagedDataset`.

        With an object store the dataset exists once its manifest is there (uploaded last); it is read from this
        machine's cache, downloaded into it first when missing. Datasets are content-addressed, so a cached copy
        never goes stale.
        """
        if self.remote is None:
            return find_dataset(self.root, dataset_id)
        if not self.remote.exists(self._key(dataset_id, MANIFEST)):
            return None
        try:
            cached = find_dataset(self.root, dataset_id)
        except DamagedDataset:
            discard_dataset(self.root, dataset_id)
            cached = None
        return cached or self._download(dataset_id)

    def _download(self, dataset_id: str) -> DatasetRef:
        keys = self.remote.list(self._key(dataset_id))
        target = dataset_path(self.root, dataset_id)
        prefix = self._key(dataset_id)
        with atomic_dir(target) as tmp:
            for key in keys:  # a sharded dataset keeps its shards in a folder
                (tmp / key[len(prefix):]).parent.mkdir(parents=True, exist_ok=True)
            self.remote.get_files((key, tmp / key[len(prefix):]) for key in keys)
        return DatasetRef(dataset_id, target, json.loads((target / MANIFEST).read_text()))

    def _upload(self, ref: DatasetRef) -> None:
        """Upload a dataset's files, then its manifest: other machines see the dataset once it is complete."""
        files = [p for p in sorted(ref.path.rglob("*")) if p.is_file() and p.name not in (MANIFEST, UNSYNCED)]
        self.remote.put_files((p, self._key(ref.dataset_id, p.relative_to(ref.path).as_posix())) for p in files)
        self.remote.put_file(ref.path / MANIFEST, self._key(ref.dataset_id, MANIFEST))

    def require(self, dataset_id: str) -> DatasetRef:
        """The persisted dataset, or a ValueError naming the id and where it was looked for."""
        found = self.find(dataset_id)
        if found is None:
            raise ValueError(f"no dataset {dataset_id!r} in {self.where}; ingest one with `seqcast ingest FILE`")
        return found

    def write(self, dataset_id: str, spec: dict, splits: dict[str, np.ndarray],
              extra: dict[str, dict[str, np.ndarray]] | None = None, tables: dict[str, pa.Table] | None = None,
              manifest_extra: dict | None = None) -> DatasetRef:
        if self.remote is not None and (found := self.find(dataset_id)) is not None:
            return found
        ref = write_dataset(self.root, dataset_id, spec, splits, extra, tables, manifest_extra)
        if self.remote is not None:
            self._upload(ref)
        return ref

    def write_sharded(self, dataset_id: str, spec: dict, index: pa.Table, values: pa.Table,
                      shapes: dict[str, list[int]], n_shards: int | None = None,
                      manifest_extra: dict | None = None) -> DatasetRef:
        """Persist series stored whole in shards (:func:`write_sharded_dataset`)."""
        if self.remote is not None and (found := self.find(dataset_id)) is not None:
            return found
        ref = write_sharded_dataset(self.root, dataset_id, spec, index, values, shapes, n_shards, manifest_extra)
        if self.remote is not None:
            self._upload(ref)
        return ref

    def staging(self):
        """A temporary folder for an ingest's work (:func:`staging_folder`), removed on leaving."""
        return staging_folder(self.root)

    def publish_staged(self, dataset_id: str, staged: Path, index: pa.Table, manifest: dict) -> DatasetRef:
        """Publish a dataset made in a staging folder (:func:`publish_staged`), and upload it to the object store."""
        if self.remote is not None and (found := self.find(dataset_id)) is not None:
            return found
        ref = publish_staged(self.root, dataset_id, staged, index, manifest)
        if self.remote is not None:
            self._upload(ref)
        return ref

    def shards(self, ref: DatasetRef, columns: list[str] | None = None, index_columns: list[str] | None = None
               ) -> Iterator[shards.Shard]:
        """Every shard of a sharded dataset in turn (``Shard(number, index, values)``), one in memory at a time.

        ``index``: the shard's rows of ``series.parquet`` in series id order (``index_columns`` and ``shard``,
        default all); ``values``: its steps (``columns``, default all of ``series_id, step, timestamp, value,
        part, padded``), series after series; ``Shard.long_frame()`` gives them as ``unique_id, ds, y``. A dataset
        stored before shards existed (or a synthetic one) has none: ValueError.
        """
        if not is_sharded(ref):
            raise ValueError(f"dataset {ref.dataset_id} is not stored in shards (a synthetic dataset, or one "
                             f"ingested before shards); ingest its file again")
        index = None if index_columns is None else shards.read_index(ref.path, [*dict.fromkeys([*index_columns,
                                                                                                  "shard"])])
        return shards.iter_shards(ref.path, ref.manifest["n_shards"], index=index, columns=columns)

    def shard(self, ref: DatasetRef, number: int, columns: list[str] | None = None) -> shards.Shard:
        """Shard ``number`` of a sharded dataset alone, for a task that is handed the dataset id and a shard number
        (``ref.manifest["n_shards"]`` says how many there are)."""
        if not is_sharded(ref):
            raise ValueError(f"dataset {ref.dataset_id} is not stored in shards (a synthetic dataset, or one "
                             f"ingested before shards); ingest its file again")
        return shards.one_shard(ref.path, number, ref.manifest["n_shards"], columns)

    def discard(self, dataset_id: str) -> None:
        discard_dataset(self.root, dataset_id)

    def sync(self, dataset_id: str) -> None:
        sync_dataset(dataset_path(self.root, dataset_id))

    def list(self) -> list[str]:
        """The ids of every published dataset folder."""
        if self.remote is not None:
            return sorted(key.split("/")[1] for key in self.remote.list("datasets") if key.endswith(f"/{MANIFEST}"))
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if (p / MANIFEST).is_file())

    def read_windows(self, ref: DatasetRef, split: str) -> tuple[np.ndarray, np.ndarray | None]:
        """A split's (n, width) windows and, for an ingested dataset, each window's series id (else None)."""
        if is_sharded(ref):  # one read of the shards gives both
            _check_split(split)
            index, values, starts, rows = _cuts(ref, split, ["value"])
            return (cut(values.column("value").to_numpy(), starts, ref.manifest["shapes"][split][1]),
                    index.column("series_id").to_numpy(zero_copy_only=False)[rows])
        found = read_split(ref, split)
        if ref.manifest["spec"].get("kind") != "ingested":
            return found, None
        return found, read_split_column(ref, split, "series_id")

    def read_table(self, ref: DatasetRef, name: str, columns: list[str] | None = None) -> pa.Table:
        """A table stored beside the splits (``series`` of an ingested dataset): ``columns`` of it, default all."""
        path = ref.path / f"{name}.parquet"
        if is_sharded(ref) and name == "values":
            return shards.read_values(ref.path, ref.manifest["n_shards"], columns)
        if name in SPLITS or not path.is_file():
            raise ValueError(f"dataset {ref.dataset_id} has no {name!r} table")
        return pq.read_table(path, columns=columns)

    def read_series_values(self, ref: DatasetRef) -> tuple[dict[str, np.ndarray], dict[str, int]] | None:
        """Every step of every series (``values.parquet``, column -> array) and each series' period, or None for
        a dataset without them (synthetic, or ingested before they were stored)."""
        if "values" not in ref.manifest.get("tables", []):
            return None
        table = self.read_table(ref, "values")
        columns = {name: table.column(name).to_numpy(zero_copy_only=False) for name in table.column_names}
        series = self.read_table(ref, "series").select(["series_id", "period"]).to_pydict()
        return columns, dict(zip(series["series_id"], series["period"], strict=True))

    def row(self, ref: DatasetRef, created_at) -> dict:
        """The dataset's row of the results ``datasets`` table."""
        return dataset_row(ref, created_at, ref.path.relative_to(self.home).as_posix())
