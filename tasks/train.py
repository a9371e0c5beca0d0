"""Stage 3: train a Keras model, or find the trained runs an iterative variant (its one-step model) or an ensemble
(its members) reuses."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from functools import partial

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from prefect import get_run_logger, task
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.cache_policies import NO_CACHE
from prefect.concurrency.sync import concurrency

from seqcast.config.names import TRAINING_LIMIT
from seqcast.config.params import ForecastParams, normalized_params
from seqcast.data.scaling import GLOBAL_KEY, Scaler
from seqcast.models.registry import get_variant
from seqcast.storage.backups import TrainingBackup
from seqcast.storage.datasets import DatasetRef, Datasets, is_sharded
from seqcast.storage.home import current_settings, current_store
from seqcast.tasks.faults import training_fault
from seqcast.training.fit import model_manifest, same_training, train, train_streaming
from seqcast.training.windows import Panel, empty_panel, fill_series, series_panel


@dataclass
class TrainedModel:
    """A saved model (its path relative to the store's root) and how its training went."""

    model_path: str
    epochs: int
    train_seconds: float
    n_params: int
    history: list[dict]

    @classmethod
    def from_manifest(cls, model_path: str, manifest: dict) -> TrainedModel:
        return cls(model_path, manifest["epochs"], manifest["train_seconds"], manifest["n_params"],
                   manifest["history"])


@task(name="train-model", cache_policy=NO_CACHE)
def train_model(params: ForecastParams, dataset: DatasetRef, run_id: str) -> TrainedModel:
    """Fit the variant on the dataset's training split; save ``model.keras`` + manifest under the run's folder."""
    store, logger = current_store(), get_run_logger()
    # the scaler travels with the model, so forecasts can be mapped back to original units anywhere; taken as the
    # manifest holds it, since a Scaler of a million series' statistics would be one more copy of them
    manifest = {"run_id": run_id, "variant": params.variant, "params": params.model_dump(),
                "dataset_id": dataset.dataset_id, "dataset_content_hash": dataset.manifest["content_hash"],
                "scaling": dataset.manifest.get("scaling") or Scaler().to_dict()}
    saved = store.models.saved_manifest(run_id)
    if same_training(saved, manifest):  # a retry of a flow run whose training had finished: keep that model
        trained = TrainedModel.from_manifest(store.models.model_path(run_id), saved)
        logger.info("%s was already trained in this flow run (%d epochs, %.1f s): reusing %s", params.variant,
                    trained.epochs, trained.train_seconds, trained.model_path)
        return trained
    panel = training_panel(store.datasets, dataset) if params.steps_per_epoch else None
    if panel is None:  # every stored window once per epoch: the book's synthetic windows, a panel with gaps, or asked
        scaler = Scaler.from_dict(dataset.manifest.get("scaling"))
        train_windows = scaler.transform(*store.datasets.read_windows(dataset, "train"))
        valid_windows = scaler.transform(*store.datasets.read_windows(dataset, "valid"))
        fit = partial(train, params, train_windows, valid_windows)
    else:
        logger.info("%s draws its training windows per batch from %d series", params.variant, panel.n_series)
        fit = partial(train_streaming, params, panel)
    fault = current_settings().test_fail_once
    # Holding a slot of the global limit only while fitting: an iterative_10 run holds none while its base
    # model trains in a subflow, so the limit cannot deadlock. Without the limit (not created) Prefect warns
    # and trains anyway.
    with concurrency(TRAINING_LIMIT, occupy=1):
        progress = create_progress_artifact(0.0, description=f"{params.variant}: share of max epochs trained")
        # the backup of an interrupted try: on an object store, from the store, so it resumes on any machine
        result = fit(logger, backup=TrainingBackup(store.models.backup_folder(run_id)),
                     callbacks=[epoch_progress(progress, params.epochs),
                                stored_backup(store.models, run_id, current_settings().backup_interval),
                                *(training_fault(fault, logger) if fault else [])])
        store.models.store_backup(run_id)  # the finished fit removed its backup: so does the store
    update_progress_artifact(progress, 100.0)  # early stopping ends before max epochs: the training is done
    # how the model saw its windows: drawn per batch from the series, or every stored window each epoch
    saved = model_manifest({**manifest, "training_windows": "sampled" if panel is not None else "stored"}, result,
                           get_variant(params.variant))
    model_path = store.models.save(run_id, result.model, saved)
    logger.info("%s saved to %s", params.variant, model_path)
    return TrainedModel.from_manifest(model_path, saved)


def training_panel(datasets: Datasets, dataset: DatasetRef) -> Panel | None:
    """The dataset's series as a panel that training draws its windows from, in series id order.

    A sharded dataset is read shard by shard, its values only (float32 once in the panel), its part boundaries and
    scaling from its index. None for a dataset without stored series values (the book's synthetic windows, an older
    ingest), and for one with gaps (missing='drop'): its stored windows leave out every window across a gap, which
    the sampler does not.
    """
    if "values" not in dataset.manifest.get("tables", []):
        return None
    if not is_sharded(dataset):
        return values_panel(datasets.read_table(dataset, "values"), Scaler.from_dict(dataset.manifest.get("scaling")))
    index = datasets.read_table(dataset, "series", ["series_id", "shard", "length", "valid_start", "test_start",
                                                     "mean", "std"])
    mean, std = index_scaling(dataset.manifest.get("scaling"), index)
    panel = empty_panel(*(index.column(name).to_numpy() for name in ("length", "valid_start", "test_start")),
                        mean, std)
    shard_of_series = index.column("shard").to_numpy()
    del index
    for shard in datasets.shards(dataset, columns=["value"], index_columns=["shard"]):
        values = shard.values.column("value").to_numpy()
        if np.isnan(values).any():
            return None
        # a shard holds its series in series id order, as the index lists them
        fill_series(panel, np.flatnonzero(shard_of_series == shard.number), values)
    return panel


def index_scaling(scaling: dict | None, index: pa.Table) -> tuple[np.ndarray, np.ndarray]:
    """Each series' scaling mean and std, (n_series,) float64 each, from a sharded dataset's index (``mean`` and
    ``std`` per series) or its manifest's global statistics; what ``Scaler.transform`` applies to the series."""
    n, mode = index.num_rows, (scaling or {}).get("mode", "none")
    if mode == "none":
        return np.zeros(n), np.ones(n)
    if mode == "global":
        mean, std = scaling["stats"][GLOBAL_KEY]
        return np.full(n, float(mean)), np.full(n, float(std))
    unscaled = pc.or_(pc.is_null(index.column("mean")), pc.is_null(index.column("std")))
    if pc.any(unscaled).as_py():
        ids = index.column("series_id").filter(unscaled)
        raise ValueError(f"no scaling statistics for series {', '.join(ids.slice(0, 5).to_pylist())}"
                         f"{f' and {len(ids) - 5} more' if len(ids) > 5 else ''} in the dataset's index")
    return index.column("mean").to_numpy(), index.column("std").to_numpy()


def values_panel(table: pa.Table, scaler: Scaler) -> Panel | None:
    """A panel from a dataset's values table (series_id, part, value per step, series after series); None when a
    value is missing (a gap that missing='drop' left)."""
    table = table.select(["series_id", "part", "value"])
    values = table.column("value").to_numpy().astype(np.float32)
    if np.isnan(values).any():
        return None
    ids = table.column("series_id").combine_chunks().dictionary_encode()
    mean, std = series_scaling(scaler, ids.dictionary.to_pylist())
    part = table.column("part")
    return series_panel(values, ids.indices.to_numpy(), pc.equal(part, "train").to_numpy(zero_copy_only=False),
                        pc.equal(part, "valid").to_numpy(zero_copy_only=False), mean, std)


def series_scaling(scaler: Scaler, series_ids: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Each series' scaling mean and std, (n_series,) float64 each: what ``scaler.transform`` applies to it."""
    n = len(series_ids)
    if scaler.is_identity:
        return np.zeros(n), np.ones(n)
    keys = [GLOBAL_KEY] * n if scaler.mode == "global" else series_ids
    missing = [key for key in keys if key not in scaler.stats]
    if missing:
        raise ValueError(f"no scaling statistics for series {', '.join(missing[:5])} of the dataset")
    pairs = np.array([scaler.stats[key] for key in keys], dtype=np.float64).reshape(n, 2)
    return pairs[:, 0], pairs[:, 1]


def epoch_progress(artifact_id, max_epochs: int):
    """Keras callback that moves the run's progress artifact to ``epochs done / max epochs`` after each epoch."""
    import keras

    class _Progress(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            update_progress_artifact(artifact_id, round(100.0 * (epoch + 1) / max_epochs, 1))

    return _Progress()


def stored_backup(models, run_id: str, interval_s: float):
    """Keras callback that sends the training backup to the store after the first epoch, then after the first epoch
    that ends ``interval_s`` or more after the last upload (see ``Models.store_backup``).

    Uploading every epoch would make a run of short epochs wait on the store more than it trains; a lost machine
    costs at most the epochs of one interval.
    """
    import keras

    class _StoredBackup(keras.callbacks.Callback):
        last = None

        def on_epoch_end(self, epoch, logs=None):
            if self.last is None or time.monotonic() - self.last >= interval_s:
                models.store_backup(run_id)
                self.last = time.monotonic()

    return _StoredBackup()


def training_key(params: dict) -> dict:
    """The parameters that make two trainings of one variant on one dataset interchangeable."""
    return {k: v for k, v in params.items() if k not in ("variant", "horizon", "base_run_id")}


@task(name="find-trained-run", cache_policy=NO_CACHE)
def find_trained_run(variant: str, dataset_id: str, params: ForecastParams, run_id: str | None = None) -> dict | None:
    """Return the newest completed run of ``variant`` on ``dataset_id`` trained with the same parameters.

    With ``run_id``, only that run qualifies, whatever its parameters.
    """
    wanted = training_key(params.model_dump())
    candidates = current_store().results.trained_runs(variant, dataset_id, run_id)  # newest first
    best = next((row for row in candidates
                 if run_id or training_key(normalized_params(row["params"])) == wanted), None)
    if best is not None:
        get_run_logger().info("reusing trained %s run %s (%s)", variant, best["run_id"], best["model_path"])
    return best


@task(name="save-ensemble", cache_policy=NO_CACHE)
def save_ensemble(params: ForecastParams, dataset: DatasetRef, run_id: str, member_runs: list[dict]) -> str:
    """Save the ensemble run's manifest: its members' completed runs (``runs`` rows) and what forecasting with them
    needs; return its path, the run's model path."""
    members = []
    for run in member_runs:
        recorded = json.loads(run["params"])
        members.append({"run_id": run["run_id"], "variant": run["variant"], "model_path": run["model_path"],
                        **{key: recorded.get(key) for key in ("window_norm", "loss", "seed", "input_steps")}})
    manifest = {"run_id": run_id, "variant": params.variant, "params": params.model_dump(),
                "dataset_id": dataset.dataset_id, "dataset_content_hash": dataset.manifest["content_hash"],
                "scaling": dataset.manifest.get("scaling"), "members": members}
    model_path = current_store().models.save_ensemble(run_id, manifest)
    get_run_logger().info("%s: the median of %d member runs (%s)", params.variant, len(members), model_path)
    return model_path
