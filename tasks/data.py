"""Stages 1-2: find the run's dataset, or generate the chapter's series and persist them as Parquet."""

from __future__ import annotations

import numpy as np
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from seqcast.config.params import ForecastParams
from seqcast.data.synthetic import SyntheticSpec, generate_splits
from seqcast.storage.datasets import DamagedDataset, DatasetRef
from seqcast.storage.home import current_store


@task(name="fit-to-dataset", cache_policy=NO_CACHE)
def fit_to_dataset(params: ForecastParams) -> tuple[ForecastParams, DatasetRef]:
    """Resolve ``params.dataset_id`` and fit the parameters to it; raise ValueError if they cannot fit."""
    dataset = current_store().datasets.require(params.dataset_id)
    return params.for_dataset(dataset.manifest), dataset


@task(name="find-dataset", cache_policy=NO_CACHE)
def find_dataset(spec: SyntheticSpec) -> DatasetRef | None:
    """Return the persisted dataset of this spec, if a previous run wrote it (None if damaged: it is written again)."""
    datasets = current_store().datasets
    try:
        found = datasets.find(spec.dataset_id)
    except DamagedDataset as exc:
        get_run_logger().warning("%s; generating it again", exc)
        datasets.discard(spec.dataset_id)
        return None
    if found is not None:
        get_run_logger().info("reusing dataset %s at %s (same spec, not regenerated)", found.dataset_id, found.path)
    return found


@task(name="generate-series", cache_policy=NO_CACHE)
def generate_series(spec: SyntheticSpec) -> dict[str, np.ndarray]:
    """Generate the spec's series; return split name -> windows (n, n_steps + horizon)."""
    get_run_logger().info("generating %d series of %d steps (seed %d) for %s", spec.n_series,
                          spec.window_length, spec.seed, spec.dataset_id)
    return generate_splits(spec)


@task(name="persist-synthetic-dataset", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=[1, 5])
def persist_dataset(spec: SyntheticSpec, splits: dict[str, np.ndarray]) -> DatasetRef:
    """Write the splits as Parquet under the spec's dataset id (atomically); return the dataset."""
    ref = current_store().datasets.write(spec.dataset_id, spec.model_dump(), splits)
    get_run_logger().info("persisted %s at %s (%s)", ref.dataset_id, ref.path, ref.manifest["content_hash"])
    return ref
