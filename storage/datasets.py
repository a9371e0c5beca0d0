"""Datasets as Parquet: one file per split, each row one window of ``n_steps + horizon`` float32 values.

Layout under ``$SEQCAST_HOME/datasets/<dataset_id>/``: ``train.parquet``, ``valid.parquet``, ``test.parquet``
and ``dataset.json`` (spec, shapes, content hash). The folder is published in one atomic rename,
so a folder that exists is complete.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from storage.atomic import atomic_dir

SPLITS = ("train", "valid", "test")
MANIFEST = "dataset.json"


@dataclass(frozen=True)
class DatasetRef:
    """A persisted dataset: its id, folder and manifest."""

    dataset_id: str
    path: Path
    manifest: dict


def content_hash(splits: dict[str, np.ndarray]) -> str:
    """SHA-256 over every split's name, shape and float32 bytes."""
    digest = hashlib.sha256()
    for name in SPLITS:
        array = np.ascontiguousarray(splits[name], dtype=np.float32)
        digest.update(f"{name}:{array.shape}".encode())
        digest.update(array.tobytes())
    return "sha256:" + digest.hexdigest()


def windows_table(windows: np.ndarray, extra: dict[str, np.ndarray] | None = None) -> pa.Table:
    """Return a table with one ``window`` fixed-size-list<float32> row per window, plus ``extra`` columns."""
    windows = np.ascontiguousarray(windows, dtype=np.float32)
    n, width = windows.shape
    column = pa.FixedSizeListArray.from_arrays(pa.array(windows.reshape(-1)), width)
    columns = {"series_index": pa.array(np.arange(n, dtype=np.int64)), "window": column}
    for name, values in (extra or {}).items():
        columns[name] = pa.array(values)
    return pa.table(columns)


def table_windows(table: pa.Table) -> np.ndarray:
    """Inverse of :func:`windows_table`: the (n, width) float32 array, no copy beyond the read."""
    column = table.column("window").combine_chunks()
    width = column.type.list_size
    return column.values.to_numpy(zero_copy_only=False).reshape(-1, width)


def dataset_path(root: Path, dataset_id: str) -> Path:
    return root / dataset_id


def find_dataset(root: Path, dataset_id: str) -> DatasetRef | None:
    """Return the persisted dataset ``dataset_id``, or None when it was never (completely) written."""
    path = dataset_path(root, dataset_id)
    manifest = path / MANIFEST
    if not manifest.is_file():
        return None
    return DatasetRef(dataset_id, path, json.loads(manifest.read_text()))


def write_dataset(root: Path, dataset_id: str, spec: dict, splits: dict[str, np.ndarray],
                  extra: dict[str, dict[str, np.ndarray]] | None = None) -> DatasetRef:
    """Persist ``splits`` (name -> (n, width) array) atomically; reuse an existing copy of the same id."""
    existing = find_dataset(root, dataset_id)
    if existing is not None:
        return existing
    target = dataset_path(root, dataset_id)
    manifest = {
        "dataset_id": dataset_id,
        "spec": spec,
        "shapes": {name: list(splits[name].shape) for name in SPLITS},
        "content_hash": content_hash(splits),
        "format_version": 1,
    }
    with atomic_dir(target) as tmp:
        for name in SPLITS:
            pq.write_table(windows_table(splits[name], (extra or {}).get(name)), tmp / f"{name}.parquet",
                           compression="zstd")
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True))
    return find_dataset(root, dataset_id)


def read_split(ref: DatasetRef, split: str) -> np.ndarray:
    """Read one split back as its (n, n_steps + horizon) float32 array."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; splits: {', '.join(SPLITS)}")
    return table_windows(pq.read_table(ref.path / f"{split}.parquet", columns=["window"]))
