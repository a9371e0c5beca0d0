"""Datasets as Parquet: one file per split, each row one window of ``n_steps + horizon`` float32 values.

Layout under ``$SEQCAST_HOME/datasets/<dataset_id>/``: ``train.parquet``, ``valid.parquet``, ``test.parquet``
and ``dataset.json`` (spec, shapes, content hash). Ingested datasets add ``series_id`` and window timestamp
columns to each split, a ``series.parquet`` table (one row per series) and the scaler in ``dataset.json``.
The folder is published in one atomic rename, so a folder that exists is complete.
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
                  extra: dict[str, dict[str, np.ndarray]] | None = None, tables: dict[str, pa.Table] | None = None,
                  manifest_extra: dict | None = None) -> DatasetRef:
    """Persist ``splits`` (name -> (n, width) array) atomically; reuse an existing copy of the same id.

    ``extra``: split -> column -> per-window values; ``tables``: name -> table written as ``<name>.parquet``
    in the same folder; ``manifest_extra``: further keys of ``dataset.json`` (e.g. ``scaling``).
    """
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
        **(manifest_extra or {}),
    }
    with atomic_dir(target) as tmp:
        for name in SPLITS:
            pq.write_table(windows_table(splits[name], (extra or {}).get(name)), tmp / f"{name}.parquet",
                           compression="zstd")
        for name, table in (tables or {}).items():
            pq.write_table(table, tmp / f"{name}.parquet", compression="zstd")
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True))
    return find_dataset(root, dataset_id)


def read_split(ref: DatasetRef, split: str) -> np.ndarray:
    """Read one split back as its (n, n_steps + horizon) float32 array."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; splits: {', '.join(SPLITS)}")
    return table_windows(pq.read_table(ref.path / f"{split}.parquet", columns=["window"]))


def read_split_column(ref: DatasetRef, split: str, column: str) -> np.ndarray:
    """Read one per-window column of a split (e.g. ``series_id`` of an ingested dataset) as a numpy array."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; splits: {', '.join(SPLITS)}")
    return pq.read_table(ref.path / f"{split}.parquet", columns=[column]).column(column).to_numpy(zero_copy_only=False)


def dataset_row(ref: DatasetRef, created_at) -> dict:
    """The dataset's row of the results ``datasets`` table, from its manifest.

    A synthetic dataset has one series per window; an ingested one records its number of series.
    """
    spec, shapes = ref.manifest["spec"], ref.manifest["shapes"]
    kind = spec.get("kind", "synthetic")
    n_series = spec["n_series"] if kind == "ingested" else sum(s[0] for s in shapes.values())
    return {
        "dataset_id": ref.dataset_id, "kind": kind, "spec": json.dumps(spec),
        "n_series": n_series, "n_steps": spec["n_steps"], "horizon": spec["horizon"],
        "n_train": shapes["train"][0], "n_valid": shapes["valid"][0], "n_test": shapes["test"][0],
        "path": str(ref.path), "content_hash": ref.manifest["content_hash"], "created_at": created_at,
    }
