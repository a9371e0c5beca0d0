"""Stages 1-2: generate the chapter's series and persist them as Parquet."""

from __future__ import annotations

import numpy as np
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from seqcast.data import SyntheticSpec, generate_splits
from seqcast.params import ForecastParams
from seqcast.settings import datasets_dir
from storage.datasets import DamagedDataset, DatasetRef, discard_dataset, find_dataset, write_dataset


def lookup_dataset(spec: SyntheticSpec) -> DatasetRef | None:
    """Return the persisted dataset of this spec, if a previous run wrote it (None if damaged: it is written again)."""
    try:
        return find_dataset(datasets_dir(), spec.dataset_id)
    except DamagedDataset as exc:
        get_run_logger().warning("%s; generating it again", exc)
        discard_dataset(datasets_dir(), spec.dataset_id)
        return None


def require_dataset(dataset_id: str) -> DatasetRef:
    """Return a persisted (e.g. ingested) dataset, or raise naming the id and where it was looked for."""
    found = find_dataset(datasets_dir(), dataset_id)
    if found is None:
        raise ValueError(f"no dataset {dataset_id!r} in {datasets_dir()}; ingest one with `seqcast ingest FILE`")
    return found


def fit_to_dataset(params: ForecastParams) -> tuple[ForecastParams, DatasetRef | None]:
    """Resolve ``params.dataset_id`` (if set) and fit the parameters to it; raise ValueError if they cannot fit."""
    if params.dataset_id is None:
        return params, None
    dataset = require_dataset(params.dataset_id)
    return params.for_dataset(dataset.manifest["spec"]), dataset


@task(name="generate-series", cache_policy=NO_CACHE)
def generate_series(spec: SyntheticSpec) -> dict[str, np.ndarray]:
    """Generate the spec's series; return split name -> windows (n, n_steps + horizon)."""
    get_run_logger().info("generating %d series of %d steps (seed %d) for %s", spec.n_series,
                          spec.window_length, spec.seed, spec.dataset_id)
    return generate_splits(spec)


@task(name="persist-dataset", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=[1, 5])
def persist_dataset(spec: SyntheticSpec, splits: dict[str, np.ndarray]) -> DatasetRef:
    """Write the splits as Parquet under the spec's dataset id (atomically); return the dataset."""
    ref = write_dataset(datasets_dir(), spec.dataset_id, spec.model_dump(), splits)
    get_run_logger().info("persisted %s at %s (%s)", ref.dataset_id, ref.path, ref.manifest["content_hash"])
    return ref
